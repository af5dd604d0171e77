"""Benchmark of the static gate: speed against its engines and pylint, and what a user reads.

Generates a first-party package (default 5,000 modules of about 300 lines) with 60 seeded
defects over every tier, 20 of them breaking startup (some only through a lazy import), then
times in the same run:

- the static gate (``StaticGate().run``, what ``safeship check --only static`` runs);
- ruff F821 plus ty on the same tree, back to back, with no triage;
- pylint restricted to E0602, E0611 and E1101, on a deterministic sample of modules (the
  time is extrapolated linearly; ``--pylint-full`` runs it on every module);
- the imports gate (``ImportsGate().run``, what ``safeship check --only imports`` runs) on
  the same package, in its default mode (the app's startup from the entry, then every other
  module in a copy of the started app): its modules per second, CPU time per module, and
  how many first-party module bodies ran per module. ``--imports-strict`` also runs it in
  strict mode (every module from a pristine process) and lists the modules whose outcome
  differs between the two (the modes answer different questions, see docs/check.md).

It prints, per tool, the recall on the seeded defects and how many findings a user must read
to see all 20 startup-breaking ones, then the ratios and rates the issue sets goals for.
Ratios matter; absolute times are noisy. Run:
``.venv/bin/python benchmarks/gate_speed.py [--modules N] [--no-imports | --imports-strict]``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _gen_tree import Tree, generate
from _score import Located, Score, score

from safeship.config import Manifest
from safeship.gates.imports.gate import ImportsGate
from safeship.gates.model import Finding, Tier
from safeship.gates.runner import CheckContext, build_context
from safeship.gates.static.engines import find_binary
from safeship.gates.static.gate import StaticGate

GENERATED = Path(__file__).parent / "_generated"
DEADLINE = 1800.0  # seconds, for any one external tool


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    root = GENERATED / f"tree_{args.modules}_{args.seed}"
    started = time.perf_counter()
    tree = generate(root, args.modules, args.seed)
    print(
        f"generated {tree.modules} modules, {tree.lines:,} lines in {root} "
        f"({time.perf_counter() - started:.1f}s): {len(tree.defects)} seeded defects, "
        f"{tree.harmless} harmless findings (quoted references, tests, dead code)"
    )
    by_tier: dict[str, int] = {}
    for defect in tree.defects:
        by_tier[defect.tier] = by_tier.get(defect.tier, 0) + 1
    print("seeded per tier: " + ", ".join(f"{t} {n}" for t, n in by_tier.items()))

    gate_times, engine_times = [], []
    gate_score = engine_score = None
    for round_ in range(args.repeat):
        # Alternate which goes first, so neither always gets the warmer caches.
        for which in ("engines", "gate") if round_ % 2 == 0 else ("gate", "engines"):
            if which == "engines":
                engine_time, engine_order = _ruff_plus_ty(root)
                engine_times.append(engine_time)
                engine_score = score("ruff F821 + ty (no triage)", engine_order, tree.defects)
            else:
                gate_time, gate_score = _static_gate(tree, profile=args.profile)
                gate_times.append(gate_time)
    gate_time, engine_time = min(gate_times), min(engine_times)
    pylint_time, pylint_score, sample = _pylint(tree, args)
    assert gate_score is not None and engine_score is not None
    imports_rate = _imports_gate(tree, strict=args.imports_strict) if args.imports else None

    print()
    print(f"best of {args.repeat} runs (wall clock; ratios matter, absolute times are noisy)")
    print(f"  {'safeship static gate':<28} {gate_time:8.2f}s")
    print(f"  {'ruff F821 + ty, back to back':<28} {engine_time:8.2f}s")
    print(f"  {'pylint E0602,E0611,E1101':<28} {pylint_time:8.2f}s", end="")
    if args.pylint_full:
        print("  (every module)")
    else:
        print(
            f"  EXTRAPOLATED: pylint ran on a sample of {sample} of {tree.modules} modules "
            "(every module with a seeded defect, then a seeded random fill), time x "
            f"{tree.modules / sample:.1f}; --pylint-full runs it on all"
        )
    print()
    for row in (gate_score, engine_score, pylint_score):
        print("  " + row.row())
    if pylint_score.seeded < len(tree.defects):
        print(f"  (pylint's recall is over the {pylint_score.seeded} defects in its sample)")
    print()
    ratio_engines = gate_time / engine_time
    ratio_pylint = pylint_time / gate_time
    exact = gate_score.startup_found == gate_score.startup_total == gate_score.must_read
    goals = [
        (f"static gate / (ruff + ty) = {ratio_engines:.2f}", "<= 1.3", ratio_engines <= 1.3),
        (f"pylint / static gate      = {ratio_pylint:.1f}", ">= 10", ratio_pylint >= 10),
        (f"safeship recall           = {gate_score.recall:.1%}", "100%", gate_score.recall == 1),
        (
            f"breaks-startup tier       = {gate_score.must_read} findings, "
            f"{gate_score.startup_found} of the {gate_score.startup_total} seeded",
            "exactly them",
            exact,
        ),
    ]
    if imports_rate is not None:
        goals.append(
            (
                f"imports gate              = {imports_rate:.0f} modules/s",
                ">= 150",
                imports_rate >= 150,
            )
        )
    for text, goal, ok in goals:
        print(f"  {text:<58} goal {goal:<13} {'ok' if ok else 'MISSED'}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=5000, help="modules to generate")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs; the best counts")
    parser.add_argument("--pylint-sample", type=int, default=80, help="modules pylint checks")
    parser.add_argument("--pylint-full", action="store_true", help="run pylint on every module")
    parser.add_argument("--profile", action="store_true", help="profile the gate (pyinstrument)")
    parser.add_argument(
        "--no-imports", dest="imports", action="store_false", help="skip the imports gate"
    )
    parser.add_argument(
        "--imports-strict",
        action="store_true",
        help="also run the imports gate in strict mode (every module from a pristine "
        "process), and list the modules whose outcome differs (slow)",
    )
    return parser.parse_args(argv)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=DEADLINE, check=False
    )


def _static_gate(tree: Tree, profile: bool = False) -> tuple[float, Score]:
    ctx = CheckContext(
        root=tree.root,
        manifest=Manifest(root=tree.root),
        env="development",
        critical=False,
        entries=(tree.entry,),
        environ={},
        block_tiers=frozenset({Tier.BREAKS_STARTUP}),
    )
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    started = time.perf_counter()
    result = StaticGate(timeout=DEADLINE).run(ctx)
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    if result.error:
        print(f"static gate error: {result.error}")
    engines = result.summary.get("engines", {})
    print(
        "static gate: "
        + ", ".join(f"{n} {e['duration_s']:.2f}s" for n, e in engines.items())
        + f", total {elapsed:.2f}s; tiers {result.summary.get('tiers')}"
    )
    ordered: list[Located] = [(f.path or "", f.line or 0) for f in result.findings]
    gate = score("safeship static gate", ordered, tree.defects)
    # What a user reads is the breaks-startup tier; it must hold every startup defect.
    startup = {
        (f.path or "", f.line or 0) for f in result.findings if f.tier is Tier.BREAKS_STARTUP
    }
    wanted = {(d.path, d.line) for d in tree.defects if d.tier == "breaks-startup"}
    gate.startup_found = len(wanted & startup)
    gate.must_read = sum(f.tier is Tier.BREAKS_STARTUP for f in result.findings)
    if not wanted <= startup:
        gate.must_read = None
    _tier_report(tree, result.findings)
    return elapsed, gate


def _tier_report(tree: Tree, findings: list) -> None:
    tiers = {(f.path, f.line): str(f.tier) for f in findings}
    wrong = [d for d in tree.defects if tiers.get((d.path, d.line), d.tier) != d.tier]
    missing = [d for d in tree.defects if (d.path, d.line) not in tiers]
    for d in wrong:
        print(
            f"  tier mismatch: {d.path}:{d.line} {d.name} ({d.kind}) "
            f"expected {d.tier}, got {tiers[(d.path, d.line)]}"
        )
    for d in missing:
        print(f"  not reported: {d.path}:{d.line} {d.name} ({d.kind}, {d.tier})")


def _cpu() -> float:
    """CPU seconds of this process and of every descendant reaped so far: the imports gate
    reaps all its processes, and CPU time does not depend on what else the machine runs."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _imports_gate(tree: Tree, strict: bool) -> float:
    """Run the imports gate on the tree's package; return its modules per second."""
    print()
    # The tree's third-party imports (fastapi, pydantic) are in this interpreter's venv.
    ctx = build_context(
        tree.root,
        Manifest(root=tree.root),
        "development",
        entries=[tree.entry],
        python=sys.executable,
    )
    outcomes = {}
    rate = 0.0
    gates = (("imports gate", ImportsGate()), ("strict", ImportsGate(strict=True)))
    for label, gate in gates:
        if label == "strict" and not strict:
            break
        cpu, started = _cpu(), time.perf_counter()
        result = gate.run(ctx)
        elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
        summary: dict[str, Any] = result.summary
        if result.error:
            print(f"{label}: error: {result.error}")
            return 0.0
        modules = summary["modules"]
        rate = rate or modules / elapsed
        print(
            f"{label}: {modules} modules in {elapsed:.1f}s = {modules / elapsed:.0f} modules/s "
            f"({summary['jobs']} at a time); {cpu / modules * 1000:.1f} CPU-ms per module; "
            f"{summary['executed'] / modules:.1f} first-party module bodies ran per module; "
            + ", ".join(f"{summary[k]} {k}" for k in ("ok", "error", "hung", "crashed"))
        )
        outcomes[label] = _outcomes(result.findings)
    if strict:
        differ = sorted(
            m
            for m in outcomes["strict"]
            if outcomes["strict"][m] != outcomes["imports gate"].get(m)
        )
        differ += sorted(m for m in outcomes["imports gate"] if m not in outcomes["strict"])
        print(
            "strict vs imports gate: "
            + (
                f"{len(differ)} modules differ, e.g. {differ[:5]}"
                if differ
                else "every outcome is the same"
            )
        )
    return rate


def _outcomes(findings: list[Finding]) -> dict[str, tuple[object, ...]]:
    """Each failed module's outcome as its finding tells it (modules with none imported)."""
    out: dict[str, tuple[object, ...]] = {}
    for finding in findings:
        what = (finding.rule, finding.path, finding.line, finding.message.split(" (also breaks")[0])
        for module in finding.extra.get("modules", []):
            out[module] = what
    return out


def _ruff_plus_ty(root: Path) -> tuple[float, list[Located]]:
    ruff, ty = find_binary("ruff"), find_binary("ty")
    assert ruff and ty, "ruff and ty must be installed"
    started = time.perf_counter()
    ruff_run = _run(
        [
            ruff,
            "check",
            "--isolated",
            "--no-cache",
            "--exit-zero",
            "--select",
            "F821",
            "--output-format",
            "json",
            ".",
        ],
        root,
    )
    ty_run = _run(
        [
            ty,
            "check",
            "--output-format",
            "gitlab",
            "--no-progress",
            "--exit-zero",
            "--python",
            sys.prefix,
            ".",
        ],
        root,
    )
    elapsed = time.perf_counter() - started
    ordered: list[Located] = []
    for item in json.loads(ruff_run.stdout or "[]"):
        path = Path(item["filename"]).relative_to(root.resolve()).as_posix()
        ordered.append((path, item["location"]["row"]))
    for item in json.loads(ty_run.stdout or "[]"):
        ordered.append((item["location"]["path"], item["location"]["positions"]["begin"]["line"]))
    print(f"ruff F821 + ty: {len(ordered)} findings in {elapsed:.2f}s")
    return elapsed, ordered


def _pylint(tree: Tree, args: argparse.Namespace) -> tuple[float, Score, int]:
    files = sorted(p.relative_to(tree.root).as_posix() for p in tree.root.rglob("*.py"))
    if args.pylint_full:
        sample = files
    else:
        # Deterministic: every module with a seeded defect (so recall means something), then
        # a random fill. Generated modules are alike in size, so time scales per module.
        seeded = sorted({d.path for d in tree.defects})
        rest = [f for f in files if f not in set(seeded)]
        fill = random.Random(args.seed).sample(rest, max(0, args.pylint_sample - len(seeded)))
        sample = sorted(seeded[: args.pylint_sample] + fill)
    pylint = Path(sys.executable).parent / "pylint"
    started = time.perf_counter()
    run = _run(
        [
            str(pylint),
            "--disable=all",
            "--enable=E0602,E0611,E1101",
            "-j",
            "2",
            "--output-format=json",
            "--score=n",
            *sample,
        ],
        tree.root,
    )
    elapsed = time.perf_counter() - started
    try:
        items = json.loads(run.stdout or "[]")
    except json.JSONDecodeError:
        print(f"pylint output is not JSON: {run.stderr[-500:]}")
        items = []
    ordered = [(item["path"], item["line"]) for item in items]
    in_sample = set(sample)
    defects = [d for d in tree.defects if d.path in in_sample]
    scale = len(files) / len(sample)
    print(f"pylint: {len(ordered)} findings on {len(sample)} modules in {elapsed:.1f}s")
    return elapsed * scale, score("pylint", ordered, defects), len(sample)


if __name__ == "__main__":
    sys.exit(main())
