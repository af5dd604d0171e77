"""The rollback benchmark on Cloud Run: ``safeship deploy --target cloudrun`` against the loopback
fake of the Admin API v2 (``tests/deploy/cloudrun_fake.py``), whose revisions are real processes
of the reference backend and whose service URL routes new connections by traffic percentages.

The fake's own operation delay (what the real control plane takes to apply a change) is a
parameter, printed apart: the goal is the rollback time without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _rollback_project import ROOT, Project

sys.path.insert(0, str(ROOT))

from tests.deploy.cloudrun_fake import FakeCloudRun

__all__ = ["CloudRunBench", "Watch"]

SERVICE = "agent"


class CloudRunBench:
    """The project (``[deploy] target = "cloudrun"``) and the fake it deploys to."""

    def __init__(
        self, base: Path, secret: str, *, op_delay: float, fault_after: float, **deploy: Any
    ) -> None:
        self.project = Project(base, secret, target="cloudrun", **deploy)
        root = self.project.root
        uvicorn = [
            sys.executable, "-m", "uvicorn", "faulty_agent:app", "--app-dir",
            str(root / "examples"), "--host", "127.0.0.1", "--port", "{port}", "--no-use-colors",
        ]  # fmt: skip
        images = {
            "agent:good": uvicorn,
            "agent:bad": ["env", f"DEPLOY_FAULT_AFTER={fault_after:g}", *uvicorn],
        }
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("JWT_SECRET") and k != "DEPLOY_FAULT_AFTER"
        }
        environ.update(PYTHONUNBUFFERED="1", AGENT_SERVICE_RUN_GRACE="4")
        self.fake = FakeCloudRun(
            base / "cloud", images, environ=environ, cwd=root, op_delay=op_delay
        )
        self.op_delay = op_delay
        manifest = root / "safeship.toml"
        text = manifest.read_text().replace(
            "[service]\n", '[service]\ndrain_path = "/_safeship/drain"\n', 1
        )
        manifest.write_text(text)

    def __enter__(self) -> CloudRunBench:
        self.fake.__enter__()
        self.fake.secrets["jwt-test"] = self.project.secret
        env: list[dict[str, Any]] = [
            {"name": "SAFESHIP_ENV", "value": "test"},
            {
                "name": "JWT_SECRET_TEST",
                "valueSource": {"secretKeyRef": {"secret": "jwt-test", "version": "latest"}},
            },
        ]
        self.fake.add_service(SERVICE, "agent:good", env=env)
        table = [
            "",
            "[deploy.cloudrun]",
            f'project = "{self.fake.project}"',
            f'region = "{self.fake.region}"',
            f'service = "{SERVICE}"',
            'image = "agent:good"',
            "private = false",
            f'endpoint = "{self.fake.endpoint}"',
            "poll_interval = 0.05",
            "request_timeout = 5",
            "operation_timeout = 60",
        ]
        path = self.project.root / "safeship.toml"
        path.write_text(path.read_text() + "\n".join(table) + "\n")
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.close()

    @property
    def ws_url(self) -> str:
        return self.fake.service_url(SERVICE).replace("http://", "ws://") + "/ws"

    def shares(self) -> dict[str, int]:
        service = self.fake.services[f"{self.fake.parent()}/services/{SERVICE}"]
        out: dict[str, int] = {}
        for entry in service.traffic:
            name = entry.get("revision") or service.latest_ready or ""
            out[name] = out.get(name, 0) + int(entry.get("percent", 0))
        return {k: v for k, v in out.items() if v}

    def serving(self) -> str:
        shares = self.shares()
        return max(shares, key=lambda name: shares[name])


@dataclass
class Watch:
    """Sampled every 10 ms in the benchmark's process: when the traffic moved (from the fake's
    own state), and when the drained revision dropped readiness and lost its last WebSocket
    (from its ``/health/ready`` and ``/info``, on its own address)."""

    bench: CloudRunBench
    previous: str
    moved_at: float | None = None
    back_at: float | None = None
    drain_started_at: float | None = None
    all_closed_at: float | None = None
    drained: str | None = None
    open_at_drain: int = 0

    async def run(self, drained: str | None) -> None:
        """``drained``: the revision whose WebSockets are counted (``None``: the new one)."""
        async with httpx.AsyncClient(timeout=0.5, trust_env=False) as client:
            while True:
                now = time.monotonic()
                shares = self.bench.shares()
                if self.moved_at is None and shares.get(self.previous, 0) < 100:
                    self.moved_at = now
                moved = self.moved_at is not None and self.back_at is None
                if moved and shares.get(self.previous) == 100:
                    self.back_at = now
                candidate = next((n for n in shares if n != self.previous), None)
                name = drained or self.drained or candidate
                if name is not None and self.all_closed_at is None:
                    self.drained = name
                    await self._sample(client, name, now)
                await asyncio.sleep(0.01)

    async def _sample(self, client: httpx.AsyncClient, name: str, now: float) -> None:
        revision = self.bench.fake.revisions.get(name)
        if revision is None:  # deleted: nothing of it is open any more
            if self.drain_started_at is not None:
                self.all_closed_at = now
            return
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if self.drain_started_at is None:
                ready = await client.get(f"{revision.url}/health/ready")
                if ready.status_code == 503 and "draining" in ready.text:
                    self.drain_started_at = now
                    info = (await client.get(f"{revision.url}/info")).json()
                    self.open_at_drain = int(info.get("connections", 0))
                return
            info = (await client.get(f"{revision.url}/info")).json()
            if int(info.get("connections", 0)) == 0:
                self.all_closed_at = now
            return
        if self.drain_started_at is not None:
            self.all_closed_at = now  # no longer answers: its process is gone


def _line(label: str, value: str, goal: str = "") -> None:
    print(f"  {label:<58} {value:>12}  {goal}")


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


async def _deploy_under_load(
    bench: CloudRunBench, args: Any, *, image: str, drained: str | None
) -> tuple[dict[str, Any], Any, Watch]:
    from _rollback_load import Load

    previous = bench.serving()
    load = Load(bench.ws_url, bench.project.secret, rate=args.rate, steps=24, delay=0.5)
    await load.start()
    await asyncio.sleep(3.0)  # users on the serving revision, mid-stream when it is drained
    bench.project.configure(image=image)
    watch = Watch(bench, previous)
    sampler = asyncio.create_task(watch.run(drained if drained != "previous" else previous))
    try:
        record, _ = await bench.project.deploy(within=150)
        await asyncio.sleep(1.0)  # users after the deploy, on whatever serves now
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    result = await load.finish()
    return record, result, watch


def _drain_lines(watch: Watch, drain_seconds: float, reference: float | None, what: str) -> None:
    after_call = (
        watch.all_closed_at - watch.drain_started_at
        if watch.all_closed_at is not None and watch.drain_started_at is not None
        else None
    )
    _line(
        f"{what}'s WebSockets open when the drain was called",
        str(watch.open_at_drain),
    )
    _line(
        "  all closed, after the drain call",
        _seconds(after_call),
        f"window {drain_seconds:g} s"
        + (f"  {_mark(after_call <= drain_seconds + 1)}" if after_call is not None else ""),
    )
    since = (
        watch.all_closed_at - reference
        if watch.all_closed_at is not None and reference is not None
        else None
    )
    _line(f"  all closed, after {what} lost its traffic", _seconds(since))
    _line("  (Cloud Run alone: open until the request timeout)", "<= 3600 s")


async def run_cloudrun(args: Any, settings: dict[str, Any], secret: str, base: Path) -> None:
    drain = float(settings["drain_seconds"])
    with CloudRunBench(
        base, secret, op_delay=args.op_delay, fault_after=args.fault_after, **settings
    ) as bench:
        print(
            f"Cloud Run, on the loopback fake of the Admin API v2: each operation of the fake "
            f"takes {args.op_delay:g} s (its own delay, printed apart)"
        )
        print(f"\nScenario CR-1: a good revision, under {args.rate:g} connects/s")
        record, result, watch = await _deploy_under_load(
            bench, args, image="agent:good", drained="previous"
        )
        stats = result.stats
        print(
            f"  deploy {record['id']}: {record['outcome']} in {record['duration_s']:.1f}s "
            f"({record.get('candidate')}); {result.users} users, {stats.events} events, "
            f"{stats.closes.get(1012, 0)} drained (1012), {stats.resumes} resumed runs"
        )
        failed = result.failed_connections
        _line(
            "failed client connections (switch + drain)",
            str(failed),
            f"goal 0  {_mark(not failed)}",
        )
        _line(
            "events lost by drained-and-resumed users",
            str(stats.lost),
            f"goal 0  {_mark(not stats.lost)}",
        )
        _drain_lines(watch, drain, watch.moved_at, "the old revision")

        bench.project.configure(watch_seconds=args.fault_after + 8)
        print(
            f"\nScenario CR-2: a revision that closes every connection with 1011 "
            f"{args.fault_after:g} s after it starts, under {args.rate:g} connects/s"
        )
        record, result, watch = await _deploy_under_load(
            bench, args, image="agent:bad", drained=None
        )
        stats = result.stats
        print(
            f"  deploy {record['id']}: {record['outcome']} in {record['duration_s']:.1f}s; "
            f"{result.users} users, {stats.events} events, "
            f"{stats.closes.get(1012, 0)} drained (1012), {stats.resumes} resumed runs"
        )
        first = result.first_failure_at
        back = watch.back_at - first if watch.back_at is not None and first is not None else None
        _line("first failing connection -> traffic back (measured)", _seconds(back))
        _line("  of which the fake's own operation delay", _seconds(args.op_delay))
        without = back - args.op_delay if back is not None else None
        _line(
            "  first failing connection -> traffic back, without it",
            _seconds(without),
            f"goal <= 3 s  {_mark(without is not None and without <= 3.0)}",
        )
        _line(
            "  (the pipeline's own: first failed probe -> traffic back)",
            f"{record.get('time_to_rollback_s') or 0:.2f} s",
        )
        _line("failed client connections (new connections)", str(result.failed_connects))
        _line("open connections the bad revision closed with 1011", str(result.broken_connections))
        _line("events lost by resumed users", str(stats.lost), f"goal 0  {_mark(not stats.lost)}")
        _drain_lines(watch, drain, watch.back_at, "the bad revision")
        full = result.failed_connections

        bench.project.configure(steps=[10, 100])
        print(
            f"\nScenario CR-3: the same revision, deployed with canary steps [10, 100]: it goes "
            f"bad at the 10 % step, under {args.rate:g} connects/s"
        )
        record, result, watch = await _deploy_under_load(
            bench, args, image="agent:bad", drained=None
        )
        bench.project.configure(steps=[100])
        print(f"  deploy {record['id']}: {record['outcome']} in {record['duration_s']:.1f}s")
        first = result.first_failure_at
        back = watch.back_at - first if watch.back_at is not None and first is not None else None
        without = back - args.op_delay if back is not None else None
        _line("first failing connection -> traffic back, without the fake's", _seconds(without))
        _line(
            "events lost by resumed users",
            str(result.stats.lost),
            f"goal 0  {_mark(not result.stats.lost)}",
        )
        step = result.failed_connections
        ratio = step / full if full else float("nan")
        print("  failed connections (new and open), same load:")
        _line("  full switch (CR-2)", str(full))
        _line("  at a 10 % canary step (CR-3)", str(step))
        _line("  ratio", f"{100 * ratio:.1f} %", f"goal <= 10 %  {_mark(ratio <= 0.10)}")
        print(
            "  (the fake routes exactly 10 % of new connections to the step, and a step is "
            "judged as fast as the watch after a switch, so the ratio sits at the share itself, "
            "give or take a connection)"
        )
