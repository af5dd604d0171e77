from __future__ import annotations

import itertools
import json
import multiprocessing
import re
from pathlib import Path

import pytest

from safeship.config import DeployConfig, Manifest
from safeship.deploy.audit import GENESIS, AuditLog, audit_path, entry_hash, verify
from safeship.errors import AuditError
from safeship.testing import scaled
from safeship.tokens import mint


def _log(path: Path, n: int = 3) -> AuditLog:
    log = AuditLog(path, environ={"SAFESHIP_ACTOR": "ci@runner"})
    for i in range(n):
        log.append("gate_skipped", {"gate": f"g{i}", "env": "staging"}, why=f"reason {i}")
    return log


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_append_builds_a_hash_chain(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.jsonl"
    log = _log(path, 3)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"]
    for entry in entries:
        assert entry["hash"] == entry_hash(entry)
        assert set(entry) == {"seq", "ts", "who", "event", "what", "why", "prev", "hash"}
        assert entry["who"] == "ci@runner"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    result = verify(path)
    assert result.ok and result.entries == 3 and result.problems == []
    assert result.head == entries[-1]["hash"]


def test_hash_is_sha256_of_canonical_json_without_hash() -> None:
    entry = {"seq": 1, "what": {"b": 1, "a": "é"}, "hash": "ignored"}
    import hashlib

    canonical = '{"seq":1,"what":{"a":"é","b":1}}'
    assert entry_hash(entry) == hashlib.sha256(canonical.encode()).hexdigest()


def test_default_actor_is_user_at_host(tmp_path: Path) -> None:
    entry = AuditLog(tmp_path / "a.jsonl", environ={}).append("forced", {"x": 1})
    assert re.fullmatch(r"[^@\s]+@[^@\s]+", entry["who"])


def test_missing_log_without_an_anchor_is_no_log_yet(tmp_path: Path) -> None:
    path = tmp_path / "none.jsonl"
    assert AuditLog(path).entries() == []
    result = verify(path)
    assert result.ok and result.status == "no_log" and result.entries == 0
    assert result.head is None and result.problems == []
    assert result.notes == [f"no audit log yet at {path}"]


def test_missing_log_with_an_anchor_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 2)
    path.unlink()
    result = verify(path)
    assert not result.ok and result.status == "missing" and result.anchored == 2
    assert result.problems == [
        f"audit log missing: expected 2 entries anchored in {tmp_path / 'state.db'}"
    ]


def test_edited_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 3)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["why"] = "nobody will notice"
    lines[1] = json.dumps(entry, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))
    result = verify(path)
    assert not result.ok
    assert any(p.startswith("line 2: hash mismatch") for p in result.problems), result.problems


def test_edit_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 3)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["why"] = "rewritten"
    entry["hash"] = entry_hash(entry)
    lines[1] = json.dumps(entry, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))
    result = verify(path)
    assert not result.ok
    assert any(p.startswith("line 3: prev does not match") for p in result.problems)


def test_deleted_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 4)
    lines = _lines(path)
    del lines[1]
    path.write_text("".join(lines))
    result = verify(path)
    assert not result.ok
    assert any("line 2: seq 3 after 1" in p and "deleted" in p for p in result.problems)
    assert any(p.startswith("line 2: prev does not match") for p in result.problems)


def test_reordered_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 4)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    result = verify(path)
    assert not result.ok
    assert any("line 3: seq 2 after 3" in p and "reordered" in p for p in result.problems)


def test_truncated_last_line_is_named_and_blocks_appends(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _log(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    result = verify(path)
    assert not result.ok
    assert result.problems == [
        "line 3: truncated (the last line is incomplete)",
        "the log ends at seq 2, but the state store anchors seq 3 "
        "(entries were removed from the end)",
    ]
    with pytest.raises(AuditError, match="incomplete line"):
        log.append("forced", {})


def test_truncation_right_after_the_last_brace_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 2)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    result = verify(path)
    assert result.problems == ["line 2: truncated (the last line has no newline)"]


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 3)
    lines = _lines(path)
    lines[0] = "{not json\n"
    path.write_text("".join(lines))
    result = verify(path)
    assert not result.ok
    assert "line 1: invalid JSON" in result.problems
    with pytest.raises(AuditError, match=r"audit.jsonl:1: not valid JSON"):
        AuditLog(path).entries()


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(path, environ={"SAFESHIP_ACTOR": f"w{worker}@test"})
    for i in range(count):
        log.append("gate_result", {"worker": worker, "i": i})


def test_concurrent_appends_from_processes_keep_the_chain_valid(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(scaled(30))
        assert proc.exitcode == 0
    result = verify(path)
    assert result.ok, result.problems
    assert result.entries == 100
    assert [e["seq"] for e in AuditLog(path).entries()] == list(range(1, 101))


def test_secret_shaped_values_are_never_stored(tmp_path: Path) -> None:
    token = mint("s" * 40, "alice")
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append(
        "forced", {"cmd": f"curl -H 'Authorization: Bearer {token}'"}, why=f"token {token}"
    )
    text = path.read_text()
    assert token not in text
    assert verify(path).ok


def test_audit_path_is_under_the_state_dir_of_the_manifest_root(tmp_path: Path) -> None:
    assert audit_path(Manifest(root=tmp_path)) == (tmp_path / ".safeship" / "audit.jsonl")
    custom = Manifest(root=tmp_path, deploy=DeployConfig(state_dir="var/state"))
    assert audit_path(custom) == tmp_path / "var" / "state" / "audit.jsonl"
