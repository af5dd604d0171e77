"""The deploy commands as library calls, up to the point where something would be started."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from safeship.config import Manifest
from safeship.deploy.operations import (
    check_source,
    deploy,
    down,
    history,
    open_session,
    revision_spec,
    status,
)
from safeship.deploy.pipeline import DeployRequest
from safeship.deploy.restore import previous_good, restore_spec
from safeship.deploy.state import DeployRow
from safeship.deploy.targets.base import Revision, RevisionStatus, TargetState
from safeship.errors import ConfigError, DeployError, SecretError, UsageError
from safeship.secrets import redact

SECRET = "ops-secret-2f4e6a8c0b1d3f5a7c9e1b3d5f7a9c0e"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src" / "svc").mkdir(parents=True)
    (root / "src" / "svc" / "__init__.py").write_text("")
    (root / "src" / "svc" / "main.py").write_text("app = None\n")
    return root


def manifest(root: Path, **tables: Any) -> Manifest:
    data: dict[str, Any] = {"service": {"app": "svc.main:app", "app_dir": "src"}}
    data.update(tables)
    return Manifest.model_validate({**data, "root": root, "path": root / "safeship.toml"})


def test_the_configured_app_is_accepted(project: Path) -> None:
    check_source(manifest(project), project)


def test_a_directory_without_the_app_is_refused(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="is not the configured app") as caught:
        check_source(manifest(project), other)
    assert "src/svc/main.py" in caught.value.message
    with pytest.raises(UsageError, match="does not exist"):
        check_source(manifest(project), tmp_path / "missing")


def test_a_manifest_without_an_app_is_a_config_error(project: Path) -> None:
    m = Manifest.model_validate({"root": project, "path": project / "safeship.toml"})
    with pytest.raises(ConfigError, match=r"service\.app"):
        check_source(m, project)


def test_revision_environment_overlays_env_file_and_table(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "staging.env").write_text(f"FROM_FILE=1\nSHARED=file\nJWT_SECRET_STAGING={SECRET}\n")
    monkeypatch.setenv("FROM_CALLER", "yes")
    monkeypatch.setenv("SHARED", "caller")
    m = manifest(
        project,
        environments={"staging": {"env_file": "staging.env", "env": {"SHARED": "table"}}},
    )
    spec = revision_spec(m, "staging", project)
    assert spec.env["FROM_CALLER"] == "yes" and spec.env["FROM_FILE"] == "1"
    assert spec.env["SHARED"] == "table"
    assert spec.env["SAFESHIP_ENV"] == "staging"
    assert SECRET not in repr(spec)
    assert SECRET not in redact(f"token signed with {SECRET}")  # registered for redaction


def test_missing_env_file_is_a_config_error(project: Path) -> None:
    m = manifest(project, environments={"staging": {"env_file": "nope.env"}})
    with pytest.raises(ConfigError, match=r"nope\.env"):
        revision_spec(m, "staging", project)


def run_deploy(m: Manifest, **request: Any) -> Any:
    values = {"env": "test", "source": m.root, **request}
    return asyncio.run(deploy(m, DeployRequest(**values)))


def test_deploy_refusals_happen_before_anything_starts(project: Path) -> None:
    m = manifest(project)
    with pytest.raises(UsageError, match="--force needs --reason"):
        run_deploy(m, force=True)
    with pytest.raises(UsageError, match="--force needs --reason"):
        run_deploy(m, force=True, reason="   ")
    with pytest.raises(ConfigError, match="unknown environment"):
        run_deploy(m, env="nowhere")
    with pytest.raises(UsageError, match="unknown gate"):
        run_deploy(m, skip=("bogus",))
    with pytest.raises(UsageError, match="not images"):
        asyncio.run(deploy(m, DeployRequest("test", project), image="registry/svc:1"))
    with pytest.raises(UsageError, match="not the configured app"):
        run_deploy(m, source=project / "src")
    assert not (project / ".safeship").exists()  # nothing was started or recorded


def test_deploy_without_a_probe_secret_names_the_variables(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_SECRET_TEST", raising=False)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with pytest.raises(SecretError, match="JWT_SECRET_TEST, JWT_SECRET"):
        run_deploy(manifest(project))


def test_commands_on_an_empty_state(project: Path) -> None:
    m = manifest(project, deploy={"state_dir": "state"})
    data = asyncio.run(status(m))
    assert data["ok"] is True and data["serving"] is None and data["revisions"] == []
    assert asyncio.run(history(m)) == []
    assert asyncio.run(down(m)) == []


def test_rollback_without_history_explains(project: Path) -> None:
    from safeship.deploy.operations import rollback

    with pytest.raises(DeployError, match="no previous good revision"):
        asyncio.run(rollback(manifest(project)))


def rev(rid: str, status: str = "running") -> Revision:
    return Revision(rid, f"http://{rid}", RevisionStatus(status), 0.0, traffic=True)


def row(seq: int, status: str, revision: str | None) -> DeployRow:
    return DeployRow(f"d{seq}", seq, status, 0.0, revision=revision)


def test_previous_good_is_the_latest_promoted_other_revision() -> None:
    state = TargetState("local", (rev("r1", "stopped"), rev("r2"), rev("r3")), "r3", None)
    rows = [row(4, "paused", "r3"), row(3, "rolled_back", "r9"), row(2, "promoted", "r2"),
            row(1, "promoted", "r1")]  # fmt: skip
    assert previous_good(state, rows) == rev("r2")
    state = TargetState("local", (rev("r1", "stopped"), rev("r2")), "r2", None)
    assert previous_good(state, [row(2, "promoted", "r2"), row(1, "restored", "r1")]) == rev(
        "r1", "stopped"
    )
    assert previous_good(state, [row(1, "promoted", "r2")]) is None


def test_restore_runs_the_snapshot_from_the_project_directory(project: Path) -> None:
    m = manifest(project, deploy={"state_dir": "state"})
    snapshot = project / "state" / "revisions" / "r1" / "src"
    (snapshot / "src" / "svc").mkdir(parents=True)

    async def go() -> tuple[str, Any]:
        async with open_session(m) as session:
            return restore_spec(session, rev("r1", "stopped"))

    env, spec = asyncio.run(go())
    assert env == "development"
    assert spec.source == snapshot
    assert spec.command is not None and spec.command[0] == sys.executable
    assert str(project) in spec.command and "{snapshot}/src" in spec.command
    assert spec.env["PYTHONSAFEPATH"] == "1"


def test_restore_without_a_snapshot_explains(project: Path) -> None:
    m = manifest(project, deploy={"state_dir": "state"})

    async def go() -> None:
        async with open_session(m) as session:
            restore_spec(session, rev("r7", "stopped"))

    with pytest.raises(DeployError, match="r7"):
        asyncio.run(go())
