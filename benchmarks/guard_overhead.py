"""Guard overhead: the same uvicorn process and client, bare vs behind WebSocketGuard with JWT.

Prints handshakes/s and echo messages/s as ratios guarded/bare (goals >= 0.90 and >= 0.97), and
the time to deny a handshake while not ready (goal p99 < 20 ms). For reference it also times
the bare endpoint with the guarded runs' Authorization headers, which it ignores. Rounds
alternate bare and guarded so that machine noise hits both alike; the ratio is the median over
rounds.

    .venv/bin/python benchmarks/guard_overhead.py [--rounds 5] [--handshakes 400] [--messages 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from safeship.testing import free_port, wait_until
from safeship.tokens import mint

HERE = Path(__file__).resolve().parent


async def handshakes(
    url: str, count: int, tokens: list[str] | None, concurrency: int = 16
) -> float:
    """Handshakes per second: connect, one echo round trip, close. Each guarded handshake
    carries a different token, as from many users: no verification is repeated."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            headers = {"Authorization": f"Bearer {tokens[i]}"} if tokens else {}
            async with connect(url, additional_headers=headers, compression=None) as ws:
                await ws.send("x")
                await ws.recv()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def echo_rate(
    url: str, messages: int, headers: dict[str, str], connections: int = 8
) -> float:
    """Echo round trips per second on already-open connections."""
    sockets = [
        await connect(url, additional_headers=headers, compression=None) for _ in range(connections)
    ]
    per = messages // connections

    async def pump(ws) -> None:  # type: ignore[no-untyped-def]
        for i in range(per):
            await ws.send(f"message {i}")
            await ws.recv()

    started = time.perf_counter()
    await asyncio.gather(*(pump(ws) for ws in sockets))
    elapsed = time.perf_counter() - started
    for ws in sockets:
        await ws.close()
    return per * connections / elapsed


async def deny_latencies(url: str, count: int, headers: dict[str, str]) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        try:
            async with connect(url, additional_headers=headers, compression=None):
                raise AssertionError("a not-ready service accepted a handshake")
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(port: int, pid: int, secret: str, args: argparse.Namespace) -> dict[str, object]:
    base = f"ws://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {mint(secret, 'bench', ttl=3600)}"}
    unique = [mint(secret, f"user-{i}", ttl=3600) for i in range(args.handshakes * args.rounds)]
    users = [mint(secret, f"user-{i}", ttl=3600) for i in range(args.users)]
    reused = [users[i % len(users)] for i in range(len(unique))]
    # Warm up both paths (imports, caches, the TCP stack).
    await handshakes(base + "/bare/", 50, None)
    await handshakes(base + "/guarded/", 50, users[:1] * 50)
    # Short alternating slices: a burst of noise from the machine hits every variant alike.
    variants = {
        "bare": ("/bare/", None),
        "bare_header": ("/bare/", unique),
        "unique": ("/guarded/", unique),
        "reused": ("/guarded/", reused),
    }
    totals = {name: [0.0, 0.0, 0] for name in variants}  # wall s, server cpu s, count
    slice_size = 50
    for start in range(0, len(unique), slice_size):
        for name, (path, pool) in variants.items():
            toks = pool[start : start + slice_size] if pool else None
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            await handshakes(base + path, slice_size, toks)
            totals[name][0] += time.perf_counter() - t0
            totals[name][1] += cpu_seconds(pid) - cpu0
            totals[name][2] += slice_size
    echo_ratios, echo_cpu = [], {"bare": 0.0, "guarded": 0.0}
    echo_paths = {"bare": ("/bare/", {}), "guarded": ("/guarded/", auth)}
    for round_ in range(args.rounds):
        # Which goes first alternates, so a drift within a round (a burst of load, a
        # collection) does not always land on the same side.
        order = ["bare", "guarded"] if round_ % 2 == 0 else ["guarded", "bare"]
        rates = {}
        for name in order:
            path, headers = echo_paths[name]
            cpu0 = cpu_seconds(pid)
            rates[name] = await echo_rate(base + path, args.messages, headers)
            echo_cpu[name] += cpu_seconds(pid) - cpu0
        echo_ratios.append(rates["guarded"] / rates["bare"])
    denies = await deny_latencies(base + "/notready/", args.denials, auth)
    return {"hs": totals, "echo": echo_ratios, "echo_cpu": echo_cpu, "deny": denies}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--handshakes", type=int, default=400)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--denials", type=int, default=500)
    parser.add_argument("--users", type=int, default=16, help="distinct users in the reuse case")
    args = parser.parse_args()

    secret = secrets.token_urlsafe(48)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_guard_app:app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={**os.environ, "BENCH_SECRET": secret},
    )
    try:
        wait_until(lambda: _up(port), timeout=20, interval=0.05, what="benchmark server")
        result = asyncio.run(measure(port, server.pid, secret, args))
    finally:
        server.terminate()
        server.wait(timeout=20)

    print("guard_overhead: bare vs WebSocketGuard(JWT) on one uvicorn process, loopback")
    hs = result["hs"]  # type: ignore[index]
    rate = {k: v[2] / v[0] for k, v in hs.items()}  # type: ignore[union-attr]
    cpu = {k: v[1] / v[2] * 1e6 for k, v in hs.items()}  # type: ignore[union-attr]
    verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    print(f"handshakes: bare {rate['bare']:.0f}/s ({cpu['bare']:.0f} us server CPU each)")
    print(
        f"  bare, carrying the same Authorization headers (ignored): {rate['bare_header']:.0f}/s "
        f"({cpu['bare_header']:.0f} us each): what the token costs before the guard reads it"
    )
    for name, label in (
        ("unique", "a new token on every handshake (worst case: signature verified each time)"),
        ("reused", f"{args.users} users reconnecting with their tokens (verified-token cache)"),
    ):
        ratio = rate[name] / rate["bare"]
        print(f"  guarded, {label}:")
        print(
            f"    {rate[name]:.0f}/s ({cpu[name]:.0f} us each); handshakes/s guarded/bare = "
            f"{ratio:.3f} (goal >= 0.90) {verdict(ratio >= 0.90)}; "
            f"server CPU bare/guarded = {cpu['bare'] / cpu[name]:.3f}"
        )
    echo = statistics.median(result["echo"])  # type: ignore[arg-type]
    deny = result["deny"]
    med, p99 = statistics.median(deny), percentile(deny, 0.99)  # type: ignore[arg-type]
    print(f"echo msgs/s    guarded/bare = {echo:.3f}   (goal >= 0.97) {verdict(echo >= 0.97)}")
    ecpu = result["echo_cpu"]  # type: ignore[index]
    print(f"  server CPU per echo, bare/guarded = {ecpu['bare'] / ecpu['guarded']:.3f}")
    print(
        f"deny not-ready median {med:.2f} ms, p99 {p99:.2f} ms   (goal p99 < 20 ms) {verdict(p99 < 20)}"
    )
    return 0


def _up(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
    except httpx.HTTPError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
