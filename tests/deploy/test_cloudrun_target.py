"""The Cloud Run target through the real ``google-cloud-run`` client (REST transport) against a
loopback fake of the Admin API v2 whose revisions are real local processes of the reference
backend: probes, traffic, drains and rollbacks are real on the data plane."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safeship.config import CloudRunConfig, load_manifest
from safeship.deploy.operations import deploy
from safeship.deploy.pipeline import DeployRequest
from safeship.deploy.targets import RevisionSpec, RevisionStatus, Target, TrafficSplit
from safeship.errors import TargetError

from ..e2e.deploy_helpers import SECRET, make_project
from .cloudrun_fake import FakeCloudRun

run_v2 = pytest.importorskip("google.cloud.run_v2")

from safeship.deploy.targets.cloudrun import CloudRunTarget  # noqa: E402

pytestmark = pytest.mark.e2e

SERVICE = "api"
ID_TOKEN = "fixed-google-id-token"
CRASH = textwrap.dedent(
    """
    import json, sys
    line = {"event": "startup_failed", "phase": "services",
            "error": "NameError: name 'agent' is not defined", "hint": "restore the import"}
    sys.stderr.write(json.dumps(line) + "\\n")
    sys.exit(3)
    """
)


def images(root: Path) -> dict[str, list[str]]:
    uvicorn = [
        sys.executable, "-m", "uvicorn", "faulty_agent:app", "--app-dir", str(root / "examples"),
        "--host", "127.0.0.1", "--port", "{port}", "--no-use-colors",
    ]  # fmt: skip
    return {
        "app:good": uvicorn,
        "app:bad-later": ["env", "DEPLOY_FAULT_AFTER=3", *uvicorn],
        "app:crash": [sys.executable, "-c", CRASH],
    }


SECRET_ENV = [
    {
        "name": "JWT_SECRET_TEST",
        "valueSource": {"secretKeyRef": {"secret": "jwt-test", "version": "latest"}},
    }
]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The probes sign with the clients' secret; revisions get theirs only through the fake's
    # Secret Manager (a reference in the template), never from this environment.
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in ("DEPLOY_FAULT_AFTER", "SAFESHIP_ENV"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, app="faulty_agent:app")


@pytest.fixture
def fake(project: Path, tmp_path: Path) -> Iterator[FakeCloudRun]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JWT_SECRET")}
    environ.update(PYTHONUNBUFFERED="1", AGENT_SERVICE_RUN_GRACE="1")
    with FakeCloudRun(tmp_path / "cloud", images(project), environ=environ, cwd=project) as cloud:
        cloud.secrets["jwt-test"] = SECRET
        cloud.add_service(SERVICE, "app:good", env=SECRET_ENV)
        yield cloud


def config(fake: FakeCloudRun, **changes: Any) -> CloudRunConfig:
    values = {
        "project": fake.project, "region": fake.region, "service": SERVICE,
        "secrets": {"JWT_SECRET_TEST": "jwt-test:latest"}, "endpoint": fake.endpoint,
        "operation_timeout": 30, "request_timeout": 5, "poll_interval": 0.05,
    }  # fmt: skip
    return CloudRunConfig.model_validate({**values, **changes})


def make_target(fake: FakeCloudRun, **changes: Any) -> CloudRunTarget:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    conf = config(fake, **changes)
    options = {
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=fake.endpoint),
        "credentials": AnonymousCredentials(),
    }
    return CloudRunTarget(
        conf,
        run_v2.ServicesClient(**options),
        run_v2.RevisionsClient(**options),
        secret_names=frozenset({"JWT_SECRET_TEST", "JWT_SECRET"}),
        id_token=(lambda audience: ID_TOKEN) if conf.private else None,
    )


def spec(project: Path, image: str) -> RevisionSpec:
    return RevisionSpec(
        project, "faulty_agent:app", "examples", {"SAFESHIP_ENV": "test"}, image=image
    )


def with_cloudrun(project: Path, fake: FakeCloudRun, **deploy: Any) -> Any:
    """The project's manifest with its ``[deploy.cloudrun]`` table pointed at the fake."""
    table = {**config(fake).model_dump(exclude_none=True), "private": False}
    lines = ["", "[deploy.cloudrun]"]
    lines += [f"{k} = {_toml(v)}" for k, v in table.items() if k not in ("env",)]
    path = project / "safeship.toml"
    text = path.read_text()
    for key, value in deploy.items():
        text = text.replace("[deploy]\n", f"[deploy]\n{key} = {_toml(value)}\n", 1)
    path.write_text(text + "\n".join(lines) + "\n")
    return load_manifest(path)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


QUICK_SKIP = ("static", "legacy", "secrets")


def run_deploy(manifest: Any, project: Path, image: str) -> dict[str, Any]:
    request = DeployRequest("test", project, skip=QUICK_SKIP)
    result = asyncio.run(deploy(manifest, request, target_name="cloudrun", image=image))
    return result.record


# -- the protocol, on the fake ------------------------------------------------------------


def test_it_is_a_target_that_can_split(fake: FakeCloudRun) -> None:
    target = make_target(fake)
    assert isinstance(target, Target) and isinstance(target, TrafficSplit)


def test_start_creates_a_tagged_revision_with_no_traffic(fake: FakeCloudRun, project: Path) -> None:
    target = make_target(fake)
    revision = asyncio.run(target.start(spec(project, "app:good")))
    assert revision.id == "api-r1" and revision.status is RevisionStatus.RUNNING
    assert revision.url == fake.revision("api-r1").url  # its own tag URL
    state = asyncio.run(target.state())
    assert state.serving == "api-r0"
    assert state.front_url == fake.service_url(SERVICE)
    assert state.revision("api-r1").traffic is False
    # The secret went as a Secret Manager reference, never as a value.
    sent = fake.revision("api-r1").template["containers"][0]["env"]
    jwt = next(v for v in sent if v["name"] == "JWT_SECRET_TEST")
    assert "value" not in jwt and jwt["valueSource"]["secretKeyRef"]["secret"].endswith("/jwt-test")
    assert SECRET not in json.dumps(sent)


def test_switch_split_and_stop_move_traffic(fake: FakeCloudRun, project: Path) -> None:
    target = make_target(fake)
    asyncio.run(target.start(spec(project, "app:good")))
    asyncio.run(target.split("api-r1", "api-r0", 10))
    service = fake.services[f"{fake.parent()}/services/{SERVICE}"]
    assert {t.get("revision"): t.get("percent", 0) for t in service.traffic} == {
        "api-r1": 10,
        "api-r0": 90,
    }
    asyncio.run(target.switch("api-r1"))
    state = asyncio.run(target.state())
    assert state.serving == "api-r1" and not state.problems
    asyncio.run(target.stop("api-r0", drain_seconds=0))
    state = asyncio.run(target.state())
    assert [r.id for r in state.revisions] == ["api-r1"]
    with pytest.raises(TargetError, match="still receives 100 %"):
        asyncio.run(target.stop("api-r1", drain_seconds=0))


def test_probe_headers_carry_the_google_id_token(fake: FakeCloudRun) -> None:
    headers = asyncio.run(make_target(fake).probe_headers("http://x"))
    assert headers == {"X-Serverless-Authorization": f"Bearer {ID_TOKEN}"}
    assert asyncio.run(make_target(fake, private=False).probe_headers("http://x")) == {}
