"""Database URLs for the tests: a SQLite file, and the real PostgreSQL on 127.0.0.1:5432 (db
``test``) in a schema of its own, dropped afterwards."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def unique_schema() -> str:
    return "agent_test_" + os.urandom(5).hex()


def admin_sql(statement: str) -> None:
    """Run one statement as the PostgreSQL superuser, in its own transaction."""

    async def execute() -> None:
        engine = create_async_engine(POSTGRES_URL, connect_args={"timeout": 5})
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(asyncio.wait_for(execute(), 15))


def drop_schema(schema: str) -> None:
    admin_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """``(url, schema)`` for each engine (the PostgreSQL case is marked ``e2e``)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/runs.db", None
        return
    schema = unique_schema()
    try:
        yield POSTGRES_URL, schema
    finally:
        drop_schema(schema)
