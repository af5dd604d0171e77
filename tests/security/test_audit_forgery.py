"""The audit chain cannot be forged: a history rewritten with recomputed hashes, a forged
entry appended, a truncated tail or a missing file all fail ``safeship audit verify``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from safeship.cli import main
from safeship.deploy.audit import AuditLog, entry_hash

KEY = "audit-key-from-the-secret-store-0123456789"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFESHIP_AUDIT_KEY", KEY)
    path = tmp_path / ".safeship" / "audit.jsonl"
    audit = AuditLog(path, environ={"SAFESHIP_ACTOR": "ann@laptop", "SAFESHIP_AUDIT_KEY": KEY})
    for gate in ("boot", "imports", "static"):
        audit.append("gate_skipped", {"gate": gate, "env": "production"}, why="OPS-1")
    return path


def _verify(path: Path) -> tuple[int, dict[str, object]]:
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
    assert code == 1 and any("line 4: no valid mac" in p for p in report["problems"]), report


def test_truncated_tail_fails(log: Path) -> None:
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2]))
    code, report = _verify(log)
    assert code == 1
    assert any("anchors seq 3" in p for p in report["problems"]), report


def test_missing_file_fails(log: Path) -> None:
    log.unlink()
    code, report = _verify(log)
    assert code == 1 and "no audit log" in report["problems"][0]


def test_without_the_key_the_anchor_still_catches_a_rewrite(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAFESHIP_AUDIT_KEY")
    _rewrite(log, {"why": "rewritten"})
    code, report = _verify(log)
    assert code == 1 and any("anchored" in p for p in report["problems"]), report
