from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeship.cli import main
from safeship.deploy.audit import AuditLog


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / ".safeship" / "audit.jsonl"
    audit = AuditLog(path, environ={"SAFESHIP_ACTOR": "ann@laptop"})
    for gate in ("boot", "imports", "static"):
        audit.append("gate_skipped", {"gate": gate, "env": "staging"}, why="OPS-1")
    return path


def test_verify_ok(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--path", str(log)]) == 0
    out = capsys.readouterr().out
    assert "audit log intact" in out and "3 entries" in out


def test_verify_broken_names_the_line(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2])
    assert main(["audit", "verify", "--path", str(log)]) == 1
    out = capsys.readouterr().out
    assert "audit log broken" in out
    assert "line 2: seq 3 after 1" in out


def test_verify_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = log.read_text().replace('"why":"OPS-1"', '"why":"OPS-2"', 1)
    log.write_text(text)
    assert main(["audit", "verify", "--path", str(log), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["entries"] == 3
    assert data["problems"] == ["line 1: hash mismatch (the entry was edited)"]


def test_verify_defaults_to_the_manifest_state_dir(
    log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = log.parent.parent
    (root / "safeship.toml").write_text('[service]\nname = "svc"\n')
    monkeypatch.chdir(root)
    assert main(["audit", "verify", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(log) and data["entries"] == 3


def test_show_last_and_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", "--path", str(log), "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "#1" not in out and "#2" in out and "#3" in out
    assert "ann@laptop" in out and "gate_skipped" in out and "why: OPS-1" in out
    assert main(["audit", "show", "--path", str(log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["what"]["gate"] for e in data["entries"]] == ["boot", "imports", "static"]


def test_show_rejects_non_positive_last(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", "--path", str(log), "--last", "0"]) == 2
    assert "--last 0" in capsys.readouterr().err


def test_show_empty_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", "--path", str(tmp_path / "none.jsonl")]) == 0
    assert "no entries" in capsys.readouterr().out
