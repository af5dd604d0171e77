"""Open WebSocket connections: counts for the limits, and closing them all for a drain."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Connection", "ConnectionRegistry"]

logger = logging.getLogger("safeship.connections")
_ids = itertools.count(1)


@dataclass(eq=False)
class Connection:
    subject: str
    close: Callable[[int, str], Awaitable[None]]
    id: int = field(default_factory=lambda: next(_ids))


class ConnectionRegistry:
    """Tracks the open connections of one process. Not thread-safe: one event loop owns it."""

    def __init__(self) -> None:
        self._open: dict[int, Connection] = {}
        self._per_user: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def count_for(self, subject: str) -> int:
        return self._per_user.get(subject, 0)

    def add(self, connection: Connection) -> None:
        self._open[connection.id] = connection
        self._per_user[connection.subject] = self._per_user.get(connection.subject, 0) + 1

    def remove(self, connection: Connection) -> None:
        if self._open.pop(connection.id, None) is None:
            return
        remaining = self._per_user[connection.subject] - 1
        if remaining:
            self._per_user[connection.subject] = remaining
        else:
            del self._per_user[connection.subject]

    async def close_all(self, code: int, reason: str, *, window: float, deadline: float) -> int:
        """Close every open connection with ``code``, spread evenly over ``window`` seconds so
        that clients do not all reconnect in the same instant.

        Returns how many were asked to close. Never waits longer than ``deadline`` seconds.
        """
        targets = list(self._open.values())
        if not targets:
            return 0
        interval = window / len(targets) if window > 0 else 0.0
        logger.info(
            "draining %d connection(s) with close code %d over %.1fs", len(targets), code, window
        )

        async def close_one(index: int, connection: Connection) -> None:
            if interval:
                await asyncio.sleep(index * interval)
            if connection.id in self._open:
                await connection.close(code, reason)

        tasks = [asyncio.ensure_future(close_one(i, c)) for i, c in enumerate(targets)]
        done, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.warning("closing a connection failed: %r", task.exception())
        return len(targets)
