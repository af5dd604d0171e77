from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safeship.config import load_manifest
from safeship.errors import UsageError
from safeship.gates import GateStatus, Tier, build_context
from safeship.gates.legacy.gate import (
    LegacyGate,
    find_references,
    import_root_for,
    parse_rename,
    rename_references,
)
from safeship.testing import scaled

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "check" / "legacy_proj"
OLD = "shop.db.DatabaseSessionManager"
NEW = "shop.db.SessionManager"

# Every reference in the fixture: imports (absolute, aliased, relative), attribute uses
# through `import shop.db` and `from shop import db`, bare uses through an alias, and tests.
# Not counted: the definition in shop/db.py, DatabaseSessionManagerFactory, the string, the
# comment, and a local variable named DatabaseSessionManager.
EXPECTED = [
    ("shop/agents/goals.py", 4, "import"),
    ("shop/agents/goals.py", 8, "attribute"),
    ("shop/agents/goals.py", 12, "attribute"),
    ("shop/agents/goals.py", 15, "name"),
    ("shop/agents/goals.py", 17, "name"),
    ("shop/main.py", 1, "import"),
    ("shop/main.py", 4, "name"),
    ("tests/db_check.py", 1, "import"),
    ("tests/db_check.py", 5, "attribute"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "legacy_proj"
    shutil.copytree(FIXTURE, root)
    return root


def _located(refs: list) -> list[tuple[str, int, str]]:
    return [(r.path, r.line, r.kind) for r in refs]


def test_find_references_counts_only_real_references(project: Path) -> None:
    unparsable: list[str] = []
    refs = find_references(project, [OLD], unparsable=unparsable)
    assert _located(refs) == EXPECTED
    assert {r.name for r in refs} == {OLD}
    assert unparsable == ["shop/broken.py"]
    main_refs = [r for r in refs if r.path == "shop/main.py"]
    assert main_refs[0].source_line.startswith("from shop.db import DatabaseSessionManager")


def test_find_references_of_a_module_name(project: Path) -> None:
    refs = find_references(project, ["shop.db"])
    imports = [(r.path, r.line) for r in refs if r.kind == "import"]
    assert ("shop/agents/goals.py", 1) in imports  # import shop.db
    assert ("shop/agents/goals.py", 2) in imports  # from shop import db
    assert ("shop/main.py", 1) in imports  # from shop.db import ...


def test_find_references_with_no_names_is_empty(project: Path) -> None:
    assert find_references(project, []) == []


def test_legacy_gate_counts_per_name_and_warns(project: Path) -> None:
    manifest = load_manifest(project / "safeship.toml")
    ctx = build_context(project, manifest, "staging", base_environ={})
    result = LegacyGate().run(ctx)
    assert result.status is GateStatus.PASSED  # warnings never block by default
    assert result.summary["references"] == {OLD: len(EXPECTED)}
    assert result.summary["files"] == {OLD: 3}
    assert result.summary["unparsable"] == 1
    refs = [f for f in result.findings if f.rule == "legacy-reference"]
    assert [(f.path, f.line) for f in refs] == [(p, n) for p, n, _ in EXPECTED]
    assert all(f.tier is Tier.WARNING and not f.blocking for f in result.findings)
    assert refs[0].symbol == OLD
    assert f"safeship migrate --rename {OLD}={NEW}" in (refs[0].hint or "")
    unparsable = [f for f in result.findings if f.rule == "legacy-unparsable"]
    assert [f.path for f in unparsable] == ["shop/broken.py"]


def test_legacy_gate_without_legacy_names_passes(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("x = 1\n")
    ctx = build_context(tmp_path, load_manifest(start=tmp_path), "development", base_environ={})
    result = LegacyGate().run(ctx)
    assert result.status is GateStatus.PASSED
    assert result.findings == [] and result.summary["names"] == 0


def test_rename_rewrites_every_reference_and_nothing_else(project: Path) -> None:
    before_db = (project / "shop" / "db.py").read_text()
    outcome = rename_references(project, OLD, NEW)
    assert sorted(outcome.changed) == ["shop/agents/goals.py", "shop/main.py", "tests/db_check.py"]
    assert outcome.unparsable == ["shop/broken.py"]
    assert outcome.refused == []
    assert find_references(project, [OLD]) == []
    main = (project / "shop" / "main.py").read_text()
    assert "from shop.db import SessionManager, DatabaseSessionManagerFactory" in main
    assert 'LABEL = "DatabaseSessionManager"  # DatabaseSessionManager in a comment' in main
    assert "factory = DatabaseSessionManagerFactory()" in main
    goals = (project / "shop" / "agents" / "goals.py").read_text()
    assert 'DatabaseSessionManager = "a local name that shadows nothing"' in goals
    assert (project / "shop" / "db.py").read_text() == before_db  # the definition stays


def test_renamed_code_still_runs(project: Path) -> None:
    rename_references(project, OLD, NEW)
    probe = (
        "import shop.main, shop.agents.goals as g, shop.db as db;"
        "assert isinstance(g.build(), db.SessionManager);"
        "assert isinstance(g.GoalsAgent(None).fallback(), db.SessionManager);"
        "assert isinstance(shop.main.sessions, db.SessionManager)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    assert proc.returncode == 0, proc.stderr


def test_rename_dry_run_changes_nothing(project: Path) -> None:
    before = {p: p.read_text() for p in project.rglob("*.py")}
    outcome = rename_references(project, OLD, NEW, write=False)
    assert len(outcome.changed) == 3
    assert {p: p.read_text() for p in project.rglob("*.py")} == before


def test_rename_of_one_file(project: Path) -> None:
    outcome = rename_references(project / "shop" / "main.py", OLD, NEW)
    assert outcome.changed == ["main.py"]
    assert "SessionManager(" in (project / "shop" / "main.py").read_text()
    assert find_references(project / "shop" / "agents", [OLD])  # untouched elsewhere


@pytest.mark.parametrize(
    "spec", ["Old", "a.Old", "a.Old=", "=a.New", "a.Old=New", "a.Old=a.Old", "a.b-c=a.d"]
)
def test_parse_rename_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UsageError, match="--rename"):
        parse_rename(spec)


def test_parse_rename_accepts_dotted_names() -> None:
    assert parse_rename(" a.b.Old = a.c.New ") == ("a.b.Old", "a.c.New")


def test_import_root_for_walks_above_the_package(project: Path) -> None:
    assert import_root_for(project / "shop" / "agents" / "goals.py") == project
    assert import_root_for(project / "shop" / "agents") == project
    assert import_root_for(project / "tests" / "db_check.py") == project / "tests"


def test_the_gate_scans_the_manifests_code_only(project: Path) -> None:
    manifest_path = project / "safeship.toml"
    manifest_path.write_text(
        manifest_path.read_text().replace(
            'app = "shop.main:app"', 'app = "shop.main:app"\ncode = "shop"'
        )
    )
    ctx = build_context(project, load_manifest(manifest_path), "development")
    result = LegacyGate().run(ctx)
    paths = {f.path for f in result.findings if f.rule == "legacy-reference"}
    assert paths == {"shop/agents/goals.py", "shop/main.py"}  # not tests/db_check.py
    assert result.summary["scanned"] == "shop"
    assert result.summary["total"] == 7
    unparsable = [f.path for f in result.findings if f.rule == "legacy-unparsable"]
    assert unparsable == ["shop/broken.py"]
