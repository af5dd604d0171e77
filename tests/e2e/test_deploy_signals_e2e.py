"""A deploy interrupted for real: Ctrl-C (SIGINT) and SIGKILL sent to a ``safeship deploy``
process at several points. The previous revision keeps serving throughout, and what the
interrupted deploy left is cleaned up (by itself on Ctrl-C, by the next command on SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from safeship.config import DeployConfig
from safeship.testing import scaled

from .deploy_helpers import (
    DEFAULT_DEPLOY,
    ENV,
    SECRET,
    Load,
    cleanup,
    cli,
    deploy_row,
    first_deploy,
    front_port,
    live,
    make_project,
    revisions,
    served_by,
    serving,
    set_deploy,
    wait_deploy_phase,
)

pytestmark = pytest.mark.e2e

DEPLOY = ("deploy", "--env", ENV, "--skip", "static", "--skip", "legacy")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in ("AGENT_SERVICE_FAULT", "DEPLOY_FAULT_AFTER", "SAFESHIP_ENV"):
        monkeypatch.delenv(name, raising=False)
    return make_project(tmp_path)


def long_window(root: Path, phase: str) -> None:
    """Make the deploy's ``phase`` long enough to interrupt it there (and the others short)."""
    verify = 400 if phase == "verifying" else 3
    set_deploy(root, verify_probes=verify, verify_interval=0.05, watch_seconds=60)


def spawn_deploy(root: Path, tmp_path: Path, *, all_gates: bool = False) -> subprocess.Popen[str]:
    log = (tmp_path / f"deploy-{len(list(tmp_path.glob('deploy-*')))}.log").open("w")
    args = DEPLOY[:3] if all_gates else DEPLOY  # all gates take long enough to be caught at
    return subprocess.Popen(
        [sys.executable, "-m", "safeship", *args],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As from a terminal: a shell starts background jobs with SIGINT ignored, and a child
        # would inherit that and never see the Ctrl-C this test sends.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_ctrl_c_before_and_after_the_switch(project: Path, tmp_path: Path) -> None:
    with cleanup(project):
        first_deploy(project)
        with Load(front_port(project)) as load:
            for phase, candidate in (("verifying", "r2"), ("watching", "r3")):
                long_window(project, phase)
                proc = spawn_deploy(project, tmp_path)
                try:
                    row = wait_deploy_phase(project, phase)
                    proc.send_signal(signal.SIGINT)
                    # A clean stop drains the candidate: the drain window, then up to the
                    # backend's run grace for in-flight runs, bounded by the kill grace.
                    bound = DEFAULT_DEPLOY["drain_seconds"] + DeployConfig().stop_grace_seconds
                    assert proc.wait(scaled(bound + 20)) == 130
                finally:
                    proc.kill()
                record = deploy_row(project, row["id"])
                assert record is not None
                assert record["status"] == "cancelled" and record["record"]["interrupted"] is True
                expected = "failed" if phase == "verifying" else "rolled_back"
                assert record["record"]["rollout_outcome"] == expected
                assert serving(project) == "r1" and served_by(project) == "r1"
                assert not live(project, candidate)
            load.settle()
        report = load.stop()
        assert "Ctrl-C" in (deploy_row(project) or {})["record"]["reason"]
        # Users never saw the revision interrupted before its switch; the one interrupted
        # after it drained its users back to r1 (1012, reconnect, resume): nothing lost.
        assert report.user_visible_failures == {}, report.stats.as_dict()
        assert report.stats.lost == 0


def test_sigkill_at_several_steps_leaves_the_previous_revision_serving(
    project: Path, tmp_path: Path
) -> None:
    with cleanup(project):
        first_deploy(project)
        for phase in ("gating", "verifying", "watching"):
            long_window(project, phase)
            proc = spawn_deploy(project, tmp_path, all_gates=phase == "gating")
            try:
                row = wait_deploy_phase(project, phase)
                if phase == "watching":
                    assert serving(project) == row["record"]["candidate"]
                proc.send_signal(signal.SIGKILL)
                proc.wait(scaled(10))
            finally:
                proc.kill()
            candidate = row["record"].get("candidate")
            # The next command reports the half-done deploy and cleans it up.
            status = cli(project, "status", "--json")
            assert status.code == 0, status.out + status.err
            data = status.json
            said = " ".join(data["recovered"])
            assert f"deploy {row['id']}" in said and "interrupted" in said
            assert data["serving"] == "r1" and served_by(project) == "r1"
            if candidate is not None:
                assert not live(project, candidate)
                state = revisions(project)[candidate]["status"]
                assert state in ("abandoned", "stopped")
            after = deploy_row(project, row["id"])
            assert after is not None and after["status"] == "interrupted"
        # Everything is clean: the next deploy goes through.
        set_deploy(project, verify_probes=3, watch_seconds=1)
        assert first_deploy(project)["previous"] == "r1"
