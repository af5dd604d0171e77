"""The Cloud Run target through the real ``google-cloud-run`` client (REST transport) against a
loopback fake of the Admin API v2 whose revisions are real local processes of the reference
backend: probes, traffic, drains and rollbacks are real on the data plane."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
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
from safeship.testing import scaled, wait_until

from ..e2e.deploy_helpers import SECRET, make_project, set_deploy
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


SECRET_ENV: list[dict[str, Any]] = [
    {"name": "SAFESHIP_ENV", "value": "test"},
    {
        "name": "JWT_SECRET_TEST",
        "valueSource": {"secretKeyRef": {"secret": "jwt-test", "version": "latest"}},
    },
]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The probes sign with the clients' secret; revisions get theirs only through the fake's
    # Secret Manager (a reference in the template), never from this environment.
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in ("DEPLOY_FAULT_AFTER", "SAFESHIP_ENV"):
        monkeypatch.delenv(name, raising=False)


DRAIN_PATH = "/_safeship/drain"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path, app="faulty_agent:app")
    manifest = root / "safeship.toml"
    text = manifest.read_text().replace(
        "[service]\n", f'[service]\ndrain_path = "{DRAIN_PATH}"\n', 1
    )
    manifest.write_text(text)
    return root


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


def make_target(fake: FakeCloudRun, drainer: Any = None, **changes: Any) -> CloudRunTarget:
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
        drainer=drainer,
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
    set_deploy(project, **deploy)
    path = project / "safeship.toml"
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    return load_manifest(path)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


QUICK_SKIP = ("static", "secrets")  # the secrets gate reads Secret Manager: its own tests


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
    candidate = state.revision("api-r1")
    assert candidate is not None and candidate.traffic is False
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


# -- deploys through the pipeline ---------------------------------------------------------


def serving_now(fake: FakeCloudRun) -> str | None:
    state = asyncio.run(make_target(fake).state())
    return state.serving


def test_a_good_deploy_is_verified_on_its_tag_url_promoted_and_the_old_revision_deleted(
    fake: FakeCloudRun, project: Path
) -> None:
    manifest = with_cloudrun(project, fake)
    record = run_deploy(manifest, project, "app:good")
    assert record["outcome"] == "promoted", record["reason"]
    assert record["target"] == "cloudrun"
    assert record["candidate"] == "api-r1"
    assert record["candidate_url"] == fake.revision("api-r1").url  # verified on its tag URL
    assert record["front_url"] == fake.service_url(SERVICE)
    state = asyncio.run(make_target(fake).state())
    assert state.serving == "api-r1"
    assert [r.id for r in state.revisions] == ["api-r1"]  # api-r0 drained, then deleted
    assert "api-r0" not in fake.revisions


def test_a_revision_that_fails_to_start_is_reported_from_its_conditions_and_logs(
    fake: FakeCloudRun, project: Path
) -> None:
    record = run_deploy(with_cloudrun(project, fake), project, "app:crash")
    assert record["outcome"] == "failed"
    failure = record["start_failure"]
    # The service's own startup_failed line, read from the revision's logs...
    assert failure["phase"] == "services"
    assert "NameError" in failure["error"]
    assert failure["hint"] == "restore the import"
    # ...and where the logs are, from the revision's Ready condition.
    assert failure["log_path"].startswith("file://")
    assert serving_now(fake) == "api-r0"
    assert set(fake.revisions) == {"api-r0"}  # the failed revision is not left behind


def test_an_image_that_cannot_be_pulled_says_so(fake: FakeCloudRun, project: Path) -> None:
    record = run_deploy(with_cloudrun(project, fake), project, "app:missing")
    assert record["outcome"] == "failed"
    failure = record["start_failure"]
    assert "CONTAINER_MISSING" in failure["error"] and "app:missing" in failure["error"]
    assert "cannot be pulled" in failure["hint"]
    assert serving_now(fake) == "api-r0"


def test_a_revision_that_goes_bad_after_the_switch_is_rolled_back(
    fake: FakeCloudRun, project: Path
) -> None:
    manifest = with_cloudrun(project, fake, watch_seconds=12, watch_interval=0.25)
    record = run_deploy(manifest, project, "app:bad-later")
    assert record["outcome"] == "rolled_back", record["reason"]
    assert record["previous"] == "api-r0" and record["candidate"] == "api-r1"
    assert serving_now(fake) == "api-r0"
    assert "api-r1" not in fake.revisions  # stopped once traffic was back


def test_a_revision_that_goes_bad_at_the_ten_percent_step_is_rolled_back(
    fake: FakeCloudRun, project: Path
) -> None:
    manifest = with_cloudrun(project, fake, steps=[10, 100], watch_seconds=12, watch_interval=0.25)
    record = run_deploy(manifest, project, "app:bad-later")
    assert record["outcome"] == "rolled_back", record["reason"]
    assert "10% step" in record["reason"]
    assert record["canary_steps"] == [10]
    assert "switch" not in [s["name"] for s in record["steps"]]
    assert serving_now(fake) == "api-r0"
    service = fake.services[f"{fake.parent()}/services/{SERVICE}"]
    assert [(t.get("revision"), t.get("percent")) for t in service.traffic] == [("api-r0", 100)]


def test_the_old_revisions_websockets_are_drained_with_1012(
    fake: FakeCloudRun, project: Path
) -> None:
    from websockets.asyncio.client import connect

    from safeship.tokens import mint

    manifest = with_cloudrun(project, fake)
    url = fake.service_url(SERVICE).replace("http://", "ws://") + "/ws"

    async def scenario() -> tuple[int | None, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {mint(SECRET, 'user-1', ttl=300)}"}
        async with connect(url, additional_headers=headers, open_timeout=scaled(5)) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))
            assert welcome["type"] == "connection_established"
            request = DeployRequest("test", project, skip=QUICK_SKIP)
            result = await deploy(manifest, request, target_name="cloudrun", image="app:good")
            await asyncio.wait_for(ws.wait_closed(), scaled(15))
            assert ws.close_code is not None
            return ws.close_code, result.record

    code, record = asyncio.run(scenario())
    assert record["outcome"] == "promoted", record["reason"]
    assert code == 1012  # drained for a restart: reconnect (to the serving revision)


def test_a_deploy_killed_mid_way_is_recovered_from_the_api_and_rolled_back_with_a_drain(
    fake: FakeCloudRun, project: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from safeship.deploy.operations import open_session
    from safeship.tokens import mint

    manifest = with_cloudrun(project, fake, watch_seconds=60)
    argv = [
        sys.executable, "-m", "safeship", "deploy", "--env", "test", "--target", "cloudrun",
        "--image", "app:good", "--skip", "static", "--skip", "secrets",
        "--json",
    ]  # fmt: skip
    child = subprocess.Popen(
        argv, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Killed while watching: the switch went through on the API, the process is gone.
        wait_until(lambda: serving_now(fake) == "api-r1" or child.poll() is not None, scaled(60))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    # A new target knows nothing but the API, and reads the truth from it.
    state = asyncio.run(make_target(fake).state())
    assert state.serving == "api-r1" and {r.id for r in state.revisions} == {"api-r0", "api-r1"}
    # A user on the new revision, which the recovery is about to roll back.
    url = fake.service_url(SERVICE).replace("http://", "ws://") + "/ws"
    token = mint(SECRET, "user-3", ttl=300)
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.recv(timeout=scaled(5))

        async def recover() -> list[str]:
            async with open_session(manifest, "cloudrun") as session:
                return session.recovered

        done = asyncio.run(recover())
        assert any("was interrupted" in line for line in done), done
        assert serving_now(fake) == "api-r0"  # the Ctrl-C answer: back to the previous one
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=scaled(10))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # drained
    assert "api-r1" not in fake.revisions


def test_stop_drains_through_the_tag_url_before_removing_the_tag(
    fake: FakeCloudRun, project: Path
) -> None:
    from websockets.asyncio.client import connect

    from safeship.deploy.targets.cloudrun_drain import http_drainer
    from safeship.tokens import mint

    manifest = with_cloudrun(project, fake)
    target = make_target(fake, drainer=http_drainer(manifest))
    target.env = "test"
    url = fake.service_url(SERVICE).replace("http://", "ws://") + "/ws"

    async def scenario() -> int | None:
        headers = {"Authorization": f"Bearer {mint(SECRET, 'user-2', ttl=300)}"}
        async with connect(url, additional_headers=headers, open_timeout=scaled(5)) as ws:
            await asyncio.wait_for(ws.recv(), scaled(5))  # connected, on api-r0
            await target.start(spec(project, "app:good"))
            await target.switch("api-r1")
            # The tag URL still routes while the drain is asked for; the tag goes after.
            await target.stop("api-r0", drain_seconds=1)
            await asyncio.wait_for(ws.wait_closed(), scaled(10))
            return ws.close_code

    assert asyncio.run(scenario()) == 1012
    assert target.drains["api-r0"].startswith("draining over")  # the endpoint took our token
    assert "api-r0" not in fake.revisions


def test_a_refused_drain_is_reported_and_the_revision_still_deleted(
    fake: FakeCloudRun, project: Path
) -> None:
    from safeship.deploy.targets.cloudrun_drain import http_drainer

    manifest = with_cloudrun(project, fake).model_copy(
        update={"service": load_manifest(project / "safeship.toml").service.model_copy(
            update={"drain_path": "/not/served"})}
    )  # fmt: skip
    target = make_target(fake, drainer=http_drainer(manifest))
    target.env = "test"
    asyncio.run(target.start(spec(project, "app:good")))
    asyncio.run(target.switch("api-r1"))
    with pytest.raises(TargetError, match="refused the drain call") as caught:
        asyncio.run(target.stop("api-r0", drain_seconds=0.5))
    assert "HTTP 404" in caught.value.message and "drain_path" in (caught.value.hint or "")
    assert "api-r0" not in fake.revisions


# -- API errors -----------------------------------------------------------------------------


def test_permission_denied_names_the_service_and_the_roles(fake: FakeCloudRun) -> None:
    fake.fail("get_service", 403)
    with pytest.raises(TargetError) as caught:
        asyncio.run(make_target(fake).state())
    message = caught.value.message
    assert "permission denied" in message
    assert f"'{SERVICE}'" in message and fake.project in message and fake.region in message
    assert "roles/run.developer" in (caught.value.hint or "") and "iam.serviceAccountUser" in (
        caught.value.hint or ""
    )


def test_a_region_mismatch_is_a_not_found_that_says_to_check_the_region(fake: FakeCloudRun) -> None:
    with pytest.raises(TargetError) as caught:
        asyncio.run(make_target(fake, region="us-central1").state())
    assert "not found" in caught.value.message and "us-central1" in caught.value.message
    assert "region" in (caught.value.hint or "") and "gcloud run services list" in (
        caught.value.hint or ""
    )


def test_a_conflicting_change_and_an_exhausted_quota_say_what_to_do(
    fake: FakeCloudRun, project: Path
) -> None:
    target = make_target(fake)
    fake.fail("update_service", 409)
    with pytest.raises(TargetError, match="conflict") as caught:
        asyncio.run(target.switch("api-r0"))
    assert "wait for the other deploy" in (caught.value.hint or "")
    fake.fail("update_service", 429)
    with pytest.raises(TargetError, match="quota") as caught:
        asyncio.run(target.start(spec(project, "app:good")))
    assert "Quotas" in (caught.value.hint or "")
    assert set(fake.revisions) == {"api-r0"}  # nothing was created


def test_a_failed_start_through_the_pipeline_keeps_the_api_error(
    fake: FakeCloudRun, project: Path
) -> None:
    fake.fail("update_service", 403)
    record = run_deploy(with_cloudrun(project, fake), project, "app:good")
    assert record["outcome"] == "failed"
    assert "permission denied" in record["error"]["message"]
    assert serving_now(fake) == "api-r0"


def test_the_id_token_can_be_handed_over_by_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from safeship.deploy.targets.cloudrun import ID_TOKEN_ENV, google_id_token

    monkeypatch.setenv(ID_TOKEN_ENV, " minted-by-the-ci-auth-step\n")
    assert google_id_token("https://api-xyz.a.run.app") == "minted-by-the-ci-auth-step"


def test_a_manifest_without_the_service_is_a_config_error(project: Path) -> None:
    from safeship.deploy.targets import create_target
    from safeship.errors import ConfigError

    manifest = load_manifest(project / "safeship.toml")
    with pytest.raises(ConfigError) as caught:
        create_target("cloudrun", manifest)
    assert caught.value.key == "deploy.cloudrun.project"
    assert "project, region, service" in caught.value.message


def test_probes_of_a_private_service_carry_the_id_token_apart_from_the_apps_token(
    fake: FakeCloudRun,
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    from safeship.deploy.probes import RevisionProber
    from safeship.probe import StaticToken
    from safeship.testing import run_server

    seen: list[dict[str, str]] = []

    async def ready(request: Any) -> JSONResponse:
        seen.append(dict(request.headers))
        return JSONResponse({"status": "ready"})

    async def ws(websocket: WebSocket) -> None:
        seen.append(dict(websocket.headers))
        await websocket.accept()
        await websocket.close()

    app = Starlette(routes=[Route("/health/ready", ready), WebSocketRoute("/ws", ws)])
    target = make_target(fake)
    prober = RevisionProber(
        token_source=StaticToken("the-apps-own-jwt"), headers=target.probe_headers
    )
    with run_server(app) as url:
        assert asyncio.run(prober.ready(url)).ok
        asyncio.run(prober.websocket(url))
    assert [h.get("x-serverless-authorization") for h in seen] == [f"Bearer {ID_TOKEN}"] * 2
    assert seen[1]["authorization"] == "Bearer the-apps-own-jwt"


def test_ctrl_c_during_the_start_leaves_no_revision_behind(
    fake: FakeCloudRun, project: Path
) -> None:
    with_cloudrun(project, fake)
    fake.op_delay = 3.0  # the start is still an operation on the server when Ctrl-C lands
    argv = [
        sys.executable, "-m", "safeship", "deploy", "--env", "test", "--target", "cloudrun",
        "--image", "app:good", "--skip", "static", "--skip", "secrets", "--json",
    ]  # fmt: skip
    child = subprocess.Popen(argv, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: "api-r1" in fake.revisions or child.poll() is not None, scaled(60))
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=scaled(60))
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130
    assert json.loads(out)["outcome"] == "cancelled"
    state = asyncio.run(make_target(fake).state())
    assert state.serving == "api-r0"
    assert [r.id for r in state.revisions] == ["api-r0"]  # the half-made one is deleted


def test_status_reads_the_service_from_the_api(fake: FakeCloudRun, project: Path) -> None:
    from safeship.deploy.operations import status

    manifest = with_cloudrun(project, fake, target="cloudrun")
    record = run_deploy(manifest, project, "app:good")
    assert record["outcome"] == "promoted", record["reason"]
    report = asyncio.run(status(manifest))
    assert report["ok"] is True, report
    assert report["target"] == "cloudrun" and report["serving"] == "api-r1"
    assert report["front_url"] == fake.service_url(SERVICE)
    assert report["health"]["front"]["category"] == "ok"
    assert report["health"]["api-r1"]["category"] == "ok"  # through its tag URL
    assert report["last_deploy"]["status"] == "promoted"


def test_no_id_token_makes_the_probe_inconclusive_and_says_how_to_get_one(
    fake: FakeCloudRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safeship.deploy.probes import RevisionProber
    from safeship.deploy.targets.cloudrun import ID_TOKEN_ENV

    def no_credentials(audience: str) -> str:
        raise OSError("no application default credentials")

    target = make_target(fake)
    target.id_token = no_credentials
    with pytest.raises(TargetError) as caught:
        asyncio.run(target.probe_headers("http://x"))
    assert ID_TOKEN_ENV in (caught.value.hint or "") and "private = false" in (
        caught.value.hint or ""
    )
    outcome = asyncio.run(RevisionProber(headers=target.probe_headers).ready("http://127.0.0.1:9"))
    assert outcome.category == "inconclusive"  # the probe could not run: not the revision's fault
    assert "Google ID token" in outcome.detail
