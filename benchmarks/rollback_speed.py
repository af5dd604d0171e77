"""Rollback speed: ``safeship deploy`` on the local target under a background load of real users.

Load: RATE authenticated WebSocket connects per second through the front; each user makes one
round trip (starts a ``slow`` run) and stays connected following its stream, reconnecting and
resuming when drained (the reference backend and ``AgentClient``).

- Scenario 1: deploy a good revision under that load. Goals: 0 failed connections through the
  switch and the drain (100 % success), 0 events lost by drained-and-resumed users.
- Scenario 2: deploy a revision that passes verification, then closes every connection with
  1011 five seconds after the switch. Goals: <= 3 s from the first failing connection to the
  rollback being complete (every new connection served by the previous revision), failed
  connections <= RATE x 3 s, 0 events lost by resumed users.

- Scenario 3: the revision of scenario 2, deployed with canary steps ``[10, 100]``: it goes bad
  while it has 10 % of new connections, and is judged on its own traffic. Goal: failed
  connections <= 10 % of scenario 2's (the full switch, same load, same run).

``--target cloudrun``: the same three (CR-1..3) with ``safeship deploy --target cloudrun`` on the
loopback fake of the Cloud Run Admin API v2 (``_rollback_cloudrun.py``), plus the time until the
drained revision's WebSockets are all closed (Cloud Run alone keeps them until the request
timeout). The fake's own operation delay (``--op-delay``) is printed apart; the rollback goal
(<= 3 s) is without it.

Next to these, what Flagger's defaults (interval x threshold = 60 s to detect) and Kubernetes
probes (period x failureThreshold = 30 s to detect, and no rollback) would let through at the
same load: RATE x detection time.

    .venv/bin/python benchmarks/rollback_speed.py [--rate 20] [--fault-after 5] [--target kubernetes|cloudrun [--op-delay 0.5]]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

from _rollback_load import Load, LoadResult  # noqa: E402
from _rollback_project import Project  # noqa: E402

FLAGGER_DETECT_S = 60.0  # interval 1m x threshold (defaults), per the issue
KUBERNETES_DETECT_S = 30.0  # periodSeconds 10 x failureThreshold 3
DEADLINE_S = 240.0


def _deploy_settings() -> dict[str, float | int]:
    return {
        "verify_probes": 5,
        "verify_interval": 0.2,
        "ready_timeout": 30,
        "watch_seconds": 5,
        "watch_interval": 0.5,
        "failure_threshold": 3,
        "drain_seconds": 5,
        "probe_timeout": 3,
        "steps": [100],  # scenario 3 sets [10, 100]
    }


def _line(label: str, value: str, goal: str = "") -> None:
    print(f"  {label:<58} {value:>12}  {goal}")


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


async def _scenario(project: Project, args: argparse.Namespace, *, bad: bool) -> int:
    """Runs one deploy under load, prints its figures; returns the failed connections."""
    load = Load(project.ws_url, project.secret, rate=args.rate, steps=24, delay=0.5)
    await load.start()
    await asyncio.sleep(3.0)  # users on the serving revision, mid-stream when it is drained
    env = {"DEPLOY_FAULT_AFTER": str(args.fault_after)} if bad else {}
    record, ended = await project.deploy(within=DEADLINE_S / 2, **env)
    await asyncio.sleep(1.0)  # users after the deploy, on whatever serves now
    result: LoadResult = await load.finish()
    seq = record["id"].lstrip("d")
    stats = result.stats
    print(
        f"  deploy {record['id']}: {record['outcome']} in {record['duration_s']:.1f}s; "
        f"{result.users} users, {stats.connects_ok} connects, {stats.events} events, "
        f"{stats.closes.get(1012, 0)} drained (1012), {stats.resumes} resumed runs"
    )
    lost_ok = _mark(stats.lost == 0)
    if not bad:
        failed = result.failed_connections
        _line(
            "failed client connections (switch + drain)",
            str(failed),
            f"goal 0  {_mark(failed == 0)}",
        )
        success = 100.0 * (result.users - failed) / max(1, result.users)
        _line("users connected without a failure", f"{success:.2f} %", "goal 100 %")
        _line("events lost by drained-and-resumed users", str(stats.lost), f"goal 0  {lost_ok}")
        _line("runs that did not complete", str(result.runs_unfinished), "goal 0")
        return failed
    done_at = ended.get(f"{seq}:rollback")
    first = result.first_failure_at
    to_rollback = (done_at - first) if done_at is not None and first is not None else None
    budget = args.rate * 3.0
    failed = result.failed_connects
    if to_rollback is None:
        _line("first failing connection -> rollback complete", "n/a", "(no rollback)")
    else:
        _line(
            "first failing connection -> rollback complete",
            f"{to_rollback:.2f} s",
            f"goal <= 3 s  {_mark(to_rollback <= 3.0)}",
        )
    _line(
        "  (the pipeline's own: first failed probe -> traffic back)",
        f"{record.get('time_to_rollback_s') or 0:.2f} s",
    )
    _line(
        "  (when the watch saw the fault, after the new revision got traffic)",
        f"{record.get('detection_after_traffic_s') or 0:.2f} s",
    )
    if record.get("canary_steps"):
        _line("  (canary steps reached before the rollback)", f"{record['canary_steps']} %")
    _line(
        "failed client connections (new connections)",
        str(failed),
        f"goal <= {budget:.0f}  {_mark(failed <= budget)}",
    )
    _line("  failed attempts, retries included", str(result.failed_attempts))
    _line(
        "  of which users who then got through on a retry",
        str(failed - result.errors.get("user:ConnectionError", 0)),
    )
    _line(
        "open connections the bad revision closed with 1011",
        str(result.broken_connections),
        "(at the fault: any rollout loses these)",
    )
    _line("events lost by resumed users", str(stats.lost), f"goal 0  {lost_ok}")
    print(f"  the same load ({args.rate:g} connects/s), failed new connections until detection:")
    ours = to_rollback if to_rollback is not None else float("nan")
    _line("  safeship (measured)", f"{failed}", f"rolled back {ours:.1f} s after the first failure")
    _line(
        f"  Flagger defaults ({FLAGGER_DETECT_S:.0f} s to detect)",
        f"{args.rate * FLAGGER_DETECT_S:.0f}",
        "then rolls back",
    )
    _line(
        f"  Kubernetes probes ({KUBERNETES_DETECT_S:.0f} s to detect)",
        f"{args.rate * KUBERNETES_DETECT_S:.0f}",
        "then no rollback: every later connection fails",
    )
    return result.failed_connections


async def _main(args: argparse.Namespace) -> None:
    secret = secrets.token_urlsafe(40)
    with tempfile.TemporaryDirectory(prefix="safeship-bench-") as tmp:
        project = Project(Path(tmp), secret, **_deploy_settings())
        try:
            started = time.monotonic()
            record, _ = await project.deploy(within=60)
            if record["outcome"] != "promoted":
                raise SystemExit(f"the first deploy did not promote: {record['reason']}")
            print(f"first deploy: {record['candidate']} promoted in {record['duration_s']:.1f}s")
            print(f"\nScenario 1: a good revision, under {args.rate:g} connects/s")
            await _scenario(project, args, bad=False)
            project.configure(watch_seconds=args.fault_after + 8)  # the fault falls inside it
            print(
                f"\nScenario 2: a revision that closes every connection with 1011 "
                f"{args.fault_after:g} s after the switch, under {args.rate:g} connects/s"
            )
            full = await _scenario(project, args, bad=True)
            project.configure(steps=[10, 100])
            print(
                f"\nScenario 3: the same revision, deployed with canary steps [10, 100]: it goes "
                f"bad at the 10 % step, under {args.rate:g} connects/s"
            )
            step = await _scenario(project, args, bad=True)
            project.configure(steps=[100])
            ratio = step / full if full else float("nan")
            print("\n  failed connections (new and open), same load:")
            _line("  full switch (scenario 2)", str(full))
            _line("  at a 10 % canary step (scenario 3)", str(step))
            _line("  ratio", f"{100 * ratio:.1f} %", f"goal <= 10 %  {_mark(ratio <= 0.10)}")
            print(
                "  (the split sends exactly 10 % of new connections and a step is judged as fast "
                "as the watch after a switch, so the ratio sits at the share itself, give or "
                "take a connection)"
            )
            print(f"\n(total {time.monotonic() - started:.0f}s)")
        finally:
            await project.down()


async def _cloudrun(args: argparse.Namespace) -> None:
    from _rollback_cloudrun import run_cloudrun

    with tempfile.TemporaryDirectory(prefix="safeship-bench-") as tmp:
        await run_cloudrun(args, _deploy_settings(), secrets.token_urlsafe(40), Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="connects per second")
    parser.add_argument("--fault-after", type=float, default=5.0, help="seconds after the switch")
    parser.add_argument(
        "--target",
        choices=["local", "kubernetes", "cloudrun"],
        default="local",
        help="local (scenarios 1-3), kubernetes: the bad revision on kmock + the tests' harness, "
        "or cloudrun: scenarios CR-1..3 on the loopback fake of the Cloud Run Admin API",
    )
    parser.add_argument(
        "--op-delay",
        type=float,
        default=0.5,
        help="cloudrun: seconds each operation of the fake takes (printed apart)",
    )
    args = parser.parse_args()
    if args.target == "cloudrun":
        asyncio.run(asyncio.wait_for(_cloudrun(args), DEADLINE_S * 2))
        return
    if args.target == "kubernetes":
        from _rollback_k8s import run_kubernetes

        scenario = run_kubernetes(args, _deploy_settings(), load_class=Load, line=_line, mark=_mark)
        asyncio.run(asyncio.wait_for(scenario, DEADLINE_S))
        return
    asyncio.run(asyncio.wait_for(_main(args), DEADLINE_S))


if __name__ == "__main__":
    main()
