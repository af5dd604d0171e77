"""``safeship deploy`` end to end on the local target, with the reference backend and a
background load of real users: deploy, deploy again under load, roll back, status, history,
down."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeship.deploy.audit import verify

from .deploy_helpers import (
    ENV,
    SECRET,
    Load,
    cleanup,
    cli,
    first_deploy,
    front_port,
    live,
    make_project,
    served_by,
    serving,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)  # what the revisions and the probes use
    monkeypatch.delenv("AGENT_SERVICE_FAULT", raising=False)
    return make_project(tmp_path)


def test_deploy_under_load_then_rollback(project: Path) -> None:
    with cleanup(project):
        first = first_deploy(project)
        assert first["candidate"] == "r1" and first["previous"] is None
        assert serving(project) == "r1" and served_by(project) == "r1"

        with Load(front_port(project)) as load:
            second = cli(project, "deploy", "--env", ENV, "--json")
            assert second.code == 0, second.out + second.err
            load.settle()
        report = load.stop()

        record = second.json
        assert record["outcome"] == "promoted" and record["exit_code"] == 0
        assert (record["previous"], record["candidate"]) == ("r1", "r2")
        names = [s["name"] for s in record["steps"]]
        assert names == ["preflight", "gates", "start", "verify", "switch", "watch", "drain"]
        assert {g["gate"]: g["status"] for g in record["gates"]} == {
            "static": "passed",
            "legacy": "passed",
            "secrets": "passed",
        }
        assert [p["category"] for p in record["verification"]][-3:] == ["ok"] * 3
        assert record["watch"] and all(p["category"] == "ok" for p in record["watch"])
        assert serving(project) == "r2" and served_by(project) == "r2"
        assert not live(project, "r1")  # drained, then stopped

        # The users through the switch and the drain saw nothing go wrong, lost nothing.
        stats = report.stats
        assert report.clients >= 3 and stats.runs_completed >= 3
        assert report.user_visible_failures == {}, stats.as_dict()
        assert dict(stats.connects_failed) == {}, stats.as_dict()
        assert stats.lost == 0

        back = cli(project, "rollback", "--json")
        assert back.code == 0, back.out + back.err
        restored = back.json
        assert restored["kind"] == "rollback" and restored["outcome"] == "restored"
        assert restored["restored_from"] == "r1" and restored["candidate"] == "r3"
        assert serving(project) == "r3" and served_by(project) == "r3"
        assert not live(project, "r2")

        status = cli(project, "status", "--json")
        assert status.code == 0, status.out + status.err
        data = status.json
        assert data["serving"] == "r3" and data["health"]["front"]["category"] == "ok"
        assert [r["id"] for r in data["revisions"]] == ["r1", "r2", "r3"]

        history = cli(project, "history", "--json", "--last", "2")
        assert history.code == 0
        assert [(h["id"], h["kind"], h["status"]) for h in history.json] == [
            ("d3", "rollback", "restored"),
            ("d2", "deploy", "promoted"),
        ]
        text = cli(project, "history")
        assert "d1 deploy promoted" in text.out

        audit = project / ".safeship" / "audit.jsonl"
        assert verify(audit).ok
        assert SECRET not in audit.read_text()
        assert SECRET not in (project / ".safeship" / "state.db").read_bytes().decode(
            "utf-8", "replace"
        )

        gone = cli(project, "down", "--json")
        assert gone.code == 0 and gone.json["ok"] is True
        assert serving(project) is None and served_by(project) is None
        after = cli(project, "status", "--json")
        assert after.json["serving"] is None and after.code == 1  # deployed, nothing serves
