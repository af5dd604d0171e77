from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from safeship.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "check" / "legacy_proj"
RENAME = "shop.db.DatabaseSessionManager=shop.db.SessionManager"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "200")
    root = tmp_path / "legacy_proj"
    shutil.copytree(FIXTURE, root)
    (root / "shop" / "broken.py").unlink()  # a clean tree; the syntax error has its own test
    return root


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.py"))}


def test_check_exits_1_while_references_remain_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(project)
    assert main(["migrate", str(project), "--rename", RENAME, "--check"]) == 1
    out = capsys.readouterr().out
    assert "9 reference(s) remain in 3 file(s)" in out
    assert "shop/main.py:1" in out and "tests/db_check.py:5" in out
    assert _tree(project) == before


def test_rename_then_check_exits_0(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(project), "--rename", RENAME]) == 0
    out = capsys.readouterr().out
    assert "3 file(s) changed" in out
    for rel in ("shop/main.py", "shop/agents/goals.py", "tests/db_check.py"):
        assert f"changed {rel}" in out
    assert "no references to legacy names remain" in out
    main_py = (project / "shop" / "main.py").read_text()
    assert "DatabaseSessionManagerFactory()" in main_py  # same prefix, left alone
    assert '"DatabaseSessionManager"  # DatabaseSessionManager in a comment' in main_py
    assert main(["migrate", str(project), "--rename", RENAME, "--check"]) == 0


def test_json_report(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(project), "--rename", RENAME, "--check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["check"] is True
    assert data["counts"] == {"shop.db.DatabaseSessionManager": 9}
    assert data["remaining"][0]["path"] == "shop/agents/goals.py"
    assert main(["migrate", str(project), "--rename", RENAME, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["remaining"] == []
    assert sorted(data["renamed"][0]["changed"]) == [
        "shop/agents/goals.py",
        "shop/main.py",
        "tests/db_check.py",
    ]


def test_defaults_to_the_manifest_legacy_table(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", str(project), "--check"]) == 1
    assert "9 reference(s) remain" in capsys.readouterr().out


def test_unparsable_file_is_reported_and_fails(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "shop" / "broken.py").write_text(
        "from shop.db import DatabaseSessionManager\n\ndef oops(:\n    pass\n"
    )
    assert main(["migrate", str(project), "--rename", RENAME]) == 1
    out = capsys.readouterr().out
    assert "not parsed shop/broken.py" in out


@pytest.mark.parametrize("spec", ["Old=New", "shop.db.X", "a.b=a.b"])
def test_bad_rename_exits_2(project: Path, capsys: pytest.CaptureFixture[str], spec: str) -> None:
    assert main(["migrate", str(project), "--rename", spec]) == 2
    assert "--rename" in capsys.readouterr().err


def test_nothing_to_rename_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.py").write_text("")
    assert main(["migrate", str(tmp_path)]) == 2
    assert "nothing to rename" in capsys.readouterr().err
