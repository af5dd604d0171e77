"""How fast ``safeship monitor`` alerts, how often it alerts for nothing, and what it costs.

1. **Fault to alert, per class.** The reference backend (``examples/agent_service`` under
   uvicorn) sits behind a fault-injecting TCP proxy (asyncio). The monitor (the library, at a
   1 s interval, probe timeout 1 s) probes through the proxy while outages are injected at a
   random moment: connections refused, every WebSocket closed with 1011 right after the
   upgrade, every handshake answered 403, every connection accepted and stalled. The time from
   the fault to the incident of the expected class is measured; median and p95 per class.
   Goal: median <= 3 s. Then random single failures (5 % of WebSockets closed with 1011) for
   a while: no incident expected.
2. **False alerts** at a 0.1 % random failure rate over 100,000 probes (5 seeds x 20,000), in
   simulated time through the same policy code (``core.slo.ProbeTracker``, the monitor's
   defaults): incidents and SLO burn alerts. Goal: 0. Beside it, the baseline of the synthetic
   monitors in use (Gatus: a 60 s interval and 3 failures in a row) through the same code, for
   the ratio of detection times.
3. **Cost.** ``safeship monitor`` (the CLI, as a child process) probing 10 environments at 1 s:
   CPU as a share of one core, and RSS over the run (psutil). Goal: < 5 % of a core, flat RSS.

Run: ``.venv/bin/python benchmarks/monitor_detection.py [--trials N] [--cost-seconds S]``.
Bounded to about 2.5 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from safeship.core.slo import Change, CheckClass, Hysteresis, ProbeTracker
from safeship.monitor.endpoints import Endpoint
from safeship.monitor.probing import EndpointProber
from safeship.monitor.scheduler import IncidentEvent, Monitor, MonitorSettings
from safeship.probe import MintedToken, Step
from safeship.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "monitor-bench-secret-0123456789abcdef-XYZ"
GOAL_MEDIAN_S = 3.0
GOAL_CPU = 0.05
CLASSES = {
    "refused": ("refuse", CheckClass.AVAILABILITY),
    "1011": ("1011", CheckClass.AVAILABILITY),
    "403": ("403", CheckClass.AUTH),
    "stall": ("stall", CheckClass.AVAILABILITY),
}
_CLOSE_1011 = bytes([0x88, 0x07, 0x03, 0xF3]) + b"fault"
_FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 41\r\n"
    b"X-Safeship-Denial: forbidden\r\nConnection: close\r\n\r\n"
    b'{"error":"forbidden","detail":"injected"}'
)


# -- the reference backend ------------------------------------------------------------------


def start_backend(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "SAFESHIP_ENV": "test",
        "JWT_SECRET_TEST": SECRET,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'agent.db'}",
        "AGENT_SERVICE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "agent_service.main:app", "--app-dir",
         str(ROOT / "examples"), "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the reference backend exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return proc, port
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the reference backend did not become ready within 60 s")


# -- the fault-injecting proxy --------------------------------------------------------------


class FaultProxy:
    """A TCP proxy in front of the backend. Modes: ``pass``, ``refuse`` (not listening),
    ``1011`` (WebSockets closed with 1011 after the upgrade), ``403`` (handshakes refused),
    ``stall`` (accepted, never answered), ``random`` (a share of WebSockets closed with 1011)."""

    def __init__(self, backend: int, *, seed: int = 15) -> None:
        self.backend = backend
        self.port = free_port()
        self.mode = "pass"
        self.random_rate = 0.05
        self.injected = 0
        self.rng = random.Random(seed)  # the same faults on every run
        self._server: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()

    async def listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
        else:
            await self.listen()
        if mode != "stall":
            for writer in list(self._held):
                writer.close()
            self._held.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            return  # the benchmark is over
        finally:
            if writer not in self._held:
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "stall":
            self._held.add(writer)
            while await reader.read(4096):
                pass
            return
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        is_ws = b"upgrade: websocket" in head.lower()
        if is_ws and self.mode == "403":
            writer.write(_FORBIDDEN)
            await writer.drain()
            return
        inject = is_ws and (
            self.mode == "1011" or (self.mode == "random" and self.rng.random() < self.random_rate)
        )
        self.injected += inject and self.mode == "random"
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend)
        try:
            up_writer.write(head)
            await up_writer.drain()
            if inject:
                response = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), 5)
                writer.write(response + (_CLOSE_1011 if b" 101 " in response[:16] else b""))
                await writer.drain()
                return
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            up_writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


# -- 1. fault to alert ----------------------------------------------------------------------


async def detection(backend: int, trials: int, random_seconds: float) -> dict[str, list[float]]:
    proxy = FaultProxy(backend)
    await proxy.listen()
    events: asyncio.Queue[IncidentEvent] = asyncio.Queue()

    async def on_incident(event: IncidentEvent) -> None:
        await events.put(event)

    prober = EndpointProber(
        token_source=MintedToken("JWT_SECRET_TEST", environ={"JWT_SECRET_TEST": SECRET}),
        steps=[Step({"type": "ping"}, {"type": "pong"}, timeout=1.0)],
        timeout=1.0,
    )
    monitor = Monitor(
        [Endpoint("bench", f"http://127.0.0.1:{proxy.port}")],
        {"bench": prober},
        MonitorSettings(interval=1.0),
        on_incident=on_incident,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    rng = random.Random(7)
    results: dict[str, list[float]] = {name: [] for name in CLASSES}

    async def wait_for(change: Change, check: CheckClass, within: float = 30.0) -> IncidentEvent:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            event = await asyncio.wait_for(events.get(), max(remaining, 0.01))
            if event.transition.change is change and event.transition.check is check:
                return event

    try:
        await asyncio.sleep(3)  # a few good probes first
        for name, (mode, check) in CLASSES.items():
            for _ in range(trials):
                await asyncio.sleep(rng.uniform(0, 1))  # faults land anywhere in the interval
                start = time.time()
                await proxy.set(mode)
                event = await wait_for(Change.OPENED, check)
                results[name].append(time.time() - start)
                await proxy.set("pass")
                await wait_for(Change.RESOLVED, check)
                while not events.empty():  # e.g. a latency blip from the stall
                    events.get_nowait()
            print(f"  {name:8} {_fmt(results[name])}  ({event.transition.detail[:70]})")
        await proxy.set("random")
        probes_before = monitor.trackers["bench"].probes
        await asyncio.sleep(random_seconds)
        await proxy.set("pass")
        spurious = [e for e in list(events._queue) if e.transition.change is Change.OPENED]  # type: ignore[attr-defined]
        probes = monitor.trackers["bench"].probes - probes_before
        print(
            f"  random single failures ({proxy.random_rate:.0%} of WebSockets closed with 1011: "
            f"{proxy.injected} of {probes} probes): {len(spurious)} incident(s) (goal 0)"
        )
        results["random_spurious"] = [float(len(spurious))]
    finally:
        stop.set()
        await task
        await proxy.set("refuse")
    return results


def _fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s, p95 {_p95(values):.2f} s, n={len(values)}"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


# -- 2. false alerts and the baseline, in simulated time ------------------------------------


def false_alerts(seeds: int = 5, probes: int = 20_000, rate: float = 0.001) -> tuple[int, int, int]:
    incidents = burning = failures = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        tracker = ProbeTracker()
        for t in range(probes):
            failed = rng.random() < rate
            failures += failed
            now = float(t)
            opened = tracker.observe(now, "unreachable" if failed else "ok", handshake_ms=5.0)
            incidents += sum(c.change is Change.OPENED for c in opened)
            if failed or t % 60 == 0:
                burning += bool(tracker.burn_alerts(now))
    return incidents, burning, failures


def simulated_detection(interval: float, hysteresis: Hysteresis, trials: int = 2000) -> list[float]:
    """Fault to alert for an outage starting at a random moment, probes every ``interval``."""
    rng = random.Random(3)
    times = []
    for _ in range(trials):
        tracker = ProbeTracker(hysteresis=hysteresis)
        fault = 10 * interval + rng.uniform(0, interval)
        t = 0.0
        while True:
            category = "unreachable" if t >= fault else "ok"
            if tracker.observe(t, category):
                times.append(t - fault)
                break
            t += interval
    return times


# -- 3. cost ----------------------------------------------------------------------------------


def cost(backend: int, seconds: float, envs: int = 10) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clients.env").write_text(f"JWT_SECRET_TEST={SECRET}\n")
        lines = ["[service]", 'name = "bench"']
        for i in range(envs):
            lines += [f"[environments.e{i}]", f'url = "http://127.0.0.1:{backend}"']
        lines += [
            "[secrets.JWT_SECRET]", "per_environment = false",
            "[deploy]", 'probe_secret = "file:clients.env"', "probe_send = '{\"type\": \"ping\"}'",
            'probe_expect = { type = "pong" }',
            "[monitor]", "interval = 1", "timeout = 1", 'listen = ""',
        ]  # fmt: skip
        (root / "safeship.toml").write_text("\n".join(lines) + "\n")
        (root / "clients.env").write_text(f"JWT_SECRET={SECRET}\n")
        safeship = str(Path(sys.executable).parent / "safeship")
        proc = subprocess.Popen(
            [safeship, "monitor", "--json"], cwd=root, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        try:
            child = psutil.Process(proc.pid)
            time.sleep(4)  # imports, the first probes
            if proc.poll() is not None:
                raise SystemExit(f"the monitor exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            cpu0, wall0 = child.cpu_times(), time.monotonic()
            rss = []
            while time.monotonic() - wall0 < seconds:
                rss.append(child.memory_info().rss / 2**20)
                time.sleep(1)
            cpu1, wall1 = child.cpu_times(), time.monotonic()
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        out = proc.stdout.read().decode() if proc.stdout else ""
        probes = out.count('"event": "probe"')
        used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        half = len(rss) // 2
        return {
            "cpu_share": used / (wall1 - wall0),
            "rss_first_mb": statistics.mean(rss[:half]),
            "rss_last_mb": statistics.mean(rss[half:]),
            "rss_max_mb": max(rss),
            "state_changes_printed": probes,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="outages injected per class")
    parser.add_argument("--random-seconds", type=float, default=30.0)
    parser.add_argument("--cost-seconds", type=float, default=40.0)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        proc, backend = start_backend(Path(tmp))
        try:
            print("1. fault to alert, 1 s interval, through a fault-injecting proxy:")
            results = asyncio.run(detection(backend, args.trials, args.random_seconds))
            medians = [statistics.median(results[name]) for name in CLASSES]
            worst = max(medians)
            print(f"   worst median {worst:.2f} s (goal <= {GOAL_MEDIAN_S:g} s)")
            failed |= results["random_spurious"][0] > 0

            print("2. false alerts at 0.1 % random failures, simulated time, monitor defaults:")
            incidents, burning, failures = false_alerts()
            print(
                f"   100,000 probes, {failures} failed at random: {incidents} incident(s), "
                f"{burning} SLO burn alert(s) (goal 0)"
            )
            failed |= incidents + burning > 0
            ours = statistics.median(simulated_detection(1.0, Hysteresis()))
            gatus = statistics.median(simulated_detection(60.0, Hysteresis(3, 3, 1)))
            measured = statistics.median([v for n in CLASSES for v in results[n]])
            print(
                f"   baseline (60 s interval, 3 failures in a row): median {gatus:.1f} s to alert; "
                f"ours simulated {ours:.2f} s, measured {measured:.2f} s: "
                f"{gatus / measured:.0f}x faster"
            )

            print(
                f"3. cost: `safeship monitor` probing 10 environments at 1 s for {args.cost_seconds:g} s:"
            )
            used = cost(backend, args.cost_seconds)
            print(
                f"   CPU {used['cpu_share']:.1%} of one core (goal < {GOAL_CPU:.0%}); RSS "
                f"{used['rss_first_mb']:.1f} MB in the first half, {used['rss_last_mb']:.1f} MB in "
                f"the second (max {used['rss_max_mb']:.1f} MB)"
            )
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
