"""Canary steps on the local target, end to end: a revision that goes bad at the 10 % step is
judged on its own traffic and rolled back, and only its share of the users saw it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .deploy_helpers import (
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


def test_a_revision_that_goes_bad_at_the_ten_percent_step_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path, app="faulty_agent:app")
    with cleanup(root):
        first_deploy(root)
        set_deploy(root, steps=[10, 100], watch_seconds=12, watch_interval=0.25)
        with Load(front_port(root)) as load:
            monkeypatch.setenv("DEPLOY_FAULT_AFTER", "4")  # closes everything with 1011
            result = cli(root, "deploy", *QUICK, "--json")
            monkeypatch.delenv("DEPLOY_FAULT_AFTER")
            load.settle()
            report = load.stop()
        assert result.code == 1, result.out + result.err
        record = result.json
        assert record["outcome"] == "rolled_back", record["reason"]
        assert "at the 10% step" in record["reason"]
        assert record["canary_steps"] == [10]
        names = [s["name"] for s in record["steps"]]
        assert "switch" not in names  # it never got more than its 10 %
        assert names[-3:] == ["canary", "rollback", "drain"]
        # Judged on its own traffic: its own probes, and its metrics against r1's.
        last = record["canary"][-1]
        assert last["category"] == "internal_error"
        assert "(new vs previous revision)" in last["detail"]
        assert serving(root) == "r1" and served_by(root) == "r1" and not live(root, "r2")
        assert revisions(root)["r2"]["traffic_at"] is not None
        # Only users sent to r2 saw its 1011s: about one in ten of those who connected while
        # it had its share, with slack for the clients' own reconnects.
        failures = report.user_visible_failures
        assert set(failures) <= {"closed:1011", "ConnectionError", "run_interrupted"}
        on_bad = (record["detection_after_traffic_s"] or 0) + record["time_to_rollback_s"] + 1.0
        assert failures.get("closed:1011", 0) <= 0.1 * load.rate * on_bad + 3
