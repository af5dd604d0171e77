"""``safeship monitor`` on the local target: the front and each revision's own URL, found from
the target's state, and an auth alert that names the fingerprints from the revision's log."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from .deploy_helpers import (
    ENV,
    OTHER_SECRET,
    SECRET,
    cleanup,
    cli,
    first_deploy,
    make_project,
    set_deploy,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in (
        "AGENT_SERVICE_FAULT",
        "DEPLOY_FAULT_AFTER",
        "SAFESHIP_ENV",
        "SAFESHIP_NOTIFY_URLS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_the_served_environment_and_its_revision_are_probed(tmp_path: Path):
    root = make_project(tmp_path)
    with cleanup(root):
        first_deploy(root)
        result = cli(root, "monitor", "--once", "--json")
    assert result.code == 0, result.out + result.err
    samples = result.json["samples"]
    assert [(s["env"], s["revision"]) for s in samples] == [(ENV, None), (ENV, "r1")]
    assert all(s["ok"] for s in samples)
    assert result.json["analysis"][f"{ENV}@r1"]["phase"] == "Successful"


def test_an_auth_incident_names_both_fingerprints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = make_project(tmp_path)
    with cleanup(root):
        monkeypatch.setenv("JWT_SECRET_TEST", OTHER_SECRET)  # the backend's
        first_deploy(root)
        (root / "clients.env").write_text(f"JWT_SECRET_TEST={SECRET}\n")  # the clients'
        set_deploy(root, probe_secret="file:clients.env")
        codes = [cli(root, "monitor", "--once", "--env", ENV).code for _ in range(3)]
    assert codes == [1, 1, 1]
    with contextlib.closing(sqlite3.connect(root / ".safeship" / "monitor.db")) as db:
        rows = db.execute("SELECT key, class, detail FROM incidents ORDER BY key").fetchall()
    assert [(key, check) for key, check, _ in rows] == [(ENV, "auth"), (f"{ENV}@r1", "auth")]
    detail = rows[0][2]
    assert "HTTP 401" in detail and "clients sign with JWT_SECRET_TEST fingerprint" in detail
    assert "backend r1 verifies with JWT_SECRET_TEST fingerprint" in detail
    assert "(DIFFERENT)" in detail
    assert SECRET not in json.dumps(rows) and OTHER_SECRET not in json.dumps(rows)
