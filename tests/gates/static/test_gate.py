from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from safeship.config import Manifest, load_manifest
from safeship.gates.model import Finding, GateResult, GateStatus, Tier
from safeship.gates.runner import CheckContext, build_context
from safeship.gates.static.gate import StaticGate
from safeship.gates.static.graph import project_layout

FIXTURE = Path(__file__).parents[2] / "fixtures" / "static" / "project"
STARTUP, ON_CALL, UNREACHABLE, NOISE = (
    Tier.BREAKS_STARTUP,
    Tier.BREAKS_ON_CALL,
    Tier.UNREACHABLE,
    Tier.NOISE,
)
GOALS = "agentsvc/agents/goals_triage_sub_agent.py"

# Every finding of the fixture: (tier, path, line, rule, symbol).
EXPECTED = {
    # The story: a method annotation evaluated when the class is defined, in a module imported
    # lazily from a function on the entry point's import chain.
    (STARTUP, GOALS, 9, "F821", "DatabaseSessionManager"),
    (STARTUP, "agentsvc/settings.py", 3, "F821", "get_logger"),  # module level
    (STARTUP, "agentsvc/settings.py", 6, "F821", "register_setting"),  # decorator
    (STARTUP, "agentsvc/settings.py", 7, "F821", "DEFAULT_TIMEOUT"),  # default value
    (STARTUP, "agentsvc/settings.py", 12, "F821", "MAX_CONNECTIONS"),  # class body
    (STARTUP, "agentsvc/settings.py", 14, "F821", "WindowSize"),  # unquoted method annotation
    (STARTUP, "agentsvc/routes.py", 9, "F821", "GoalFilter"),  # quoted, FastAPI evaluates it
    (STARTUP, "agentsvc/models.py", 10, "F821", "OwnerRef"),  # future import, pydantic field
    (STARTUP, "agentsvc/plugins/broken_plugin.py", 4, "invalid-syntax", None),
    # ty: a name the first-party module no longer defines; ruff's TID251 on it is merged.
    (STARTUP, "agentsvc/reports.py", 4, "ty:import-not-found", "DatabaseSessionManager"),
    (STARTUP, "agentsvc/reports.py", 6, "ty:missing-attribute", "SESSION_TIMEOUT"),
    (ON_CALL, GOALS, 13, "F821", "DatabaseSessionManager"),
    (ON_CALL, "agentsvc/reports.py", 10, "ty:missing-attribute", "ARCHIVED"),  # enum member
    (ON_CALL, "agentsvc/reports.py", 14, "F821", "SessionManager"),
    (ON_CALL, "agentsvc/settings.py", 19, "F823", "counter"),
    (UNREACHABLE, "agentsvc/unused_jobs.py", 3, "F821", "build_schedule"),
    (UNREACHABLE, "agentsvc/unused_jobs.py", 7, "F821", "cleanup_sessions"),
    (UNREACHABLE, "archive/old_agent.py", 5, "F821", "OLD_LIMIT"),
    (UNREACHABLE, "archive/old_agent.py", 8, "F821", "legacy_runner"),
    (NOISE, "agentsvc/routes.py", 13, "F821", "HelperFilter"),  # quoted, nothing evaluates it
    (NOISE, "agentsvc/models.py", 13, "F821", "ReviewerRef"),  # future import: runtime-only
    (NOISE, "agentsvc/quoted.py", 9, "F821", "NotDefinedAnywhere"),
    (NOISE, "agentsvc/quoted.py", 10, "F821", "LocalOnly"),
    (NOISE, "agentsvc/quoted.py", 6, "ty:import-not-found", "agentsvc.gone"),  # TYPE_CHECKING
    (NOISE, "agentsvc/optional.py", 4, "ty:import-not-found", "agentsvc.speedups"),
    (NOISE, "agentsvc/dynamic.py", 3, "F822", "LazyThing"),  # module __getattr__
    (NOISE, "agentsvc/registry.py", 6, "F821", "GeneratedAgent"),  # globals() writes
    (NOISE, "agentsvc/registry.py", 6, "F821", "GeneratedTool"),
    (NOISE, "agentsvc/main.py", 25, "F821", "run_dev_server"),  # if __name__ == "__main__"
    (NOISE, "tests/factories.py", 5, "F821", "make_agent"),
}


def _context(root: Path = FIXTURE, env: str = "development", **kwargs: Any) -> CheckContext:
    """The fixture's environment is this interpreter's: fastapi and pydantic are installed."""
    manifest_file = root / "safeship.toml"
    manifest = load_manifest(manifest_file) if manifest_file.exists() else Manifest(root=root)
    kwargs.setdefault("python", sys.prefix)
    return build_context(root, manifest, env, base_environ={}, **kwargs)


def _rows(result: GateResult) -> set[tuple[Tier, str | None, int | None, str, str | None]]:
    return {(f.tier, f.path, f.line, f.rule, f.symbol) for f in result.findings}


def _one(result: GateResult, path: str, line: int) -> Finding:
    return next(f for f in result.findings if f.path == path and f.line == line)


@pytest.fixture(scope="module")
def result() -> GateResult:
    return StaticGate().run(_context())


def test_every_finding_has_its_exact_tier(result: GateResult) -> None:
    assert result.error is None
    assert _rows(result) == EXPECTED


def test_status_and_blocking_in_development(result: GateResult) -> None:
    assert result.status is GateStatus.FAILED
    assert {f.tier for f in result.blocking} == {STARTUP}
    assert len(result.blocking) == sum(1 for row in EXPECTED if row[0] is STARTUP)


def test_story_defect_carries_the_lazy_chain_and_the_legacy_hint(result: GateResult) -> None:
    finding = _one(result, GOALS, 9)
    # Calls as well as imports, with full dotted names and lines: the startup hook calls
    # the function whose lazy import runs the module whose class definition fails.
    assert finding.chain == (
        'agentsvc.main:19 @app.on_event("startup")',
        "agentsvc.main._startup:21 agent_class_initialization.initialize_agents()",
        "agentsvc.agent_class_initialization.initialize_agents:13 "
        "_register_auxiliary_agents(registry)",
        "agentsvc.agent_class_initialization._register_auxiliary_agents:6 "
        "from agentsvc.agents import goals_triage_sub_agent",
        "agentsvc.agents.goals_triage_sub_agent:9",
        "NameError: DatabaseSessionManager",
    )
    assert finding.scope == "GoalsTriageSubAgent.__init__"
    assert finding.source_line == (
        "    def __init__(self, sessions: DatabaseSessionManager) -> None:"
    )
    assert finding.hint and "use agentsvc.db.SessionManager" in finding.hint
    assert "annotation is evaluated" in finding.message
    assert finding.extra["engine"] == "ruff"


def test_findings_are_ordered_by_certainty(result: GateResult) -> None:
    order = [STARTUP, ON_CALL, Tier.WARNING, Tier.ENVIRONMENT, UNREACHABLE, NOISE]
    tiers = [order.index(f.tier) for f in result.findings]
    assert tiers == sorted(tiers)


def test_hints(result: GateResult) -> None:
    moved = _one(result, "agentsvc/reports.py", 14)
    assert moved.hint == (
        "`SessionManager` is defined elsewhere in the project: add "
        "`from agentsvc.db import SessionManager`"
    )
    legacy_import = _one(result, "agentsvc/reports.py", 4)
    assert legacy_import.hint and "legacy name" in legacy_import.hint
    assert _one(result, "agentsvc/settings.py", 19).hint is None  # F823: nothing to import


def test_framework_reasons(result: GateResult) -> None:
    assert "FastAPI" in _one(result, "agentsvc/routes.py", 9).message
    assert "pydantic" in _one(result, "agentsvc/models.py", 10).message
    assert "runtime-only" in _one(result, "agentsvc/models.py", 13).message


def test_summary(result: GateResult) -> None:
    summary = result.summary
    assert summary["tiers"] == {
        "breaks-startup": 11,
        "breaks-on-call": 4,
        "warning": 0,
        "environment": 0,
        "unreachable": 4,
        "noise": 11,
    }
    assert set(summary["engines"]) == {"ruff", "ty", "graph"}
    assert summary["engines"]["ty"]["version"] == "0.0.104"
    assert all(e["status"] == "ok" for e in summary["engines"].values())
    modules = summary["modules"]
    assert modules["entries"] == ["agentsvc.main"]
    assert modules["reachability"] == "complete"
    assert modules["total"] == 20 and modules["reachable"] == 17
    assert summary["dropped"]["duplicates"] == 1  # TID251 merged into ty's finding
    json.dumps(result.as_dict())  # the whole result is JSON-serialisable


def test_critical_environment_blocks_on_call_too() -> None:
    result = StaticGate().run(_context(env="staging"))
    assert {f.tier for f in result.blocking} == {STARTUP, ON_CALL}


def test_no_entry_counts_every_module_as_reachable(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "safeship.toml").unlink()
    result = StaticGate().run(_context(root))
    assert "unknown" in result.summary["modules"]["reachability"]
    assert not any(f.tier is UNREACHABLE for f in result.findings)
    assert _one(result, "archive/old_agent.py", 5).tier is STARTUP
    # Without a manifest there is no legacy table, so no legacy hint.
    assert _one(result, GOALS, 9).hint is None


def test_unknown_entry_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "safeship.toml").unlink()
    result = StaticGate().run(_context(root, entries=["agentsvc.nope"]))
    assert result.error and "agentsvc.nope" in result.error
    assert result.status is GateStatus.FAILED  # the startup findings still block


def _fake_engine(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ruff_missing_keeps_ty_findings(tmp_path: Path) -> None:
    result = StaticGate(ruff=tmp_path / "no-such-ruff").run(_context())
    assert result.error and "ruff" in result.error and "not found" in result.error
    assert result.summary["engines"]["ruff"]["status"] == "missing"
    assert result.summary["engines"]["graph"]["status"] == "missing"
    assert {f.rule for f in result.findings} == {"ty:import-not-found", "ty:missing-attribute"}
    # Without the graph every module counts as reachable: still triaged by context.
    assert _one(result, "agentsvc/reports.py", 4).tier is STARTUP
    assert _one(result, "agentsvc/optional.py", 4).tier is NOISE
    assert result.status is GateStatus.FAILED


def test_ty_crash_keeps_ruff_findings(tmp_path: Path) -> None:
    crash = _fake_engine(
        tmp_path, "ty", "sys.stderr.write('thread main panicked\\n'); sys.exit(101)"
    )
    result = StaticGate(ty=crash).run(_context())
    assert result.summary["engines"]["ty"]["status"] == "crashed"
    assert result.error and "panicked" in result.error
    expected = {row for row in EXPECTED if not row[3].startswith("ty:")}
    # The legacy import that ty reported comes back as ruff's TID251 warning.
    expected.add(
        (Tier.WARNING, "agentsvc/reports.py", 4, "TID251", "agentsvc.db.DatabaseSessionManager")
    )
    assert _rows(result) == expected


def test_no_engine_is_an_error(tmp_path: Path) -> None:
    result = StaticGate(ruff=tmp_path / "nope", ty=tmp_path / "nope").run(_context())
    assert result.status is GateStatus.ERROR
    assert result.findings == []
    assert result.error and "ruff" in result.error and "ty" in result.error


def test_partial_run_without_blocking_findings_is_inconclusive(tmp_path: Path) -> None:
    root = tmp_path / "clean"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "main.py").write_text("import os\n\nVALUE = os.sep\n")
    assert StaticGate().run(_context(root, entries=["app.main"])).status is GateStatus.PASSED
    partial = StaticGate(ty=tmp_path / "nope").run(_context(root, entries=["app.main"]))
    assert partial.status is GateStatus.ERROR and partial.findings == []


def test_empty_directory(tmp_path: Path) -> None:
    result = StaticGate().run(_context(tmp_path))
    assert result.status is GateStatus.PASSED and result.findings == []


def _shift_lines(root: Path) -> None:
    for path in root.rglob("*.py"):
        path.write_text("# moved down\n\n\n" + path.read_text())


def test_baseline_ratchet(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    baseline = tmp_path / "baseline.json"

    written = StaticGate().run(_context(root, baseline_path=baseline, write_baseline=True))
    assert written.status is GateStatus.PASSED
    assert all(f.in_baseline and not f.blocking for f in written.findings)
    assert written.summary["baseline"]["written"] is True
    data = json.loads(baseline.read_text())
    assert data["schema"] == "safeship.baseline/1"
    assert len(data["fingerprints"]) == len(EXPECTED)

    _shift_lines(root)
    shifted = StaticGate().run(_context(root, baseline_path=baseline))
    assert {f.line for f in shifted.findings} != {f.line for f in written.findings}
    assert all(f.in_baseline for f in shifted.findings)
    assert shifted.status is GateStatus.PASSED and shifted.blocking == []

    settings = root / "agentsvc" / "settings.py"
    settings.write_text(settings.read_text() + "\nRETRIES = max_retries()\n")
    fresh = StaticGate().run(_context(root, baseline_path=baseline))
    assert fresh.status is GateStatus.FAILED
    assert [(f.symbol, f.tier) for f in fresh.blocking] == [("max_retries", STARTUP)]
    assert fresh.summary["baseline"]["new"] == 1
    assert fresh.summary["baseline"]["known"] == len(EXPECTED)


def test_broken_baseline_counts_everything_as_new(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{oops")
    result = StaticGate().run(_context(baseline_path=baseline))
    assert result.error and "not valid JSON" in result.error and str(baseline) in result.error
    assert result.status is GateStatus.FAILED
    assert not any(f.in_baseline for f in result.findings)


def test_write_baseline_without_path_uses_the_default(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    result = StaticGate().run(_context(root, write_baseline=True))
    assert (root / "safeship-baseline.json").is_file()
    assert result.summary["baseline"]["path"] == str(root / "safeship-baseline.json")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_manifest_code_and_app_dir(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "safeship.toml": (
                '[service]\napp = "agent_service.main:app"\napp_dir = "examples"\n'
                'code = "examples/agent_service"\n'
            ),
            "examples/agent_service/__init__.py": "",
            "examples/agent_service/main.py": "from agent_service import jobs\napp = object()\n",
            "examples/agent_service/jobs.py": "LIMIT = missing_limit()\n",
            "examples/agent_service/unused.py": "LIMIT = also_missing()\n",
            # Outside service.code: not checked at all.
            "scripts/tool.py": "print(undefined_in_script)\n",
        },
    )
    ctx = _context(tmp_path)
    layout = project_layout(ctx)
    assert layout.targets == ("examples/agent_service",)
    assert layout.import_roots == ("examples", "")
    result = StaticGate().run(ctx)
    assert _rows(result) == {
        (STARTUP, "examples/agent_service/jobs.py", 1, "F821", "missing_limit"),
        (UNREACHABLE, "examples/agent_service/unused.py", 1, "F821", "also_missing"),
    }
    assert _one(result, "examples/agent_service/jobs.py", 1).chain == (
        "agent_service.main:1 from agent_service import jobs",
        "agent_service.jobs:1",
        "NameError: missing_limit",
    )


def test_src_layout(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "src/app/__init__.py": "",
            "src/app/main.py": "def boot():\n    from app import late\n    return late\n",
            "src/app/late.py": "class Late:\n    size = UNDEFINED_SIZE\n",
        },
    )
    result = StaticGate().run(_context(tmp_path, entries=["app.main"]))
    finding = _one(result, "src/app/late.py", 2)
    # boot() is never called at startup: the module runs only when boot() is called.
    assert finding.tier is ON_CALL and finding.scope == "Late"
    assert "imported only when called (inside `app.main.boot`)" in finding.message
    assert finding.chain == ("app.main (inside boot)", "app.late:2", "NameError: UNDEFINED_SIZE")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the syntax is valid from 3.12 on")
def test_syntax_newer_than_the_interpreter_is_a_syntax_error(tmp_path: Path) -> None:
    _write(tmp_path, {"app/__init__.py": "", "app/main.py": "type Alias = int\n"})
    result = StaticGate().run(_context(tmp_path, entries=["app.main"]))
    assert [(f.rule, f.tier) for f in result.findings] == [("invalid-syntax", STARTUP)]


def test_root_that_is_not_a_directory(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    ctx.root = tmp_path / "missing"
    result = StaticGate().run(ctx)
    assert result.status is GateStatus.ERROR and "not a directory" in (result.error or "")
