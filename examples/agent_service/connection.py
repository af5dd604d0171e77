"""One client connection on ``/ws``: parse its messages, answer them, send its runs' events.

Two paths write run events to the socket, under one lock so they never interleave: the live
path (events pushed by the hub, sent by a pump task that exists only while events wait, so an
idle connection costs no task) and the replay path of ``resume`` (events read from the
database). Both go through :class:`~agent_service.streams.RunCursors`, which drops what was
already sent and asks for gaps to be filled from the database.

Order of a resume, which is what makes it race-free: the connection is subscribed to live
events from the moment it opens; ``resume`` then reads the database, sends what is newer than
the client's ``last_seq``, and only then lets the pump go on, which skips what the replay sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .hub import Hub
from .metrics import ServiceMetrics
from .protocol import (
    ErrorCode,
    Event,
    Ping,
    ProtocolError,
    Resume,
    StartAgent,
    UserMessage,
    check_resume,
    check_start,
    connection_established,
    error_message,
    message_accepted,
    parse_client_message,
    pong,
    resumed,
)
from .runs import RunManager
from .settings import Settings
from .store import EventStore
from .streams import RunCursors, Step

__all__ = ["MAX_PENDING", "ClientConnection", "Services"]

logger = logging.getLogger("agent_service.connection")

MAX_PENDING = 2_000
"""Live events waiting for a slow client beyond this close it with 1013; it resumes."""
_ids = itertools.count(1)
_GONE = (WebSocketDisconnect, OSError, RuntimeError)
_closing: set[asyncio.Task[None]] = set()


@dataclass
class Services:
    settings: Settings
    store: EventStore
    runs: RunManager
    hub: Hub
    instance: str
    metrics: ServiceMetrics | None = None


class ClientConnection:
    __slots__ = ("_lock", "_pending", "_pump", "closed", "cursors", "id", "services", "user", "ws")

    def __init__(self, websocket: WebSocket, user: str, services: Services) -> None:
        self.ws = websocket
        self.user = user
        self.services = services
        self.id = f"{services.instance}-{next(_ids)}"
        self.cursors = RunCursors()
        self.closed = False
        self._lock = asyncio.Lock()
        self._pending: collections.deque[Event] | None = None
        self._pump: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        services = self.services
        await self.ws.accept()
        # Subscribed before anything else: no event of a new run can slip past.
        services.hub.add(self)
        try:
            await self._send(
                connection_established(
                    connection_id=self.id,
                    user=self.user,
                    instance=services.instance,
                    agents=sorted(services.runs.registry.names),
                    max_message_bytes=services.settings.max_message_bytes,
                    now=time.time(),
                )
            )
            while not self.closed:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                await self._handle(text if text is not None else message.get("bytes"))
        except _GONE:
            pass
        finally:
            self.closed = True
            services.hub.remove(self)
            for run_id in self.cursors.runs():
                services.hub.unfollow(run_id)
            if self._pump is not None:
                self._pump.cancel()

    # -- client messages -------------------------------------------------------------------

    async def _handle(self, data: str | bytes | None) -> None:
        msg = parse_client_message(data, max_bytes=self.services.settings.max_message_bytes)
        request_id = getattr(msg, "request_id", None)
        try:
            if isinstance(msg, ProtocolError):
                await self._refuse(msg)
            elif isinstance(msg, Ping):
                await self._send(pong(msg.request_id, now=time.time()))
            elif isinstance(msg, StartAgent):
                await self._start(msg)
            elif isinstance(msg, Resume):
                await self._resume(msg)
            elif isinstance(msg, UserMessage):
                await self._user_message(msg)
        except _GONE:
            raise
        except Exception as exc:
            error_id = os.urandom(4).hex()
            logger.error(
                "handling a %s failed (error id %s)", type(msg).__name__, error_id, exc_info=exc
            )
            await self._refuse(
                ProtocolError(
                    ErrorCode.INTERNAL_ERROR,
                    f"the server could not handle this message (error id {error_id}): retry",
                    request_id,
                )
            )

    async def _refuse(self, error: ProtocolError) -> None:
        if self.services.metrics is not None:
            self.services.metrics.protocol_errors.labels(str(error.code)).inc()
        await self._send(error_message(error))

    async def _start(self, msg: StartAgent) -> None:
        runs = self.services.runs
        error = check_start(
            msg,
            agents=runs.registry.names,
            active_runs=runs.active_for(self.user),
            max_runs=self.services.settings.max_runs_per_user,
        )
        if error is not None:
            await self._refuse(error)
            return
        run_id, created = await runs.start(self.user, msg)
        if not created:
            # The same request again (a retry after a reconnect): replay that run from the start.
            await self._resume(Resume(run_id, 0, msg.request_id))

    async def _resume(self, msg: Resume) -> None:
        store = self.services.store
        run = await store.get_run(msg.run_id)
        error = check_resume(
            msg,
            owner=run.user if run is not None else None,
            user=self.user,
            latest_seq=run.latest_seq if run is not None else 0,
        )
        if error is not None or run is None:
            await self._refuse(error or ProtocolError(ErrorCode.UNKNOWN_RUN, "no such run"))
            return
        if self.services.metrics is not None:
            self.services.metrics.resumes.inc()
        async with self._lock:
            if self.cursors.resume(msg.run_id, msg.last_seq):
                self.services.hub.follow(msg.run_id, self.user, msg.last_seq)
            events = await store.events_after(msg.run_id, msg.last_seq, user=self.user)
            status = run.status
            for event in events:
                await self._send_event(event)
                if event.terminal:
                    status = _final_status(event)
            if status != "running" and msg.run_id in self.cursors:
                # Ended before this resume and nothing left to send: stop following.
                self.cursors.forget(msg.run_id)
                self.services.hub.unfollow(msg.run_id)
            latest = events[-1].seq if events else msg.last_seq
            self.services.hub.advance(msg.run_id, latest)
            await self._send(resumed(msg, replayed=len(events), latest_seq=latest, status=status))

    async def _user_message(self, msg: UserMessage) -> None:
        error = await self.services.runs.post_message(self.user, msg)
        if error is not None:
            await self._refuse(error)
        else:
            await self._send(message_accepted(msg))

    # -- live events -----------------------------------------------------------------------

    def push(self, event: Event) -> None:
        """Called by the hub for every event of this user; never blocks."""
        if self.closed:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = collections.deque()
        if len(pending) >= MAX_PENDING:
            self.closed = True
            task = asyncio.create_task(self._close_slow())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
            return
        pending.append(event)
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump())

    async def _run_pump(self) -> None:
        pending = self._pending
        try:
            while pending:
                event = pending.popleft()
                async with self._lock:
                    await self._deliver_live(event)
        except _GONE:
            self.closed = True
        finally:
            self._pump = None
            self._pending = None

    async def _deliver_live(self, event: Event) -> None:
        delivery = self.cursors.on_live(event.run_id, event.seq)
        if delivery.step is Step.SKIP:
            return
        if delivery.new:
            self.services.hub.follow(event.run_id, self.user, 0)
        if delivery.step is Step.BACKFILL:
            missed = await self.services.store.events_after(
                event.run_id, delivery.after, before=event.seq, user=self.user
            )
            if self.services.metrics is not None:
                self.services.metrics.backfilled.inc(len(missed))
            for old in missed:
                await self._send_event(old)
        await self._send_event(event)

    async def _send_event(self, event: Event) -> None:
        await self.ws.send_text(event.text)
        if self.cursors.sent(event.run_id, event.seq, terminal=event.terminal):
            self.services.hub.unfollow(event.run_id)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message, separators=(",", ":")))

    async def _close_slow(self) -> None:
        logger.warning("closing a connection of %s: over %d events behind", self.user, MAX_PENDING)
        with contextlib.suppress(*_GONE):
            await self.ws.close(code=1013, reason="too far behind: reconnect and resume")


def _final_status(event: Event) -> str:
    if event.type == "agent_completed":
        return "completed"
    return "interrupted" if event.payload.get("code") == "interrupted" else "failed"
