from __future__ import annotations

import compileall
import os
import shutil
import sys
from pathlib import Path

import pytest

from safeship.config import GatesConfig, Manifest, ServiceConfig, load_manifest
from safeship.gates import GateStatus, Tier, build_context
from safeship.gates.imports.gate import (
    ImportsGate,
    discover_modules,
    import_modules,
    plan_imports,
    plan_spines,
    preload_candidates,
)
from safeship.tokens import mint

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "check" / "imports_proj"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # A copy: some tests add files to it.
    root = tmp_path / "imports_proj"
    shutil.copytree(FIXTURE, root)
    return root


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _run(project: Path, env: str = "development", *, strict: bool = True, **environ: str):
    """The gate in ``project`` with this interpreter (the fixture imports starlette);
    ``strict``: every module from a pristine interpreter, as these tests assume."""
    manifest = load_manifest(project / "safeship.toml")
    base = {"PATH": os.environ.get("PATH", ""), **environ}
    ctx = build_context(project, manifest, env, base_environ=base, python=sys.executable)
    return ImportsGate(strict=strict).run(ctx)


def test_discover_modules_skips_tests_main_and_excluded(project: Path) -> None:
    found = discover_modules(
        project, [project / "imppkg"], root=project, exclude=["imppkg/archive"]
    )
    assert [name for name, _ in found] == [
        "imppkg",
        "imppkg.agents",
        "imppkg.main",
        "imppkg.models",
        "imppkg.noisy",
        "imppkg.sub",
        "imppkg.sub.dies",
        "imppkg.sub.hang",
        "imppkg.sub.syntax",
        "imppkg.sub.uses_agents",
    ]
    assert dict(found)["imppkg"] == project / "imppkg" / "__init__.py"


def test_preload_candidates_are_never_first_party(project: Path) -> None:
    files = [path for _, path in discover_modules(project, [project / "imppkg"], root=project)]
    names = preload_candidates(files, {"imppkg"})
    assert "starlette.responses" in names and "os" in names and "time" in names
    assert not any(n.split(".")[0] == "imppkg" for n in names)


def test_every_kind_of_import_failure_is_reported(project: Path) -> None:
    result = _run(project)
    assert result.status is GateStatus.FAILED
    summary = result.summary
    assert (summary["modules"], summary["ok"], summary["error"]) == (10, 5, 3)
    assert (summary["hung"], summary["crashed"]) == (1, 1)
    assert summary["executed"] >= summary["ok"]  # every module body that ran, over all children
    by_rule = {(f.rule, f.path): f for f in result.findings}
    assert sorted(by_rule) == [
        ("import-crashed", "imppkg/sub/dies.py"),
        ("import-error", "imppkg/agents.py"),
        ("import-error", "imppkg/sub/syntax.py"),
        ("import-hung", "imppkg/sub/hang.py"),
    ]
    assert all(f.tier is Tier.ERROR and f.blocking for f in result.findings)

    agents = by_rule[("import-error", "imppkg/agents.py")]
    assert agents.line == 4
    assert agents.source_line == "def run(self, db: DatabaseSessionManager) -> None:"
    assert "NameError: name 'DatabaseSessionManager' is not defined" in agents.message
    # One broken module breaks its importers with the same error: reported once.
    assert agents.extra["modules"] == ["imppkg.agents", "imppkg.sub.uses_agents"]
    assert "also breaks the import of imppkg.sub.uses_agents" in agents.message
    assert agents.chain[-1] == "imppkg/agents.py:4 in GoalsAgent"
    assert "restore its import" in (agents.hint or "")

    hung = by_rule[("import-hung", "imppkg/sub/hang.py")]
    assert "hung while importing" in hung.message and "killed after 2s" in hung.message
    assert (hung.line, hung.source_line) == (4, "time.sleep(3600)")

    dies = by_rule[("import-crashed", "imppkg/sub/dies.py")]
    assert "exited with code 7" in dies.message

    syntax = by_rule[("import-error", "imppkg/sub/syntax.py")]
    assert "SyntaxError" in syntax.message and syntax.line == 1


def test_the_target_environment_variables_are_used(project: Path) -> None:
    # `test` has no IMP_REGION in its env table, `development` has.
    result = _run(project, env="test")
    main = [f for f in result.findings if f.path == "imppkg/main.py"]
    assert len(main) == 1
    assert "KeyError: 'IMP_REGION'" in main[0].message
    assert main[0].line == 7
    assert result.summary["ok"] == 4
    with_region = _run(project, env="test", IMP_REGION="us")
    assert with_region.summary["ok"] == 5
    assert not [f for f in with_region.findings if f.path == "imppkg/main.py"]


def test_each_module_is_imported_in_a_pristine_state(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "fresh/__init__.py": "",
            "fresh/state.py": "FLAG = False\n",
            # Imported first in the same worker: must not leak into the next module.
            "fresh/a_sets.py": (
                "import builtins\nfrom fresh import state\nstate.FLAG = True\nbuiltins.LEAKED = 1\n"
            ),
            "fresh/b_checks.py": (
                "import builtins\nfrom fresh import state\n"
                "assert not state.FLAG, 'state leaked from another module'\n"
                "assert not hasattr(builtins, 'LEAKED'), 'builtins leaked'\n"
            ),
        },
    )
    outcomes, facts = import_modules(
        ["fresh.a_sets", "fresh.b_checks", "fresh.state"],
        import_root=tmp_path,
        environ=dict(os.environ),
        timeout=10,
        jobs=1,
        first_party=["fresh"],
    )
    assert [(o.module, o.status) for o in outcomes] == [
        ("fresh.a_sets", "ok"),
        ("fresh.b_checks", "ok"),
        ("fresh.state", "ok"),
    ]
    assert facts["workers"] == 1


def test_a_preload_that_touches_first_party_code_or_starts_a_thread_is_dropped(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    site = tmp_path / "site"
    _write(
        project,
        {
            "app/__init__.py": "",
            "app/core.py": "VALUE = 1\n",
            "app/uses_plugin.py": "import sneaky_plugin\nimport threaded_lib\n",
        },
    )
    _write(
        site,
        {
            "sneaky_plugin.py": "import app.core\n",
            "threaded_lib.py": (
                "import threading, time\n"
                "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            ),
        },
    )
    environ = {**os.environ, "PYTHONPATH": str(site)}
    outcomes, facts = import_modules(
        ["app.core", "app.uses_plugin"],
        import_root=project,
        environ=environ,
        timeout=10,
        jobs=1,
        preload=["sneaky_plugin", "threaded_lib", "json"],
        first_party=["app"],
    )
    assert [o.status for o in outcomes] == ["ok", "ok"]
    notes = " ".join(facts["notes"])
    assert "not preloading sneaky_plugin: it imported first-party module app" in notes
    assert "not preloading threaded_lib: it started a thread" in notes
    assert "json" in facts["preloaded"]
    assert "sneaky_plugin" not in facts["preloaded"]


def test_failure_messages_are_redacted(tmp_path: Path) -> None:
    token = mint("k" * 40, "svc")
    _write(
        tmp_path,
        {
            "leaky/__init__.py": "",
            "leaky/client.py": (
                "import os\nraise RuntimeError('rejected Authorization: Bearer ' + os.environ['TOKEN'])\n"
            ),
        },
    )
    manifest = Manifest(root=tmp_path, service=ServiceConfig(code="leaky"))
    manifest = manifest.model_copy(update={"path": tmp_path / "safeship.toml"})
    ctx = build_context(tmp_path, manifest, "development", base_environ={"TOKEN": token})
    result = ImportsGate().run(ctx)
    assert result.status is GateStatus.FAILED
    text = " ".join(f.message for f in result.findings)
    assert "RuntimeError" in text
    assert token not in text


def test_packages_come_from_entries_without_a_manifest(tmp_path: Path) -> None:
    _write(tmp_path, {"svc/__init__.py": "", "svc/main.py": "x = 1\n", "other/bad.py": "raise X\n"})
    manifest = Manifest(root=tmp_path)
    ctx = build_context(tmp_path, manifest, "development", entries=["svc.main"], base_environ={})
    result = ImportsGate().run(ctx)
    assert result.status is GateStatus.PASSED
    assert result.summary["modules"] == 2  # other/ is not the entry's package


def test_missing_code_directory_is_a_gate_error(tmp_path: Path) -> None:
    (tmp_path / "safeship.toml").write_text('[service]\ncode = "nowhere"\n')
    ctx = build_context(tmp_path, load_manifest(tmp_path / "safeship.toml"), "development")
    result = ImportsGate().run(ctx)
    assert result.status is GateStatus.ERROR
    assert "nowhere" in (result.error or "") and "does not exist" in (result.error or "")


def test_import_jobs_and_timeout_come_from_the_manifest(tmp_path: Path) -> None:
    _write(tmp_path, {"one/__init__.py": "", "one/slow.py": "import time\ntime.sleep(60)\n"})
    manifest = Manifest(
        root=tmp_path,
        service=ServiceConfig(code="one"),
        gates=GatesConfig(import_timeout=0.5, import_jobs=1),
    ).model_copy(update={"path": tmp_path / "safeship.toml"})
    result = ImportsGate(preload=False).run(build_context(tmp_path, manifest, "development"))
    assert result.summary["jobs"] == 1
    assert [f.rule for f in result.findings] == ["import-hung"]
    assert "killed after 0.5s" in result.findings[0].message


def test_without_bytecode_writing_caches_stay_out_of_the_tree(tmp_path: Path) -> None:
    _write(tmp_path, {"byc/__init__.py": "", "byc/core.py": "X = 1\n"})
    _write(tmp_path, {"byc/uses.py": "from byc import core\n\nY = core.X\n"})
    compileall.compile_dir(str(tmp_path / "byc"), quiet=1)
    cached = {p: p.read_bytes() for p in tmp_path.rglob("*.pyc")}
    assert len(cached) == 3
    # The cache of core is now stale: the fresh import must see the new source.
    (tmp_path / "byc" / "core.py").write_text("raise RuntimeError('the new core')\n")
    found = _found(tmp_path, "byc")
    outcomes, _ = import_modules(
        [name for name, _ in found],
        import_root=tmp_path,
        environ={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=10,
        first_party=["byc"],
        plan=plan_imports(found),
    )
    assert [(o.module, o.status, o.message) for o in outcomes] == [
        ("byc", "ok", None),
        ("byc.core", "error", "the new core"),
        ("byc.uses", "error", "the new core"),
    ]
    # Nothing written to the project's tree, stale cache included.
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.pyc")} == cached


# --- starting a module from its dependency's process ("spines") -------------------------


def _found(root: Path, package: str) -> list[tuple[str, Path]]:
    return discover_modules(root, [root / package], root=root)


def test_plan_picks_the_dependency_with_the_largest_closure(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "lay/__init__.py": '"""Layers."""\n__all__ = ["core"]\n',
            "lay/core.py": "VALUE = 1\n",
            "lay/models.py": "from lay import core\n\nM = core.VALUE\n",
            "lay/services.py": (
                '"""Doc."""\nfrom __future__ import annotations\n\nimport json\n'
                "from lay import core\nfrom lay.models import M\n"
                "if TYPE_CHECKING:\n    from lay import api\n\nS = M\n"
            ),
            "lay/api.py": "from . import services\nfrom .core import VALUE\n",
        },
    )
    spines = plan_spines(_found(tmp_path, "lay"))
    assert spines == {
        "lay": None,
        "lay.api": "lay.services",
        "lay.core": "lay",
        "lay.models": "lay.core",
        "lay.services": "lay.models",
    }


def test_plan_never_uses_a_cycle_code_before_imports_or_a_docstring(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "cyc/__init__.py": "",
            "cyc/base.py": "X = 1\n",
            "cyc/a.py": "from cyc import b\n",
            "cyc/b.py": "from cyc import a\n",
            "cyc/env_first.py": (
                "import os\nos.environ.setdefault('MODE', 'x')\nfrom cyc import base\n"
            ),
            "cyc/doc.py": '"""Example:\nimport cyc.base\n"""\nY = 2\n',
        },
    )
    spines = plan_spines(_found(tmp_path, "cyc"))
    assert spines["cyc.a"] == "cyc" and spines["cyc.b"] == "cyc"  # never each other
    assert spines["cyc.env_first"] == "cyc"  # base comes after code that may affect it
    assert spines["cyc.doc"] == "cyc"  # the import is in a docstring


def test_plan_respects_packages_with_side_effects(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "side/__init__.py": "",
            "side/core.py": "X = 1\n",
            "side/sub/__init__.py": "import os\nos.environ['SIDE'] = '1'\n",
            "side/sub/mod.py": "from side import core\n",
        },
    )
    # core's process never ran side/sub/__init__.py, which must run before mod: use the
    # package's own process instead.
    plan = plan_imports(_found(tmp_path, "side"))
    assert plan.spines["side.sub.mod"] == "side.sub"
    # Nor may mod fall back on the process of side.sub's own spine, the root package.
    assert plan.reach["side.sub.mod"] == 1


def test_plan_says_how_far_up_a_module_may_start_and_what_goes_first(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "lay/__init__.py": '"""Layers."""\n',
            "lay/core.py": "VALUE = 1\n",
            "lay/models.py": "from lay import core\n",
            "lay/services.py": "from lay import models\n",
            "lay/api.py": "from lay import services\n",
            "lay/leaf.py": "from lay import core\n",
        },
    )
    plan = plan_imports(_found(tmp_path, "lay"))
    # If services' import fails, api may start from models', core's or lay's process.
    assert plan.reach["lay.api"] == 4
    assert plan.cost["lay.api"] == 1 and plan.cost["lay.core"] == 1
    # core starts models (a chain of 3) and leaf (1): the heavier chain goes first.
    assert plan.weight["lay.models"] == 3 and plan.weight["lay.leaf"] == 1
    assert plan.weight["lay"] == 5 and not plan.deep


def _chain(root: Path, package: str, length: int, tail: str = "") -> None:
    """Module ``m{i}`` imports ``m{i+1}`` first: importing ``m0`` fresh nests ``length``
    imports deep."""
    files = {f"{package}/__init__.py": ""}
    for i in range(length):
        body = f"from {package} import m{i + 1}\n\nX = {i}\n" if i + 1 < length else "X = 0\n"
        files[f"{package}/m{i}.py"] = body
    if tail:
        files[f"{package}/probe.py"] = f"from {package} import m0\n{tail}"
    _write(root, files)


def _both(root: Path, package: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    found = _found(root, package)
    runs = []
    for plan in (plan_imports(found), None):
        outcomes, _ = import_modules(
            [name for name, _ in found],
            import_root=root,
            environ=dict(os.environ),
            timeout=20.0,
            jobs=2,
            first_party=[package],
            plan=plan,
        )
        runs.append({o.module: (o.status, o.exc_type, o.message, o.detail) for o in outcomes})
    return runs[0], runs[1]


def test_a_chain_of_templates_costs_no_stack_depth(tmp_path: Path) -> None:
    probe = (
        "import sys\n\ndepth, frame = 0, sys._getframe()\n"
        "while frame is not None:\n    depth, frame = depth + 1, frame.f_back\n"
        "raise RuntimeError(f'imported {depth} frames deep')\n"
    )
    _chain(tmp_path, "deepz", 25, tail=probe)
    plan = plan_imports(_found(tmp_path, "deepz"))
    assert plan.spines["deepz.probe"] == "deepz.m0" and not plan.deep
    reused, pristine = _both(tmp_path, "deepz")
    # The probe starts from the end of a chain of 25 templates, yet runs as deep as when
    # imported from a pristine process.
    assert reused["deepz.probe"] == pristine["deepz.probe"]
    assert reused == pristine


def test_imports_that_nest_too_deep_start_pristine_and_fail_as_fresh_ones(tmp_path: Path) -> None:
    # Importing m0 fresh nests 170 imports: beyond the default recursion limit. Started
    # from m1's process it would pass, so modules whose imports nest deep start pristine.
    _chain(tmp_path, "deep", 170)
    plan = plan_imports(_found(tmp_path, "deep"))
    assert "deep.m0" in plan.deep and plan.spines["deep.m0"] is None
    assert "deep.m150" not in plan.deep and plan.spines["deep.m150"] == "deep.m151"
    reused, pristine = _both(tmp_path, "deep")
    assert reused["deep.m0"][:2] == ("error", "RecursionError")
    assert reused["deep.m169"][0] == "ok"
    assert reused == pristine


TEMPLATE_TREE = {
    "zt/__init__.py": "",
    "zt/state.py": "FLAG = False\n",
    "zt/core.py": "from zt import state\n\nstate.FLAG = True\nCORE = 1\n",
    "zt/models.py": "from zt import core\nfrom zt import state\n\nassert state.FLAG\n",
    "zt/other.py": "from zt import state\n\nassert not state.FLAG, 'core leaked into other'\n",
    "zt/broken.py": "from zt import core\n\nraise RuntimeError('broken on purpose')\n",
    "zt/uses_broken.py": "from zt import broken\n",
    "zt/hangs.py": "from zt import core\nimport time\n\ntime.sleep(60)\n",
    "zt/dies.py": "from zt import core\nimport os\n\nos._exit(9)\n",
    "zt/cyc_a.py": "from zt import cyc_b\n\nA = cyc_b.B\n",
    "zt/cyc_b.py": "from zt import cyc_a\n\nB = 1\n",
    # d imports x while loading, which the plan cannot see; x run on its own fails.
    "zt/d.py": "import importlib\n\nLOADING = True\nimportlib.import_module('zt.x')\nLOADING = False\n",
    "zt/x.py": "from zt import d\n\nif not d.LOADING:\n    raise RuntimeError('x imported on its own')\n",
}


def _outcomes(root: Path, reuse: bool) -> dict[str, tuple[str, str | None, str | None, str | None]]:
    found = _found(root, "zt")
    outcomes, _ = import_modules(
        [name for name, _ in found],
        import_root=root,
        environ=dict(os.environ),
        timeout=2.0,
        jobs=2,
        first_party=["zt"],
        spines=plan_spines(found) if reuse else None,
    )
    return {o.module: (o.status, o.exc_type, o.message, o.detail) for o in outcomes}


def test_starting_from_a_dependency_gives_the_same_outcomes_as_pristine(tmp_path: Path) -> None:
    _write(tmp_path, TEMPLATE_TREE)
    spines = plan_spines(_found(tmp_path, "zt"))
    assert spines["zt.models"] == "zt.core" and spines["zt.x"] == "zt.d"
    reused = _outcomes(tmp_path, reuse=True)
    assert reused == _outcomes(tmp_path, reuse=False)
    assert reused["zt.models"][0] == "ok" and reused["zt.other"][0] == "ok"
    assert reused["zt.broken"][:2] == ("error", "RuntimeError")
    assert reused["zt.uses_broken"][2] == "broken on purpose"
    assert reused["zt.hangs"][0] == "hung"
    assert reused["zt.dies"] == ("crashed", None, None, "exited with code 9")
    # In a cycle, which module starts decides: b is partially initialized when a needs it.
    assert reused["zt.cyc_a"][0] == "ok"
    assert reused["zt.cyc_b"][:2] == ("error", "AttributeError")
    assert reused["zt.x"][2] == "x imported on its own"  # rerun pristine, not taken as is
    assert reused["zt.d"][0] == "ok"


def test_a_missing_interpreter_is_a_gate_error(project: Path) -> None:
    manifest = load_manifest(project / "safeship.toml")
    ctx = build_context(project, manifest, "development", base_environ={})
    result = ImportsGate(python=str(project / "no-such-python")).run(ctx)
    assert result.status is GateStatus.ERROR
    assert "cannot start the import worker" in (result.error or "")
