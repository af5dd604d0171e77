"""The imports gate's column of ``real_projects.py``.

For each application, beside the static gate:

- the gate's wall time (in the app's venv, default mode) against one interpreter of that venv
  importing every first-party module the gate imports, one after the other, in the same
  run (best of two each, alternating); goal: at most 5x;
- that the tree is byte for byte the same after the gate ran;
- on each mutation, whether the gate put it in the right tier, judged by what really
  happens: a rename that makes importing the app fail must be ``breaks-startup``; a rename
  at module level of a module only a handler imports must be ``breaks-on-call`` (its import
  fails when the handler runs); any other rename (a request handler's body, a factory that
  ``uvicorn --factory`` calls after the import, a lifespan hook) must not be
  ``breaks-startup``: importing cannot see it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safeship.config import Manifest
from safeship.gates.imports.gate import ImportsGate, discover_modules
from safeship.gates.model import GateResult, Tier
from safeship.gates.runner import CheckContext, build_context

DEADLINE = 900.0
PYCACHE = Path(tempfile.gettempdir()) / "safeship-bench-one-pycache"
RATIO_GOAL = 5.0

ONE_INTERPRETER = r"""
import importlib, json, sys, time
root, names = sys.argv[1], json.loads(sys.stdin.read())
sys.path.insert(0, root)
failed = {}

class Remembered:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in failed:
            raise failed[name]
        return None

sys.meta_path.insert(0, Remembered)
errors = 0
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        errors += 1
        failed.setdefault(name, exc)
print(json.dumps({"errors": errors}))
"""


def run(ctx: CheckContext, apps: Sequence[Any], cache: Path) -> GateResult:
    """The gate as ``real_projects`` runs every gate. On a mutant, with the packages the app
    imports without declaring them (its ``repair``), as the mutant's real start gets them;
    on the release itself, without (its real start fails on them, and so must the gate)."""
    entry = ctx.entries[0] if ctx.entries else ""
    mutant = "safeship-mutant-" in str(ctx.root)  # real_projects.mutate's scratch trees
    for app in apps if mutant else ():
        repair = cache / f"{app.name}-{app.version}" / "repair"
        if app.entry.split(":")[0] == entry and (repair / ".installed").exists():
            ctx.environ["PYTHONPATH"] = str(repair)
    return ImportsGate().run(ctx)


def judge(result: GateResult, mutation: Any, real: Any, tier_at: Callable[..., Any]) -> bool:
    """Whether the gate's tier for ``mutation`` is right, given the real start ``real``."""
    tier = tier_at(result, mutation)
    if real.fails_on(mutation.renamed) and real.phase == "import":
        return tier is Tier.BREAKS_STARTUP
    if mutation.category == "module imported from a handler":
        return tier is Tier.BREAKS_ON_CALL
    return tier is not Tier.BREAKS_STARTUP


def digest(tree: Path) -> str:
    out = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        out.update(path.relative_to(tree).as_posix().encode())
        if path.is_file() and not path.is_symlink():
            out.update(path.read_bytes())
    return out.hexdigest()


def one_interpreter(venv: Path, tree: Path, names: list[str]) -> tuple[float, int]:
    """Seconds (the interpreter's start included) and failed imports."""
    with tempfile.TemporaryDirectory(prefix="safeship-bench-one-") as work:
        started = time.perf_counter()
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", ONE_INTERPRETER, str(tree)],
            input=json.dumps(names),
            capture_output=True,
            text=True,
            cwd=work,
            # Bytecode caches kept between runs, outside the tree, as the gate keeps its own
            # (the venvs are installed without compiling): the best of two runs is warm.
            env={"PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": str(PYCACHE)},
            timeout=DEADLINE,
            check=False,
        )
        elapsed = time.perf_counter() - started
    try:
        errors = int(json.loads(done.stdout.splitlines()[-1])["errors"])
    except (IndexError, KeyError, ValueError):
        errors = -1
    return elapsed, errors


def evaluate(app: Any, venv: Path, tree: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Time and trace of the gate on the unmodified app; figures for the summary."""
    package = tree / app.package.replace(".", "/")
    names = [n for n, _ in discover_modules(tree, [package], root=tree)]
    ctx = build_context(
        tree, Manifest(root=tree), "development", entries=[app.entry], base_environ={},
        python=str(venv),
    )  # fmt: skip
    before = digest(tree)
    gate_times, one_times = [], []
    result = None
    errors = 0
    for round_ in range(2):
        for which in ("one", "gate") if round_ % 2 == 0 else ("gate", "one"):
            if which == "one":
                seconds, errors = one_interpreter(venv, tree, names)
                one_times.append(seconds)
            else:
                started = time.perf_counter()
                result = ImportsGate().run(ctx)
                gate_times.append(time.perf_counter() - started)
    assert result is not None
    unchanged = digest(tree) == before
    gate_s, one_s = min(gate_times), min(one_times)
    summary = result.summary
    startup = summary.get("startup") or {}
    say(
        f"   imports gate: {gate_s:.2f}s = {gate_s / one_s:.2f}x one interpreter importing the "
        f"{len(names)} modules ({one_s:.2f}s, {errors} failed) (goal <= {RATIO_GOAL:g}x); "
        f"startup {startup.get('status')} with {startup.get('modules')} modules; "
        f"{len(result.findings)} findings; tree {'unchanged' if unchanged else 'CHANGED'}"
    )
    for finding in result.findings:
        say(
            f"      {finding.tier} {finding.rule} {finding.path}:{finding.line} {finding.message[:120]}"
        )
    return {"imports ratio": gate_s / one_s, "imports tree unchanged": unchanged}
