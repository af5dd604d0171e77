"""The database: tables, and ``SessionManager`` on SQLAlchemy 2 async.

``DATABASE_URL`` picks the engine: SQLite through aiosqlite by default (a file under
``.safeship/``), PostgreSQL through asyncpg. On connect the schema is created when missing and
then checked, so a database holding an older schema fails the ``database`` phase with the
table and column named, instead of failing on the first query.

Runs and their events: every event has a per-run sequence number, and ``(run_id, seq)`` is the
primary key of ``agent_events``, so the database itself refuses a duplicate or a reordered seq.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typing_extensions import deprecated

from .errors import DatabaseUnavailable, SchemaMismatch

__all__ = [
    "Base",
    "DatabaseSessionManager",
    "EventRow",
    "RunRow",
    "SessionManager",
    "describe_url",
]


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "agent_runs"
    __table_args__ = (UniqueConstraint("user_id", "request_id", name="uq_agent_runs_user_request"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    agent: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    instance: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class EventRow(Base):
    __tablename__ = "agent_events"

    run_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("agent_runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[Any] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


def describe_url(url: str | URL) -> str:
    """Where a database URL points, without credentials: ``host:port/db`` or the file path."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    port = parsed.port or 5432
    return f"{parsed.host or 'localhost'}:{port} (database {parsed.database!r})"


class SessionManager:
    """Owns the async engine and hands out sessions.

    Args:
        url: a ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URL.
        schema: PostgreSQL schema to work in (created if missing); ``None``: the search path.
        timeout: bound on connecting and on each statement, in seconds.

    ``async with manager.session() as session`` gives an ``AsyncSession`` that commits on
    success and rolls back on error.
    """

    def __init__(self, url: str, *, schema: str | None = None, timeout: float = 10.0) -> None:
        self.url = make_url(url)
        self.schema = schema
        self.timeout = timeout
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._last_create_error: DBAPIError | None = None

    @property
    def where(self) -> str:
        return describe_url(self.url)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("SessionManager.connect() has not run: the database is not open")
        return self._engine

    async def connect(self, deadline: float | None = None) -> None:
        """Open the engine, create missing tables and check the schema, within ``deadline``
        seconds (default: ``timeout``).

        Raises:
            DatabaseUnavailable: not reachable in time; names the host or file.
            SchemaMismatch: existing tables lack a column or key this version needs.
        """
        deadline = self.timeout if deadline is None else deadline
        self._last_create_error = None
        self._engine = self._create_engine(deadline)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        try:
            async with asyncio.timeout(deadline):
                await self._create_schema()
        except (SchemaMismatch, DatabaseUnavailable):
            await self.close()  # a failed connect leaves no pool (nor aiosqlite thread) behind
            raise
        except TimeoutError as exc:
            await self.close()
            last = self._last_create_error
            raise DatabaseUnavailable(
                f"no answer from the database at {self.where} within {deadline:g}s"
                + (f" (creating the tables last failed with: {_root(last)})" if last else ""),
                hint="check DATABASE_URL and that the database is running and reachable "
                "from this host",
            ) from exc
        except (OSError, DBAPIError) as exc:
            await self.close()
            raise DatabaseUnavailable(
                f"cannot reach the database at {self.where}: {_root(exc)}",
                hint="check DATABASE_URL and that the database is running and accepts "
                "connections from this host",
            ) from exc

    def _create_engine(self, connect_timeout: float) -> AsyncEngine:
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(self.url, connect_args={"timeout": self.timeout})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        connect_args: dict[str, Any] = {
            "timeout": connect_timeout,
            "command_timeout": self.timeout,
        }
        if self.schema:
            connect_args["server_settings"] = {"search_path": self.schema}
        return create_async_engine(
            self.url, connect_args=connect_args, pool_timeout=self.timeout, pool_pre_ping=True
        )

    async def _create_schema(self) -> None:
        while True:
            try:
                if self.schema and not self.is_sqlite:
                    async with self.engine.begin() as conn:
                        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                async with self.engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)
                create_error: DBAPIError | None = None
            except DBAPIError as exc:
                # Another instance may be creating the same schema or tables (replicas started
                # together on one database; PostgreSQL's IF NOT EXISTS does not cover a
                # concurrent CREATE): the schema check below tells that from a real failure.
                if not _lost_a_create_race(exc):
                    raise DatabaseUnavailable(
                        f"the database at {self.where} refused to create this version's "
                        f"tables: {_root(exc)}",
                        hint="let this service's database user create tables in its schema, "
                        "or create the tables beforehand",
                    ) from exc
                create_error = exc
            problems = await self.check_schema()
            if not problems:
                return
            if create_error is None:
                raise SchemaMismatch(
                    f"the database at {self.where} has an incompatible schema: "
                    f"{'; '.join(problems)}",
                    hint="this service creates missing tables but never alters existing ones: "
                    "migrate the tables, or point DATABASE_URL at an empty database",
                )
            # Our CREATE lost a race that the other instance has not committed yet: try again
            # until it has, within connect()'s deadline (which reports the last error).
            self._last_create_error = create_error
            await asyncio.sleep(0.05)

    async def check_schema(self) -> list[str]:
        """What the database lacks compared with the tables of this version (empty: all good)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_schema_problems)

    async def ping(self) -> None:
        async with asyncio.timeout(self.timeout), self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncGenerator[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("SessionManager.connect() has not run: the database is not open")
        async with self._sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine, self._sessions = self._engine, None, None
            await engine.dispose()


@deprecated(
    "DatabaseSessionManager is the old name of SessionManager: "
    "import SessionManager from agent_service.db instead"
)
class DatabaseSessionManager(SessionManager):
    """Deprecated alias of :class:`SessionManager` (PEP 702), kept for old imports.
    ``safeship migrate --rename agent_service.db.DatabaseSessionManager=agent_service.db.SessionManager``
    rewrites them."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets several processes (two instances on one file) read while one writes;
    # synchronous=NORMAL skips an fsync per event commit, which WAL makes safe against
    # corruption (a power cut may lose the last commits, not the file).
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    ):
        cursor.execute(pragma)
    cursor.close()


def _schema_problems(conn: Connection) -> list[str]:
    inspector = inspect(conn)
    problems = []
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            problems.append(f"table {table.name} is missing")
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        problems += [
            f"table {table.name} has no column {column.name}"
            for column in table.columns
            if column.name not in present
        ]
        expected_key = [column.name for column in table.primary_key.columns]
        actual_key = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
        if sorted(actual_key) != sorted(expected_key):
            problems.append(
                f"table {table.name} has primary key ({', '.join(actual_key)}), "
                f"expected ({', '.join(expected_key)})"
            )
    return problems


def _lost_a_create_race(exc: DBAPIError) -> bool:
    """Whether a failed CREATE looks like another instance creating the same thing: a
    duplicate in PostgreSQL's catalog, or a locked SQLite file."""
    message = str(exc.orig if exc.orig is not None else exc).lower()
    return isinstance(exc, IntegrityError) or any(
        sign in message for sign in ("already exists", "database is locked", "database is busy")
    )


def _root(exc: BaseException) -> str:
    """The innermost error, as ``Type: message``: what the driver actually said."""
    for _ in range(10):
        inner = exc.__cause__ or getattr(exc, "orig", None)
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
