"""Runs and their events in the database: the one source of truth for resume.

Every event is written here before anyone is told about it, so whatever a client has seen can
be replayed to it later, from any instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .db import EventRow, RunRow, SessionManager
from .protocol import Event

__all__ = ["EventStore", "EventWriter", "RunInfo", "new_run_id"]

logger = logging.getLogger("agent_service.store")

_runs = cast(Table, RunRow.__table__)
_events = cast(Table, EventRow.__table__)


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    user: str
    agent: str
    status: str
    latest_seq: int
    request_id: str | None = None
    created_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.status != "running"


class EventStore:
    """Queries on top of a connected :class:`SessionManager`. Hot paths use SQLAlchemy Core on
    the engine (one short transaction per event); the rest uses ORM sessions."""

    def __init__(self, sessions: SessionManager) -> None:
        self.sessions = sessions

    async def create_run(
        self,
        *,
        user: str,
        agent: str,
        request_id: str,
        input: Any,
        instance: str,
        now: float,
    ) -> tuple[str, bool]:
        """Insert a run. Returns ``(run_id, created)``; a second ``start_agent`` with the same
        ``request_id`` from the same user (a client retrying after a reconnect) gets the
        existing run and ``created=False``: starts are idempotent."""
        existing = await self.run_for_request(user, request_id)
        if existing is not None:
            return existing, False
        run_id = new_run_id()
        try:
            async with self.sessions.engine.begin() as conn:
                await conn.execute(
                    insert(_runs).values(
                        id=run_id,
                        user_id=user,
                        agent=agent,
                        request_id=request_id,
                        status="running",
                        input=input,
                        instance=instance,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            # Lost a race with the same request on another connection: that run wins.
            existing = await self.run_for_request(user, request_id)
            if existing is None:
                raise
            return existing, False
        return run_id, True

    async def run_for_request(self, user: str, request_id: str) -> str | None:
        async with self.sessions.engine.connect() as conn:
            return (
                await conn.execute(
                    select(_runs.c.id).where(
                        _runs.c.user_id == user, _runs.c.request_id == request_id
                    )
                )
            ).scalar_one_or_none()

    async def append(self, event: Event, *, status: str | None = None) -> None:
        """Store one event; with ``status``, also end the run, in the same transaction."""
        await self.append_many([(event, status)])

    async def append_many(self, items: list[tuple[Event, str | None]]) -> None:
        """Store events (of any runs) in one transaction; ``status`` ends that event's run."""
        async with self.sessions.engine.begin() as conn:
            await conn.execute(
                insert(_events),
                [
                    {
                        "run_id": event.run_id,
                        "seq": event.seq,
                        "type": event.type,
                        "payload": event.payload,
                        "request_id": event.request_id,
                        "created_at": event.timestamp,
                    }
                    for event, _ in items
                ],
            )
            for event, status in items:
                if status is not None:
                    await conn.execute(
                        update(_runs)
                        .where(_runs.c.id == event.run_id)
                        .values(status=status, updated_at=event.timestamp)
                    )

    async def get_run(self, run_id: str) -> RunInfo | None:
        latest = (
            select(func.coalesce(func.max(_events.c.seq), 0))
            .where(_events.c.run_id == _runs.c.id)
            .scalar_subquery()
        )
        query = select(
            _runs.c.id,
            _runs.c.user_id,
            _runs.c.agent,
            _runs.c.status,
            latest,
            _runs.c.request_id,
            _runs.c.created_at,
        ).where(_runs.c.id == run_id)
        async with self.sessions.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return RunInfo(
            run_id=row[0],
            user=row[1],
            agent=row[2],
            status=row[3],
            latest_seq=int(row[4] or 0),
            request_id=row[5],
            created_at=row[6],
        )

    async def events_after(
        self, run_id: str, after: int, *, before: int | None = None, user: str = ""
    ) -> list[Event]:
        """Events of ``run_id`` with ``after < seq`` (and ``seq < before``), in seq order."""
        query = select(
            _events.c.seq,
            _events.c.type,
            _events.c.created_at,
            _events.c.payload,
            _events.c.request_id,
        ).where(_events.c.run_id == run_id, _events.c.seq > after)
        if before is not None:
            query = query.where(_events.c.seq < before)
        async with self.sessions.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(_events.c.seq))).all()
        return [
            Event(run_id, seq, kind, ts, payload or {}, user=user, request_id=request_id)
            for seq, kind, ts, payload, request_id in rows
        ]

    async def recent_runs(self, user: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """The user's latest runs, newest first (used by the ``history`` agent)."""
        async with self.sessions.session() as session:
            rows = (
                await session.execute(
                    select(RunRow)
                    .where(RunRow.user_id == user)
                    .order_by(RunRow.created_at.desc())
                    .limit(limit)
                )
            ).scalars()
            return [
                {"run_id": r.id, "agent": r.agent, "status": r.status, "created_at": r.created_at}
                for r in rows
            ]

    async def mark_interrupted(self, run_id: str, now: float) -> None:
        async with self.sessions.engine.begin() as conn:
            await conn.execute(
                update(_runs)
                .where(_runs.c.id == run_id, _runs.c.status == "running")
                .values(status="interrupted", updated_at=now)
            )


class EventWriter:
    """Group commit: the events that runs emit at the same moment are written in one
    transaction, and each ``append`` returns once its own event is stored.

    One transaction per event caps a busy instance at a few hundred events per second (a
    commit costs round trips, and an fsync without WAL); batching keeps the rule "stored
    before sent" and divides that cost by the number of concurrent runs. Order within a run
    is kept by the run itself, which has one event in flight at a time.
    """

    def __init__(self, store: EventStore, *, max_batch: int = 500) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Event, str | None, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def append(self, event: Event, *, status: str | None = None) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_loop(), name="agent-service-writer")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, status, future))
        await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.store.append_many([(event, status) for event, status, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _resolve(batch[0][2], exc)
                    continue
                # One bad event must not fail its neighbours: write them one by one.
                logger.warning(
                    "writing %d events failed (%s): retrying one by one", len(batch), exc
                )
                for event, status, future in batch:
                    try:
                        await self.store.append_many([(event, status)])
                    except Exception as one_exc:
                        _resolve(future, one_exc)
                    else:
                        _resolve(future, None)
            else:
                for _, _, future in batch:
                    _resolve(future, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        while not self._queue.empty():
            _resolve(self._queue.get_nowait()[2], RuntimeError("the event writer is closed"))


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
