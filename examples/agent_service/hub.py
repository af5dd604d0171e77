"""In-process fan-out: every event reaches every open connection of its user on this instance,
whether it comes from a local run, from the broker, or from the database.

The hub also knows which runs the local connections follow, so that runs owned by another
instance can be tailed from the database when their live stream goes quiet (no Redis, a Redis
outage, or a lost message). Tailing is what lets a client that reconnects to a new instance
while the old one finishes its runs during a drain receive every remaining event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Protocol

from .metrics import ServiceMetrics
from .protocol import Event
from .store import EventStore

__all__ = ["Hub", "RemoteRunTailer", "Sink"]

logger = logging.getLogger("agent_service.hub")


class Sink(Protocol):
    user: str

    def push(self, event: Event) -> None:
        """Queue ``event`` for delivery; must not block."""
        ...


@dataclass
class _Followed:
    user: str
    followers: int
    last_seq: int
    last_seen: float


class Hub:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_user: dict[str, set[Sink]] = {}
        self._followed: dict[str, _Followed] = {}
        self.clock = clock

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_user.values())

    def add(self, sink: Sink) -> None:
        self._by_user.setdefault(sink.user, set()).add(sink)

    def remove(self, sink: Sink) -> None:
        sinks = self._by_user.get(sink.user)
        if sinks is not None:
            sinks.discard(sink)
            if not sinks:
                del self._by_user[sink.user]

    def dispatch(self, event: Event) -> None:
        followed = self._followed.get(event.run_id)
        if followed is not None:
            followed.last_seen = self.clock()
            followed.last_seq = max(followed.last_seq, event.seq)
        for sink in tuple(self._by_user.get(event.user, ())):
            sink.push(event)

    def follow(self, run_id: str, user: str, seq: int) -> None:
        """A local connection follows ``run_id``, having received up to ``seq``."""
        followed = self._followed.get(run_id)
        if followed is None:
            self._followed[run_id] = _Followed(user, 1, seq, self.clock())
        else:
            followed.followers += 1
            followed.last_seq = max(followed.last_seq, seq)

    def advance(self, run_id: str, seq: int) -> None:
        """Events up to ``seq`` were sent from the database (a resume): do not tail them again."""
        followed = self._followed.get(run_id)
        if followed is not None:
            followed.last_seq = max(followed.last_seq, seq)

    def unfollow(self, run_id: str) -> None:
        followed = self._followed.get(run_id)
        if followed is not None:
            followed.followers -= 1
            if followed.followers <= 0:
                del self._followed[run_id]

    def quiet_runs(self, *, local: Container[str], quiet_for: float) -> list[tuple[str, str, int]]:
        """Followed runs owned elsewhere with no event for ``quiet_for`` seconds:
        ``(run_id, user, last_seq)``."""
        now = self.clock()
        return [
            (run_id, f.user, f.last_seq)
            for run_id, f in self._followed.items()
            if run_id not in local and now - f.last_seen >= quiet_for
        ]


class RemoteRunTailer:
    """Polls the database for events of quiet remote runs and dispatches them locally.
    Connections drop what they already have, so a poll racing a live event is harmless."""

    def __init__(
        self,
        hub: Hub,
        store: EventStore,
        *,
        local: Container[str],
        interval: float,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.hub = hub
        self.store = store
        self.local = local
        self.interval = interval
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="agent-service-tailer")

    async def poll_once(self) -> int:
        sent = 0
        for run_id, user, last_seq in self.hub.quiet_runs(
            local=self.local, quiet_for=self.interval
        ):
            if self.metrics is not None:
                self.metrics.tail_polls.inc()
            for event in await asyncio.wait_for(
                self.store.events_after(run_id, last_seq, user=user), timeout=10
            ):
                self.hub.dispatch(event)
                sent += 1
        return sent

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except Exception as exc:  # a database hiccup must not end tailing for good
                logger.warning("polling remote runs failed: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
