"""The reference service on PostgreSQL (127.0.0.1:5432, db ``test``, a schema of its own)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from safeship.testing import scaled, wait_until_async

from ..examples.dbs import POSTGRES_URL
from .conftest_agent import agent_services, client  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

FIVE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


def test_runs_events_and_resume_on_postgresql(agent_services):  # noqa: F811
    database = agent_services.postgres()
    server = agent_services.start(database)

    async def scenario() -> str:
        async with client(server, "pg") as c:
            counted = await c.run("wordcount", "postgres keeps every event")
            assert counted.types == FIVE
            run_id = await c.start("slow", {"steps": 12, "delay": 0.05})
            await wait_until_async(lambda: c.runs[run_id].result.last_seq >= 3, within=10)
            c.drop()
            result = await c.wait(run_id, within=scaled(15))
            assert [e["seq"] for e in result.events] == list(range(1, 15))
            assert (c.stats.lost, c.stats.duplicates, c.stats.resumes) == (0, 0, 1)
            return run_id

    run_id = run(scenario())

    async def stored() -> list[tuple[int, str]]:
        engine = create_async_engine(
            POSTGRES_URL,
            connect_args={"server_settings": {"search_path": database["DATABASE_SCHEMA"]}},
        )
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT seq, type FROM agent_events WHERE run_id = :r ORDER BY seq"),
                    {"r": run_id},
                )
                return [tuple(row) for row in rows]
        finally:
            await engine.dispose()

    rows = run(stored())
    assert [seq for seq, _ in rows] == list(range(1, 15))
    assert rows[0][1] == "agent_started" and rows[-1][1] == "agent_completed"
