"""The Redis broker: run events and commands over one Redis pub/sub channel.

Every instance publishes the events of its own runs and subscribes to everybody's; it drops the
messages it published itself. Redis is on the side path only: runs hand events to the local
hub before they are queued here, so an outage never holds up local delivery.

During an outage (Redis down, or not answering within the timeout) the outage is logged once
and counted (``agent_service_redis_outages_total``, ``agent_service_redis_up``), events queued
for Redis are dropped and counted (``agent_service_redis_publish_dropped_total``), and both
loops retry with a capped backoff; publishing resumes when Redis answers again. Other
instances fill the gap from the database: their connections see a seq jump on the next event
and backfill it, and followed runs that go quiet are tailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .broker import Deliver, OnCommand, decode_message, encode_command, encode_event
from .errors import CacheUnavailable
from .metrics import ServiceMetrics
from .protocol import Event

__all__ = ["RedisBroker"]

logger = logging.getLogger("agent_service.redis")

_FAILURES = (RedisError, OSError, TimeoutError)
_BATCH = 256


def redis_where(url: str) -> str:
    """``host:port`` of a Redis URL, without credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class _Health:
    """Up/down state shared by the publish and subscribe loops: each outage is logged and
    counted once, however many events or retries it spans."""

    def __init__(self, where: str, metrics: ServiceMetrics | None) -> None:
        self.where = where
        self.metrics = metrics
        self.down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def ok(self) -> None:
        if self.down_since is not None:
            logger.warning(
                "Redis at %s is back after %.1fs: publishing resumed",
                self.where,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
        if self.metrics is not None:
            self.metrics.redis_up.set(1)

    def failed(self, exc: BaseException) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        logger.warning(
            "Redis at %s is unreachable (%s: %s): events still reach this instance's "
            "connections; other instances catch up from the database; retrying in the background",
            self.where,
            type(exc).__name__,
            exc,
        )
        if self.metrics is not None:
            self.metrics.redis_outages.inc()
            self.metrics.redis_up.set(0)


class RedisBroker:
    """Args:
    url: ``REDIS_URL``.
    instance: this instance's id, carried in every message to recognise our own.
    channel: the pub/sub channel (``AGENT_SERVICE_REDIS_CHANNEL``).
    timeout: bound on each Redis call.
    queue_size: events waiting for Redis beyond this are dropped (and counted).
    """

    name = "redis"

    def __init__(
        self,
        *,
        url: str,
        instance: str,
        channel: str = "agent_service",
        metrics: ServiceMetrics | None = None,
        timeout: float = 2.0,
        queue_size: int = 10_000,
        max_backoff: float = 2.0,
    ) -> None:
        self.url = url
        self.instance = instance
        self.channel = channel
        self.metrics = metrics
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.where = redis_where(url)
        self._health = _Health(self.where, metrics)
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._client: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._deliver: Deliver = lambda event: None
        self._on_command: OnCommand = lambda command: None

    async def start(self, deliver: Deliver, on_command: OnCommand, *, deadline: float) -> None:
        self._deliver, self._on_command = deliver, on_command
        self._client = Redis.from_url(
            self.url,
            socket_connect_timeout=min(deadline, self.timeout),
            socket_timeout=self.timeout,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),  # the loops below retry, with their own backoff
        )
        try:
            await asyncio.wait_for(self._client.ping(), deadline)
            self._tasks = [
                asyncio.create_task(self._publish_loop(), name="redis-publish"),
                asyncio.create_task(self._subscribe_loop(), name="redis-subscribe"),
            ]
            # Subscribed before ready: no event published after readiness is missed.
            await asyncio.wait_for(self._subscribed.wait(), deadline)
        except _FAILURES as exc:
            await self.close()
            raise CacheUnavailable(
                f"cannot reach Redis at {self.where} within {deadline:g}s: "
                f"{type(exc).__name__}: {exc}",
                hint="check REDIS_URL and that Redis is running and reachable; unset REDIS_URL "
                "to run one instance with the in-process broker",
            ) from exc
        self._health.ok()

    def publish(self, event: Event) -> None:
        self._enqueue(encode_event(event, self.instance))

    def forward(self, command: dict[str, Any]) -> bool:
        if self._health.down or not self._tasks:
            return False
        return self._enqueue(encode_command(command, self.instance))

    def _enqueue(self, payload: str) -> bool:
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            if self.metrics is not None:
                self.metrics.redis_dropped.inc()
            return False
        return True

    def status(self) -> dict[str, Any]:
        return {"broker": self.name, "redis": self.where, "up": not self._health.down}

    async def ping(self) -> bool:
        """For the readiness report (an optional check: Redis is not needed to serve)."""
        return not self._health.down

    # -- loops -----------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        assert self._client is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with asyncio.timeout(self.timeout):
                    pipe = self._client.pipeline(transaction=False)
                    for payload in batch:
                        pipe.publish(self.channel, payload)
                    await pipe.execute()
                self._health.ok()
            except _FAILURES as exc:
                self._health.failed(exc)
                self._count_dropped(len(batch))
                await self._wait_until_up()

    async def _wait_until_up(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            # Queued events are dropped rather than replayed late: the database has them.
            dropped = 0
            while not self._queue.empty():
                self._queue.get_nowait()
                dropped += 1
            self._count_dropped(dropped)
            try:
                await asyncio.wait_for(self._client.ping(), self.timeout)
            except _FAILURES:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self._health.ok()
            return

    def _count_dropped(self, n: int) -> None:
        if n and self.metrics is not None:
            self.metrics.redis_dropped.inc(n)

    async def _subscribe_loop(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout)
                self._subscribed.set()
                self._health.ok()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"])
            except _FAILURES as exc:
                self._health.failed(exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _receive(self, data: str | bytes) -> None:
        decoded = decode_message(data, own=self.instance)
        if decoded is None:
            return
        kind, body = decoded
        try:
            if isinstance(body, Event):
                if self.metrics is not None:
                    self.metrics.remote_events.inc()
                self._deliver(body)
            else:
                self._on_command(body)
        except Exception:
            logger.exception("handling a %s from Redis failed", kind)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2.0)
        self._tasks = []
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 2.0)
