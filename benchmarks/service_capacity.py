"""Capacity of the reference service (``examples/agent_service``).

1. Idle connections: N concurrent authenticated WebSockets (N = 2,000, and 10,000 when the
   file-descriptor limit allows), held by a client process of their own; prints the server's
   resident memory per connection ((RSS after - RSS before) / N). Goal: <= 64 KiB/conn.
   Clients offer permessage-deflate, as browsers do; the service runs as documented in
   docs/containers.md (``--ws-per-message-deflate false``), and once with compression on for
   comparison.
2. Fan-out: events per second delivered from runs on instance A to the user's connections on
   instance B through Redis, against the same load delivered within one instance; prints the
   ratio. Goal: >= 0.5. Uses PostgreSQL (127.0.0.1:5432, db test, a throwaway schema) when it
   answers, else a shared SQLite file; Redis on 127.0.0.1:6379, on a channel of its own.

    python benchmarks/service_capacity.py [--connections 2000 10000] [--users 20]
        [--runs-per-user 5] [--steps 50] [--skip-idle] [--skip-fanout] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _capacity_servers import (
    EXAMPLES,
    REDIS_URL,
    SECRET,
    Instance,
    postgres_schema,
    start_instance,
    stop,
)

sys.path.insert(0, str(EXAMPLES))
from agent_service.client import AgentClient, ClientStats

from safeship.testing import wait_until_async
from safeship.tokens import mint

CLIENTS = Path(__file__).resolve().parent / "_capacity_clients.py"
KIB = 1024
IDLE_GOAL_KIB = 64
FANOUT_GOAL = 0.5
NO_DEFLATE = ("--ws-per-message-deflate", "false")


# -- idle connections -----------------------------------------------------------------------


def fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def hold_connections(
    instance: Instance, n: int, compression: str
) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [sys.executable, str(CLIENTS), instance.ws_url, str(n), "--compression", compression],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JWT_SECRET": SECRET},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the helper prints once every connection is open or failed
    if not line:
        raise RuntimeError("the client process ended before opening its connections")
    return proc, json.loads(line)


def release(proc: subprocess.Popen[str]) -> None:
    try:
        proc.communicate("close\n", timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def settle_rss(instance: Instance, seconds: float = 1.0) -> int:
    """RSS once it stopped moving (the server finished the handshakes it was sent)."""
    last = instance.rss()
    deadline = time.monotonic() + seconds * 10
    while time.monotonic() < deadline:
        time.sleep(seconds / 4)
        now = instance.rss()
        if abs(now - last) < 64 * KIB:
            return now
        last = now
    return last


def idle(workdir: Path, n: int, *, deflate: bool) -> dict[str, Any]:
    args = () if deflate else NO_DEFLATE
    instance = start_instance(workdir, {}, args=args)
    try:
        # Warm-up: the first connections pay for lazy imports and caches, not per connection.
        warm, _ = hold_connections(instance, 50, "deflate")
        release(warm)
        before = settle_rss(instance)
        started = time.monotonic()
        clients, outcome = hold_connections(instance, n, "deflate")
        opened_in = time.monotonic() - started
        after = settle_rss(instance)
        active = instance.metric("safeship_websocket_active_connections")
        release(clients)
    finally:
        stop(instance)
    per_conn = (after - before) / max(1, outcome["open"])
    return {
        "connections": n,
        "open": outcome["open"],
        "failed": outcome["failed"],
        "server_active": int(active),
        "permessage_deflate": deflate,
        "rss_before_mib": round(before / KIB / KIB, 1),
        "rss_after_mib": round(after / KIB / KIB, 1),
        "kib_per_connection": round(per_conn / KIB, 1),
        "open_seconds": round(opened_in, 1),
        "goal_kib": IDLE_GOAL_KIB,
        "meets_goal": per_conn / KIB <= IDLE_GOAL_KIB,
    }


# -- fan-out --------------------------------------------------------------------------------


async def deliver(
    drivers_on: Instance, receivers_on: Instance, users: int, runs: int, steps: int
) -> dict[str, Any]:
    """Receivers connect first (one per user); drivers start ``runs`` slow runs per user with
    ``steps`` events each and no delay. Rate = events received by the receivers / time."""
    stats = ClientStats()
    expected = users * runs * (steps + 2)

    def make(instance: Instance, user: str) -> AgentClient:
        return AgentClient(
            instance.ws_url, lambda: mint(SECRET, user, ttl=3600), keep_events=False, stats=stats
        )

    receivers = [make(receivers_on, f"fan-{u}") for u in range(users)]
    drivers = [make(drivers_on, f"fan-{u}") for u in range(users)]
    for c in receivers + drivers:
        await c.connect()
    received = ClientStats()
    for c in receivers:
        c.stats = received  # count what the receivers got apart from the drivers' copies
    started = time.perf_counter()

    async def drive(c: AgentClient) -> None:
        run_ids = [
            await c.start("slow", {"steps": steps, "delay": 0}, within=60) for _ in range(runs)
        ]
        for run_id in run_ids:
            await c.wait(run_id, within=120)

    await asyncio.gather(*(drive(c) for c in drivers))
    with contextlib.suppress(TimeoutError):
        await wait_until_async(lambda: received.events >= expected, within=60, interval=0.005)
    elapsed = time.perf_counter() - started
    for c in receivers + drivers:
        await c.close()
    return {
        "events": received.events,
        "expected": expected,
        "lost": received.lost,
        "duplicates": received.duplicates,
        "seconds": round(elapsed, 3),
        "events_per_second": round(received.events / elapsed),
    }


def fanout(workdir: Path, users: int, runs: int, steps: int) -> dict[str, Any]:
    with postgres_schema() as pg:
        database = "postgresql" if pg else "sqlite"
        env = {
            **(pg or {}),
            "REDIS_URL": REDIS_URL,
            "AGENT_SERVICE_REDIS_CHANNEL": "agent_service_bench_" + os.urandom(4).hex(),
            "AGENT_SERVICE_MAX_RUNS_PER_USER": str(runs),
            # Events reach B through Redis only: no database tailing during the measurement.
            "AGENT_SERVICE_TAIL_INTERVAL": "300",
        }
        a = start_instance(workdir, env, args=NO_DEFLATE)
        b = start_instance(workdir, env, args=NO_DEFLATE)
        try:
            asyncio.run(deliver(a, a, users, 1, 5))  # warm-up
            local = asyncio.run(deliver(a, a, users, runs, steps))
            cross = asyncio.run(deliver(a, b, users, runs, steps))
            remote = b.metric("agent_service_remote_events_received_total")
        finally:
            stop(a)
            stop(b)
    ratio = cross["events_per_second"] / max(1, local["events_per_second"])
    return {
        "database": database,
        "users": users,
        "runs_per_user": runs,
        "events_per_run": steps + 2,
        "within_one_instance": local,
        "a_to_b_through_redis": cross,
        "b_received_from_redis": int(remote),
        "ratio": round(ratio, 2),
        "goal": FANOUT_GOAL,
        "meets_goal": ratio >= FANOUT_GOAL,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--runs-per-user", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    limit = fd_limit()
    report: dict[str, Any] = {"fd_limit": limit, "cpus": os.cpu_count(), "idle": [], "fanout": None}
    with tempfile.TemporaryDirectory(prefix="safeship-capacity-") as tmp:
        workdir = Path(tmp)
        if not args.skip_idle:
            for n in args.connections:
                if n + 200 > limit:
                    print(f"skipping {n} connections: the open-file limit is {limit}")
                    continue
                report["idle"].append(idle(workdir, n, deflate=False))
                _print_idle(report["idle"][-1], args.json)
            # The trade-off: the same first load with compression negotiated.
            smallest = min(args.connections)
            if smallest + 200 <= limit:
                report["idle"].append(idle(workdir, smallest, deflate=True))
                _print_idle(report["idle"][-1], args.json)
        if not args.skip_fanout:
            report["fanout"] = fanout(workdir, args.users, args.runs_per_user, args.steps)
            _print_fanout(report["fanout"], args.json)
    if args.json:
        print(json.dumps(report, indent=2))


def _print_idle(r: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    deflate = "on " if r["permessage_deflate"] else "off"
    verdict = "ok" if r["meets_goal"] else "OVER GOAL"
    print(
        f"idle  {r['open']:>6}/{r['connections']} connections  deflate {deflate}  "
        f"RSS {r['rss_before_mib']} -> {r['rss_after_mib']} MiB  "
        f"{r['kib_per_connection']:.1f} KiB/conn (goal <= {r['goal_kib']})  {verdict}  "
        f"opened in {r['open_seconds']}s" + (f"  failed {r['failed']}" if r["failed"] else "")
    )


def _print_fanout(r: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    local, cross = r["within_one_instance"], r["a_to_b_through_redis"]
    print(
        f"fanout ({r['database']}, {r['users']} users x {r['runs_per_user']} runs x "
        f"{r['events_per_run']} events)\n"
        f"  within one instance  {local['events_per_second']:>7} events/s  "
        f"({local['events']}/{local['expected']} in {local['seconds']}s, lost {local['lost']})\n"
        f"  A -> B via Redis     {cross['events_per_second']:>7} events/s  "
        f"({cross['events']}/{cross['expected']} in {cross['seconds']}s, lost {cross['lost']})\n"
        f"  ratio {r['ratio']} (goal >= {r['goal']})  {'ok' if r['meets_goal'] else 'BELOW GOAL'}"
    )


if __name__ == "__main__":
    main()
