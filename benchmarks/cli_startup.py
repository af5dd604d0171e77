"""How long ``safeship --help`` takes to start, beside ``python -c pass`` in the same run.

Each command runs N times (default 21) as a real process, the two alternating so that drift
on the machine lands on both; the medians are printed with their ratio. The goal is that
``--help`` starts in under 0.3 s: commands import what they run (rich, libcst, the gates,
deploy, demo, the probes) inside the command, not when the CLI starts. Run:
``.venv/bin/python benchmarks/cli_startup.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.3
SAFESHIP = str(Path(sys.executable).parent / "safeship")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "safeship --help": [SAFESHIP, "--help"],
    "safeship check --help": [SAFESHIP, "check", "--help"],
}


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command")
    args = parser.parse_args()
    for argv in COMMANDS.values():
        _time(argv)  # warm the bytecode caches and the page cache
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(_time(argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["python -c pass"]
    print(f"median of {args.runs} runs each, alternating")
    for name, median in medians.items():
        print(f"  {name:<24} {median * 1000:7.1f} ms   {median / baseline:5.1f}x python -c pass")
    help_s = medians["safeship --help"]
    verdict = "met" if help_s < GOAL_S else "MISSED"
    print(f"goal: safeship --help under {GOAL_S:.1f} s: {verdict} ({help_s:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
