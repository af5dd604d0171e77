"""The rollback benchmark's background load: N authenticated users per second through the front.

Each user connects (``AgentClient``), makes one round trip (starts a ``slow`` run), then stays
connected following the run's stream; on a drain (1012) it reconnects and resumes. A sampler
notes, every few milliseconds, when the first failure of any kind was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from agent_service.client import AgentClient, ClientStats

from safeship.tokens import mint

__all__ = ["Load", "LoadResult"]


@dataclass
class LoadResult:
    users: int
    stats: ClientStats
    """All users' counters, summed."""
    first_failure_at: float | None
    """``time.monotonic()`` of the first failure any user saw (sampled every 10 ms)."""
    failed_connects: int
    """Users whose connection attempt failed at least once (refused, or closed before the
    welcome), whether or not a retry then succeeded."""
    broken_connections: int
    """Users whose open connection ended with an error a client does not reconnect after."""
    failed_attempts: int
    """Connection attempts that failed, retries included."""
    runs_unfinished: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def failed_connections(self) -> int:
        return self.failed_connects + self.broken_connections


class Load:
    def __init__(
        self, url: str, secret: str, *, rate: float = 20.0, steps: int = 20, delay: float = 0.25
    ) -> None:
        self.url, self.secret = url, secret
        self.rate, self.steps, self.delay = rate, steps, delay
        self.first_failure_at: float | None = None
        self._clients: list[AgentClient] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runs: list[asyncio.Task[Any]] = []
        self._errors: dict[str, int] = {}
        self._adding: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    def _failed(self) -> bool:
        return bool(self._errors) or any(c.stats.failures for c in self._clients)

    async def start(self) -> None:
        self._adding = asyncio.create_task(self._add_users())
        self._sampler = asyncio.create_task(self._sample())

    async def _add_users(self) -> None:
        interval, n, started = 1 / self.rate, 0, time.monotonic()
        while True:
            self._tasks.append(asyncio.create_task(self._user(n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))

    async def _sample(self) -> None:
        while self.first_failure_at is None:
            if self._failed():
                self.first_failure_at = time.monotonic()
                return
            await asyncio.sleep(0.01)

    async def _user(self, n: int) -> None:
        sub = f"bench-{os.getpid()}-{n}"
        client = AgentClient(
            self.url,
            lambda: mint(self.secret, sub, ttl=900),
            keep_events=False,
            stats=ClientStats(),  # one per user: who saw a failure, not only how many
            max_attempts=10,
        )
        self._clients.append(client)
        try:
            await client.connect()
            run_id = await client.start("slow", {"steps": self.steps, "delay": self.delay})
            self._runs.append(asyncio.ensure_future(client.wait(run_id, within=120)))
        except Exception as exc:
            key = f"user:{type(exc).__name__}"
            self._errors[key] = self._errors.get(key, 0) + 1

    async def stop_adding(self) -> None:
        if self._adding is not None:
            self._adding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adding

    async def finish(self, within: float = 60.0) -> LoadResult:
        """Stop adding users, let every run end (or time out), close everyone."""
        await self.stop_adding()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), within)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*self._runs, return_exceptions=True), within
        )
        unfinished = sum(
            1 for o in outcomes if isinstance(o, BaseException) or o.status != "completed"
        )
        for client in self._clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)
        if self._sampler is not None:
            self._sampler.cancel()
        total = ClientStats()
        for client in self._clients:
            total.merge(client.stats)
        failed_connects = sum(1 for c in self._clients if c.stats.connects_failed)
        broken = sum(
            1 for c in self._clients if any(k.startswith("closed:") for k in c.stats.failures)
        )
        attempts = sum(total.connects_failed.values())
        return LoadResult(
            len(self._tasks), total, self.first_failure_at, failed_connects, broken, attempts,
            unfinished, dict(self._errors),
        )  # fmt: skip
