"""The audit chain cannot be forged: a history rewritten with recomputed hashes, a forged
entry appended, a truncated tail or a missing file all fail ``safeship audit verify``; with
the key set, even an attacker who also rewrites the anchor in state.db fails; an unkeyed
(legacy) log is reported as such, never silently intact."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from safeship.cli import main
from safeship.deploy.audit import AuditLog, entry_hash
from safeship.errors import AuditError

KEY = "audit-key-from-the-secret-store-0123456789"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFESHIP_AUDIT_KEY", KEY)
    path = tmp_path / ".safeship" / "audit.jsonl"
    audit = AuditLog(path, environ={"SAFESHIP_ACTOR": "ann@laptop", "SAFESHIP_AUDIT_KEY": KEY})
    for gate in ("boot", "imports", "static"):
        audit.append("gate_skipped", {"gate": gate, "env": "production"}, why="OPS-1")
    return path


def _verify(path: Path) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["audit", "verify", "--path", str(path), "--json"])
    return code, json.loads(out.getvalue())


def _rewrite(path: Path, change: dict[str, object], *, keep_mac: bool = True) -> None:
    """Edit every entry and recompute the whole chain, as an attacker with write access."""
    prev = "0" * 64
    lines = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        entry.update(change)
        entry["prev"] = prev
        entry["hash"] = entry_hash(entry)
        if not keep_mac:
            entry.pop("mac", None)
        prev = entry["hash"]
        lines.append(json.dumps(entry, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def test_intact_log_verifies(log: Path) -> None:
    code, report = _verify(log)
    assert code == 0 and report["ok"] and report["entries"] == 3


@pytest.mark.parametrize("keep_mac", [True, False])
def test_rewritten_history_with_recomputed_hashes_fails(log: Path, keep_mac: bool) -> None:
    _rewrite(log, {"why": "approved by nobody"}, keep_mac=keep_mac)
    code, report = _verify(log)
    assert code == 1
    assert any("mac" in p or "anchored" in p for p in report["problems"]), report


def test_appended_forged_entry_fails(log: Path) -> None:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    forged = {**entries[-1], "seq": 4, "prev": entries[-1]["hash"], "why": "forged"}
    forged.pop("mac")
    forged["hash"] = entry_hash(forged)
    with log.open("a") as out:
        out.write(json.dumps(forged, separators=(",", ":")) + "\n")
    code, report = _verify(log)
    assert code == 1 and any("line 4: no mac after keyed" in p for p in report["problems"]), report


def test_truncated_tail_fails(log: Path) -> None:
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2]))
    code, report = _verify(log)
    assert code == 1
    assert any("anchors seq 3" in p for p in report["problems"]), report


def test_missing_file_fails(log: Path) -> None:
    log.unlink()
    code, report = _verify(log)
    assert code == 1 and report["status"] == "missing"
    assert report["problems"] == [
        f"audit log missing: expected 3 entries anchored in {log.parent / 'state.db'}"
    ]


def test_a_fresh_project_has_no_audit_log_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ".safeship" / "audit.jsonl"
    code, report = _verify(path)
    assert code == 0 and report["status"] == "no_log" and report["entries"] == 0
    assert main(["audit", "verify", "--path", str(path)]) == 0
    assert "no audit log yet" in capsys.readouterr().out


def _set_anchor(log: Path) -> None:
    """Point the anchor at the log's current head, as an attacker who can write state.db."""
    last = json.loads(log.read_text().splitlines()[-1])
    with sqlite3.connect(log.parent / "state.db") as db:
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (last["seq"], last["hash"]))


def test_a_rewrite_that_strips_the_macs_and_moves_the_anchor_fails_with_the_key(
    log: Path,
) -> None:
    _rewrite(log, {"why": "approved by nobody"}, keep_mac=False)
    _set_anchor(log)
    code, report = _verify(log)
    assert code == 1
    assert any(p.startswith("unkeyed: no entry of 3 carries a mac") for p in report["problems"]), (
        report
    )


def test_a_forged_entry_with_a_moved_anchor_fails_with_the_key(log: Path) -> None:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    forged = {**entries[-1], "seq": 4, "prev": entries[-1]["hash"], "why": "forged"}
    forged["mac"] = "0" * 64
    forged["hash"] = entry_hash(forged)
    with log.open("a") as out:
        out.write(json.dumps(forged, separators=(",", ":")) + "\n")
    _set_anchor(log)
    code, report = _verify(log)
    assert code == 1
    assert any(p.startswith("line 4: the mac does not verify") for p in report["problems"])


def test_without_the_key_a_forged_append_past_the_anchor_fails(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAFESHIP_AUDIT_KEY")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    forged = {**entries[-1], "seq": 4, "prev": entries[-1]["hash"], "why": "forged"}
    forged.pop("mac")
    forged["hash"] = entry_hash(forged)
    with log.open("a") as out:
        out.write(json.dumps(forged, separators=(",", ":")) + "\n")
    code, report = _verify(log)
    assert code == 1
    assert any("past the head the state store anchors" in p for p in report["problems"])


def test_a_legacy_unkeyed_log_is_reported_never_silently_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("SAFESHIP_AUDIT_KEY", raising=False)
    path = tmp_path / ".safeship" / "audit.jsonl"
    AuditLog(path, environ={"SAFESHIP_ACTOR": "ann@laptop"}).append("forced", {"env": "staging"})
    # Without the key: the chain holds, and the report says it is the hash chain only.
    code, report = _verify(path)
    assert code == 0 and report["keyed"] == 0 and report["unkeyed"] == 1
    assert any(n.startswith("unkeyed: 1 entry carries no mac") for n in report["notes"])
    assert main(["audit", "verify", "--path", str(path)]) == 0
    assert "unkeyed: hash chain only" in capsys.readouterr().out
    # Once the key is configured, a log with no keyed entry is refused...
    monkeypatch.setenv("SAFESHIP_AUDIT_KEY", KEY)
    code, report = _verify(path)
    assert code == 1 and report["problems"][0].startswith("unkeyed: no entry of 1 carries")
    # ...until an append with the key vouches for the legacy entries before it.
    AuditLog(path, environ={"SAFESHIP_AUDIT_KEY": KEY}).append("forced", {"env": "staging"})
    code, report = _verify(path)
    assert code == 0 and report["keyed"] == 1 and report["unkeyed"] == 1
    assert report["notes"] == [
        "line 1 was written before SAFESHIP_AUDIT_KEY was set (legacy); the keyed entry "
        "at line 2 vouches for them"
    ]
    # An unkeyed entry after a keyed one is refused.
    AuditLog(path, environ={}).append("forced", {"env": "staging"})
    code, report = _verify(path)
    assert code == 1 and any(p.startswith("line 3: no mac after keyed") for p in report["problems"])


def test_without_the_key_the_anchor_still_catches_a_rewrite(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAFESHIP_AUDIT_KEY")
    _rewrite(log, {"why": "rewritten"})
    code, report = _verify(log)
    assert code == 1 and any("anchored" in p for p in report["problems"]), report


@pytest.mark.parametrize(
    "weak", ["password" * 4, "0123456789abcdefghijklmnopqrstuvwxyz", "${AUDIT_KEY}", "short"]
)
def test_a_weak_audit_key_is_refused_without_being_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weak: str
) -> None:
    """Every entry's hash and mac are in the log: a guessable key is found offline."""
    path = tmp_path / ".safeship" / "audit.jsonl"
    with pytest.raises(AuditError, match=r"SAFESHIP_AUDIT_KEY .*(rule|bytes)") as refused:
        AuditLog(path, environ={"SAFESHIP_AUDIT_KEY": weak}).append("forced", {"env": "x"})
    assert weak not in str(refused.value) and not path.exists()
    AuditLog(path, environ={}).append("forced", {"env": "x"})
    monkeypatch.setenv("SAFESHIP_AUDIT_KEY", weak)
    code, report = _verify(path)
    assert code == 1 and report["problems"][0].startswith("SAFESHIP_AUDIT_KEY ")
    assert weak not in json.dumps(report)
