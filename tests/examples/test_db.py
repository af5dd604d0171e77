from __future__ import annotations

import asyncio
import os
import sqlite3
import warnings

import pytest
from agent_service.db import DatabaseSessionManager, SessionManager, describe_url
from agent_service.errors import DatabaseUnavailable, SchemaMismatch
from sqlalchemy import text

from safeship.testing import free_port, scaled

from .dbs import POSTGRES_URL, admin_sql, database, unique_schema  # noqa: F401  (fixture)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


def test_connect_creates_a_schema_that_checks_out(database):  # noqa: F811
    url, schema = database

    async def scenario() -> list[str]:
        sessions = SessionManager(url, schema=schema)
        await sessions.connect(deadline=10)
        try:
            # Connecting again finds the tables and changes nothing.
            again = SessionManager(url, schema=schema)
            await again.connect(deadline=10)
            await again.close()
            async with sessions.session() as session:
                assert (await session.execute(text("SELECT 1"))).scalar() == 1
            await sessions.ping()
            return await sessions.check_schema()
        finally:
            await sessions.close()

    assert run(scenario()) == []


def test_instances_started_together_on_an_empty_database_all_connect(database):  # noqa: F811
    """Replicas that start at once race to create the same tables: the losers of the race
    wait for the winner's tables instead of failing startup."""
    url, schema = database

    async def scenario() -> list[str | None]:
        managers = [SessionManager(url, schema=schema) for _ in range(8)]

        async def connect(manager: SessionManager) -> str | None:
            try:
                await manager.connect(deadline=20)
                return None
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            finally:
                await manager.close()

        return await asyncio.gather(*(connect(manager) for manager in managers))

    assert run(scenario()) == [None] * 8


@pytest.mark.e2e
def test_a_database_that_refuses_to_create_the_tables_says_so_at_once():
    """A refusal (here: a role without CREATE) is not a race to wait out: the error names it."""
    role = "agent_test_reader_" + os.urandom(4).hex()
    admin_sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = POSTGRES_URL.replace("postgres@", f"{role}@", 1)

        async def scenario() -> DatabaseUnavailable:
            sessions = SessionManager(url, schema=unique_schema())
            with pytest.raises(DatabaseUnavailable) as caught:
                await sessions.connect(deadline=20)
            assert sessions._engine is None
            return caught.value

        error = run(scenario())
    finally:
        admin_sql(f'DROP ROLE IF EXISTS "{role}"')
    assert "refused to create this version's tables" in str(error)
    assert "permission denied" in str(error)
    assert "within" not in str(error), "failed at once, not at the deadline"
    assert "create tables" in error.hint


def test_an_older_schema_is_refused_naming_table_and_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE agent_runs (id VARCHAR(40) PRIMARY KEY, user_id VARCHAR(200))")

    async def scenario() -> None:
        sessions = SessionManager(f"sqlite+aiosqlite:///{path}")
        await sessions.connect(deadline=10)

    with pytest.raises(SchemaMismatch) as exc:
        run(scenario())
    message = str(exc.value)
    assert "table agent_runs has no column agent" in message
    assert str(path) in message
    assert "never alters existing ones" in (exc.value.hint or "")


def test_a_database_that_is_down_names_the_host_within_the_deadline():
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://postgres:hunter2-password@127.0.0.1:{port}/test"

    async def scenario() -> None:
        await SessionManager(url).connect(deadline=3)

    with pytest.raises(DatabaseUnavailable) as exc:
        run(scenario())
    message = str(exc.value)
    assert f"127.0.0.1:{port}" in message and "'test'" in message
    assert "hunter2" not in message  # never the password
    assert "DATABASE_URL" in (exc.value.hint or "")


def test_describe_url_hides_credentials():
    assert describe_url("postgresql+asyncpg://u:secret@db.internal:6543/app") == (
        "db.internal:6543 (database 'app')"
    )
    assert describe_url("sqlite+aiosqlite:///x/y.db") == "SQLite file x/y.db"


def test_the_legacy_alias_is_deprecated_but_still_a_session_manager(tmp_path):
    with pytest.warns(DeprecationWarning, match="import SessionManager from agent_service.db"):
        legacy = DatabaseSessionManager(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert isinstance(legacy, SessionManager)
    # Naming it (annotations, casts) is silent: only creating one warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert issubclass(DatabaseSessionManager, SessionManager)


def test_a_refused_schema_leaves_no_engine_open(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE agent_runs (id VARCHAR(40) PRIMARY KEY, user_id VARCHAR(200))")
    sessions = SessionManager(f"sqlite+aiosqlite:///{path}")

    async def scenario() -> None:
        with pytest.raises(SchemaMismatch):
            await sessions.connect(deadline=10)

    run(scenario())
    assert sessions._engine is None
