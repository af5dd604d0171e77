"""Speed of the imports gate on the 5,000-module synthetic service, beside one interpreter
importing every module, both measured in the same run.

The tree is ``_gen_tree``'s (the one ``gate_speed.py`` uses): a FastAPI-shaped package of
modules of about 300 lines, reached from ``svc.main`` through top-level imports, with plugins
imported only inside functions, a chain of legacy modules nothing imports, and seeded
defects, some of which break the app's startup. Bytecode caches are compiled first, as any
later run finds them.

Timed, alternately, ``--repeat`` times (the best run counts):

- the imports gate in its default mode (``ImportsGate().run``, what ``safeship check --only
  imports`` runs): the app's startup from ``svc.main``, then every other module imported
  into a copy of the started app;
- one interpreter importing every module the gate imports, one after the other, with a
  failed module remembered and raised again to its later importers (without that, Python
  runs a failed module again for every path through the import graph: minutes on this
  tree). It checks nothing; it is the least work that imports every module once.

Besides wall time it prints CPU time (of everything each started), because on a shared
machine the wall time also measures the other load. ``--strict`` also times the gate with
``--imports-strict`` semantics (every module from a pristine interpreter; slow).
Goal: >= 150 modules/s in the default mode.

    python benchmarks/imports_speed.py [--modules 5000] [--repeat 1] [--strict]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _gen_tree import generate

from safeship.config import Manifest
from safeship.gates import build_context
from safeship.gates.imports.gate import ImportsGate, discover_modules

GENERATED = Path(__file__).resolve().parent / "_generated"
DEADLINE = 1800.0

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
started = time.perf_counter()
errors = 0
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        errors += 1
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "<module>":
                failed.setdefault(frame.f_globals.get("__name__"), exc)
            tb = tb.tb_next
        failed.setdefault(name, exc)
print(json.dumps({"seconds": time.perf_counter() - started, "errors": errors}))
"""


def _cpu() -> float:
    """CPU seconds of this process and every descendant reaped so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def one_interpreter(root: Path, names: list[str]) -> tuple[float, float, int]:
    """Wall seconds (including the interpreter's start), CPU seconds, failed imports."""
    cpu, started = _cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", ONE_INTERPRETER, str(root)],
        input=json.dumps(names),
        capture_output=True,
        text=True,
        cwd=root,
        timeout=DEADLINE,
        check=True,
    )
    elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    return elapsed, cpu, int(json.loads(done.stdout)["errors"])


def gate(root: Path, strict: bool) -> tuple[float, float, dict]:
    ctx = build_context(
        root, Manifest(root=root), "development", entries=["svc.main"], python=sys.executable
    )
    cpu, started = _cpu(), time.perf_counter()
    result = ImportsGate(strict=strict).run(ctx)
    elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    if result.error:
        raise SystemExit(f"imports gate error: {result.error}")
    summary = dict(result.summary)
    summary["findings"] = len(result.findings)
    summary["tiers"] = sorted({str(f.tier) for f in result.findings})
    return elapsed, cpu, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best counts")
    parser.add_argument("--strict", action="store_true", help="also time --imports-strict")
    args = parser.parse_args()

    root = GENERATED / f"tree_{args.modules}_{args.seed}"
    tree = generate(root, args.modules, args.seed)
    compileall.compile_dir(str(root / "svc"), quiet=1, workers=os.cpu_count() or 1)
    names = [n for n, _ in discover_modules(root, [root / "svc"], root=root)]
    cores = os.cpu_count() or 1
    print(
        f"tree: {len(names)} modules to import ({tree.modules} generated, {tree.lines:,} lines, "
        f"{len(tree.defects)} seeded defects) in {root}; {cores} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    best: dict[str, tuple[float, float]] = {}
    summary: dict = {}
    for round_ in range(args.repeat):
        order = ("one", "gate") if round_ % 2 == 0 else ("gate", "one")
        for which in order:
            if which == "one":
                elapsed, cpu, errors = one_interpreter(root, names)
                print(
                    f"one interpreter importing every module: {elapsed:.1f}s, {cpu:.1f} CPU-s "
                    f"({errors} imports failed)"
                )
            else:
                elapsed, cpu, summary = gate(root, strict=False)
                startup = summary.get("startup", {})
                print(
                    f"imports gate (default mode): {elapsed:.1f}s, {cpu:.1f} CPU-s; startup "
                    f"{startup.get('status')} with {startup.get('modules')} modules; "
                    f"{summary['executed'] / summary['modules']:.2f} module bodies ran per "
                    f"module; {summary['findings']} findings ({', '.join(summary['tiers'])})"
                )
            if which not in best or elapsed < best[which][0]:
                best[which] = (elapsed, cpu)
    if args.strict:
        elapsed, cpu, strict = gate(root, strict=True)
        print(
            f"imports gate --imports-strict: {elapsed:.1f}s = {len(names) / elapsed:.0f} "
            f"modules/s, {cpu:.1f} CPU-s; {strict['executed'] / strict['modules']:.2f} module "
            "bodies ran per module"
        )
    gate_s, gate_cpu = best["gate"]
    one_s, one_cpu = best["one"]
    rate = len(names) / gate_s
    print()
    print(f"  {'':<34} {'wall':>8} {'CPU':>8} {'modules/s':>10}")
    print(f"  {'imports gate (default mode)':<34} {gate_s:7.1f}s {gate_cpu:7.1f}s {rate:10.0f}")
    print(
        f"  {'one interpreter, every module':<34} {one_s:7.1f}s {one_cpu:7.1f}s "
        f"{len(names) / one_s:10.0f}"
    )
    print(f"  gate / one interpreter: {gate_s / one_s:.2f}x wall, {gate_cpu / one_cpu:.2f}x CPU")
    print(
        f"  imports gate speed: {rate:.0f} modules/s (goal >= 150): "
        + ("PASS" if rate >= 150 else "BELOW GOAL")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
