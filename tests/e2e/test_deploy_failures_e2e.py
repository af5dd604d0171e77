"""Each way a deploy can go wrong, end to end: a clear error, a consistent state, and users of
the serving revision who never notice a revision that failed verification."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from safeship.testing import scaled

from .deploy_helpers import (
    ENV,
    OTHER_SECRET,
    QUICK,
    SECRET,
    Load,
    cleanup,
    cli,
    first_deploy,
    front_port,
    live,
    make_project,
    revisions,
    served_by,
    serving,
    set_deploy,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in ("AGENT_SERVICE_FAULT", "DEPLOY_FAULT_AFTER", "SAFESHIP_ENV"):
        monkeypatch.delenv(name, raising=False)


def assert_untouched(root: Path, load: Load) -> None:
    """r1 still serves, and its users saw no error at all."""
    load.settle()
    report = load.stop()
    assert serving(root) == "r1" and served_by(root) == "r1"
    assert report.user_visible_failures == {}, report.stats.as_dict()
    assert dict(report.stats.connects_failed) == {}, report.stats.as_dict()
    assert report.stats.closes.get(1012, 0) == 0  # nobody was drained either


def test_a_source_that_is_not_the_app(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli(root, "deploy", "--env", ENV, "--source", str(elsewhere))
    assert result.code == 2
    assert "is not the configured app" in result.err and "agent_service" in result.err
    assert "hint:" in result.err
    assert not (root / ".safeship").exists()  # refused before anything was started


def test_force_without_a_reason_is_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    for args in (("--force",), ("--force", "--reason", "  ")):
        result = cli(root, "deploy", "--env", ENV, *args, "--json")
        assert result.code == 2
        assert result.json["ok"] is False and "--reason" in result.json["message"]
    assert not (root / ".safeship").exists()


def test_a_port_in_use(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    port = front_port(root)
    with socket.socket() as taken, cleanup(root):
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = cli(root, "deploy", *QUICK, "--json")
        assert result.code == 2, result.out + result.err
        record = result.json
        assert record["outcome"] == "failed"
        assert str(port) in record["error"]["message"] and record["error"]["hint"]
        # Consistent: no revision was created, nothing serves, the lock is released.
        assert revisions(root) == {} and serving(root) is None
        assert cli(root, "history", "--json").json[0]["status"] == "failed"
    with cleanup(root):
        assert first_deploy(root)["candidate"] == "r1"  # once the port is free again


def test_a_revision_that_never_becomes_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path)
    with cleanup(root):
        first_deploy(root)
        set_deploy(root, ready_timeout=scaled(2))
        with Load(front_port(root)) as load:
            # The agents phase hangs: the process never listens, so it is never ready.
            monkeypatch.setenv("AGENT_SERVICE_FAULT", "agents:hang")
            monkeypatch.setenv("AGENT_SERVICE_TIMEOUT_AGENTS", "120")
            result = cli(root, "deploy", *QUICK, "--json")
            monkeypatch.delenv("AGENT_SERVICE_FAULT")
            assert_untouched(root, load)
        assert result.code == 1, result.out + result.err
        record = result.json
        assert record["outcome"] == "failed" and "never became ready" in record["reason"]
        r2 = revisions(root)["r2"]
        assert r2["traffic_at"] is None and not live(root, "r2")  # stopped, never given traffic
        assert [s["name"] for s in record["steps"]][-1] == "stop"


def test_a_revision_that_denies_every_websocket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path)
    with cleanup(root):
        first_deploy(root)
        # The story's 403s: the backend now reads another secret than the one the clients
        # sign with. Probes sign like the clients (their file), so verification must catch it.
        (root / "clients.env").write_text(f"JWT_SECRET_TEST={SECRET}\n")
        set_deploy(root, probe_secret="file:clients.env")
        monkeypatch.setenv("JWT_SECRET_TEST", OTHER_SECRET)
        with Load(front_port(root)) as load:
            result = cli(root, "deploy", *QUICK, "--json")
            assert_untouched(root, load)
        assert result.code == 1, result.out + result.err
        record = result.json
        assert record["outcome"] == "failed"
        assert "failed verification with auth" in record["reason"]
        last = record["verification"][-1]
        assert last["category"] == "auth" and last["code"] == 401
        assert revisions(root)["r2"]["traffic_at"] is None and not live(root, "r2")
        assert OTHER_SECRET not in result.out and SECRET not in result.out


def test_a_revision_that_goes_bad_after_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path, app="faulty_agent:app")
    with cleanup(root):
        first_deploy(root)
        set_deploy(root, watch_seconds=12, watch_interval=0.25)
        with Load(front_port(root)) as load:
            monkeypatch.setenv("DEPLOY_FAULT_AFTER", "5")  # closes everything with 1011
            result = cli(root, "deploy", *QUICK, "--json")
            monkeypatch.delenv("DEPLOY_FAULT_AFTER")
            load.settle()
            report = load.stop()
        assert result.code == 1, result.out + result.err
        record = result.json
        assert record["outcome"] == "rolled_back"
        assert "consecutive failed probes after the switch" in record["reason"]
        assert [p["category"] for p in record["watch"]][-3:] == ["internal_error"] * 3
        assert record["detection_after_switch_s"] > 1.0  # it passed verification, then broke
        assert record["time_to_rollback_s"] is not None
        # Traffic went back to r1 before r2 was drained and stopped.
        assert serving(root) == "r1" and served_by(root) == "r1" and not live(root, "r2")
        steps = [s["name"] for s in record["steps"]]
        assert steps[-3:] == ["watch", "rollback", "drain"]
        # Only users of the bad revision saw errors (1011): those who connected between the
        # switch and the rollback.
        failures = report.user_visible_failures
        assert set(failures) <= {"closed:1011", "ConnectionError", "run_interrupted"}
        on_bad = record["detection_after_switch_s"] + record["time_to_rollback_s"] + 1.0
        assert failures.get("closed:1011", 0) <= load.rate * on_bad + 3
