from __future__ import annotations

import asyncio

import pytest
from agent_service.db import SessionManager
from agent_service.protocol import Event
from agent_service.store import EventStore
from sqlalchemy.exc import IntegrityError

from safeship.testing import scaled

from .dbs import database  # noqa: F401  (fixture)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


async def with_store(url, schema, scenario):
    sessions = SessionManager(url, schema=schema)
    await sessions.connect(deadline=10)
    try:
        return await scenario(EventStore(sessions))
    finally:
        await sessions.close()


def test_runs_and_events_with_per_run_sequence_numbers(database):  # noqa: F811
    url, schema = database

    async def scenario(store: EventStore) -> None:
        run_id, created = await store.create_run(
            user="alice", agent="echo", request_id="r1", input={"x": 1}, instance="i", now=10.0
        )
        assert created and run_id.startswith("run_")
        # The same request again is the same run: starts are idempotent.
        assert await store.create_run(
            user="alice", agent="echo", request_id="r1", input=None, instance="j", now=11.0
        ) == (run_id, False)
        other, created = await store.create_run(
            user="bob", agent="echo", request_id="r1", input=None, instance="i", now=12.0
        )
        assert created and other != run_id

        for seq, kind in enumerate(["agent_started", "agent_thinking", "agent_completed"], 1):
            status = "completed" if kind == "agent_completed" else None
            await store.append(
                Event(
                    run_id, seq, kind, 10.0 + seq, {"n": seq}, request_id="r1" if seq == 1 else None
                ),
                status=status,
            )
        with pytest.raises(IntegrityError):  # (run_id, seq) is unique
            await store.append(Event(run_id, 2, "agent_thinking", 20.0, {}))

        info = await store.get_run(run_id)
        assert info is not None
        assert (info.user, info.agent, info.status, info.latest_seq) == (
            "alice",
            "echo",
            "completed",
            3,
        )
        assert info.finished
        assert (await store.get_run(other)).latest_seq == 0  # type: ignore[union-attr]
        assert await store.get_run("run_missing") is None

        events = await store.events_after(run_id, 0, user="alice")
        assert [(e.seq, e.type, e.payload) for e in events] == [
            (1, "agent_started", {"n": 1}),
            (2, "agent_thinking", {"n": 2}),
            (3, "agent_completed", {"n": 3}),
        ]
        assert events[0].request_id == "r1" and events[0].user == "alice"
        assert [e.seq for e in await store.events_after(run_id, 1, before=3)] == [2]
        assert await store.events_after(run_id, 3) == []

        recent = await store.recent_runs("alice")
        assert [r["run_id"] for r in recent] == [run_id]
        await store.mark_interrupted(other, 13.0)
        assert (await store.get_run(other)).status == "interrupted"  # type: ignore[union-attr]

    run(with_store(url, schema, scenario))
