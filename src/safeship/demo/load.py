"""The demo's background client load: authenticated users arriving at a steady rate through
the front port, each running a streamed agent and resuming after any drain.

Users are built on the reference backend's ``AgentClient``, so a drained connection (1012)
reconnects and resumes its run from its last sequence number. A sampler turns the shared
counters into a per-second timeline of successful and failed connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ..tokens import mint

__all__ = ["ClientLoad"]


class ClientLoad:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        rate: float = 4.0,
        steps: int = 16,
        delay: float = 0.35,
        t0: float | None = None,
    ) -> None:
        from agent_service.client import ClientStats  # the reference backend's client

        self.url, self.secret = url, secret
        self.rate, self.steps, self.delay = rate, steps, delay
        self.t0 = time.monotonic() if t0 is None else t0
        self.stats = ClientStats()
        self.timeline: list[dict[str, Any]] = []
        self.users = 0
        self.errors: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._seen_ok = 0
        self._seen_failed = 0

    # -- counters ---------------------------------------------------------------------------

    @property
    def failed(self) -> int:
        """Every user-visible failure so far: refused or broken connections, error replies,
        runs that did not finish."""
        return sum(self.stats.failures.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return self.stats.connects_ok

    def summary(self) -> dict[str, Any]:
        stats = self.stats
        failed = self.failed
        return {
            "users": self.users,
            "connections": stats.connects_ok + failed,
            "connects_ok": stats.connects_ok,
            "connects_failed": failed,
            "reconnects": stats.reconnects,
            "resumes": stats.resumes,
            "events": stats.events,
            "lost": stats.lost,
            "duplicates": stats.duplicates,
            "runs_started": stats.runs_started,
            "runs_completed": stats.runs_completed,
            "failures": dict(stats.failures) | self.errors,
            "closes": {str(k): v for k, v in stats.closes.items()},
        }

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._background = [
            asyncio.create_task(self._arrivals(), name="demo-arrivals"),
            asyncio.create_task(self._sample(), name="demo-sampler"),
        ]

    async def _arrivals(self) -> None:
        interval, started = 1.0 / self.rate, time.monotonic()
        while True:
            task = asyncio.create_task(self._user(self.users))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.users += 1
            await asyncio.sleep(max(0.0, started + self.users * interval - time.monotonic()))

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._bucket()

    def _bucket(self) -> None:
        ok, failed = self.ok, self.failed
        self.timeline.append(
            {
                "t": round(time.monotonic() - self.t0, 2),
                "ok": ok - self._seen_ok,
                "failed": failed - self._seen_failed,
            }
        )
        self._seen_ok, self._seen_failed = ok, failed

    async def _user(self, n: int) -> None:
        from agent_service.client import AgentClient

        sub = f"demo-user-{n}"
        client = AgentClient(
            self.url,
            lambda: mint(self.secret, sub, ttl=900),
            keep_events=False,
            stats=self.stats,
            max_attempts=20,
            max_backoff=0.5,
        )
        try:
            await client.connect()
            run_id = await client.start(
                "slow", {"steps": self.steps, "delay": self.delay}, within=15
            )
            result = await client.wait(run_id, within=self.steps * self.delay + 45)
            if result.status != "completed":
                self._count(f"run:{result.status}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._count(f"user:{type(exc).__name__}")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)

    def _count(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    async def stop(self, within: float = 60.0) -> None:
        """Stop new arrivals, let the users in flight finish (bounded), stop sampling."""
        for task in self._background[:1]:
            task.cancel()
        pending = list(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=within)
            for task in still:
                task.cancel()
                self._count("user:unfinished")
            if still:
                await asyncio.wait(still, timeout=5)
        for task in self._background[1:]:
            task.cancel()
        self._bucket()
