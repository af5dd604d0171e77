"""The deploy state store: SQLite under ``<state_dir>/state.db``.

Several processes share it (a deploy, a ``status``, the next command after a crash), so it
runs in WAL mode with a busy timeout, and every write is one short transaction. Nothing here
ever holds a secret: revision environments are not stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import DeployError, TargetError

__all__ = ["DeployRow", "FrontRow", "RevisionRow", "StateStore"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, status TEXT NOT NULL,
    created REAL NOT NULL, app TEXT, source TEXT, snapshot TEXT, log TEXT,
    port INTEGER, pid INTEGER, pid_start INTEGER, owner_pid INTEGER, owner_start INTEGER,
    traffic_at REAL, stopped_at REAL, exit_code INTEGER,
    failure_phase TEXT, failure_error TEXT, failure_hint TEXT
);
CREATE TABLE IF NOT EXISTS front (
    id INTEGER PRIMARY KEY CHECK (id = 1), host TEXT, port INTEGER, pid INTEGER,
    pid_start INTEGER, control TEXT, active TEXT, updated REAL
);
CREATE TABLE IF NOT EXISTS audit_head (
    path TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deploys (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, pid INTEGER, pid_start INTEGER,
    status TEXT NOT NULL, started REAL NOT NULL, ended REAL, revision TEXT, previous TEXT,
    record TEXT NOT NULL DEFAULT '{}'
);
"""


@dataclass(frozen=True)
class RevisionRow:
    id: str
    seq: int
    status: str
    created: float
    app: str | None = None
    source: str | None = None
    snapshot: str | None = None
    log: str | None = None
    port: int | None = None
    pid: int | None = None
    pid_start: int | None = None
    owner_pid: int | None = None
    """The process that started it (the deploy); a dead owner means an interrupted deploy."""
    owner_start: int | None = None
    traffic_at: float | None = None
    """When it first got traffic; ``None`` if it never did."""
    stopped_at: float | None = None
    exit_code: int | None = None
    failure_phase: str | None = None
    failure_error: str | None = None
    failure_hint: str | None = None


@dataclass(frozen=True)
class FrontRow:
    id: int
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    pid_start: int | None = None
    control: str | None = None
    active: str | None = None
    """The revision the front sends new connections to (recorded once confirmed)."""
    updated: float | None = None


@dataclass(frozen=True)
class DeployRow:
    id: str
    seq: int
    status: str
    started: float
    pid: int | None = None
    pid_start: int | None = None
    ended: float | None = None
    revision: str | None = None
    previous: str | None = None
    record: str = "{}"

    @property
    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.record or "{}")
        return loaded


def _columns(row_type: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(row_type))


class StateStore:
    """Typed access to ``state.db``. Open one per process; close it when done."""

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise TargetError(
                f"cannot open the deploy state {self.path}: {exc}",
                hint="check that the state directory is writable and not on a network share",
            ) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so read-then-write sequences (id
        # allocation, the single-deploy check) cannot interleave across processes.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the audit log's anchor ------------------------------------------------------------

    def audit_head(self, path: str) -> tuple[int, str] | None:
        """``(seq, hash)`` of the last entry appended to the audit log at ``path``."""
        row = self._db.execute(
            "SELECT seq, hash FROM audit_head WHERE path = ?", (path,)
        ).fetchone()
        return (int(row["seq"]), str(row["hash"])) if row is not None else None

    def set_audit_head(self, path: str, seq: int, hash: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO audit_head (path, seq, hash) VALUES (?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET seq = excluded.seq, hash = excluded.hash "
                "WHERE excluded.seq > audit_head.seq",
                (path, seq, hash),
            )

    # -- revisions ------------------------------------------------------------------------

    def new_revision(self, *, created: float, **values: Any) -> RevisionRow:
        """Allocate the next id (``r1``, ``r2``, ...; never reused) and insert it as starting."""
        with self._write() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions").fetchone()[0]
            row = {"id": f"r{seq}", "seq": seq, "status": "starting", "created": created}
            row.update(self._checked(RevisionRow, values))
            db.execute(
                f"INSERT INTO revisions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        revision = self.revision(f"r{seq}")
        assert revision is not None
        return revision

    def update_revision(self, revision_id: str, **values: Any) -> RevisionRow:
        self._update("revisions", RevisionRow, revision_id, values)
        revision = self.revision(revision_id)
        assert revision is not None
        return revision

    def revision(self, revision_id: str) -> RevisionRow | None:
        found = self._db.execute("SELECT * FROM revisions WHERE id = ?", (revision_id,)).fetchone()
        return RevisionRow(**found) if found else None

    def revisions(self) -> list[RevisionRow]:
        rows = self._db.execute("SELECT * FROM revisions ORDER BY seq").fetchall()
        return [RevisionRow(**row) for row in rows]

    # -- front ----------------------------------------------------------------------------

    def front(self) -> FrontRow | None:
        found = self._db.execute("SELECT * FROM front WHERE id = 1").fetchone()
        return FrontRow(**found) if found else None

    def set_front(self, **values: Any) -> FrontRow:
        values = self._checked(FrontRow, values)
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO front (id) VALUES (1)")
            if values:
                assignments = ", ".join(f"{name} = ?" for name in values)
                db.execute(f"UPDATE front SET {assignments} WHERE id = 1", tuple(values.values()))
        front = self.front()
        assert front is not None
        return front

    # -- deploys --------------------------------------------------------------------------

    def begin_deploy(
        self,
        *,
        pid: int,
        pid_start: int | None,
        started: float,
        alive: Callable[[int, int | None], bool],
        **values: Any,
    ) -> DeployRow:
        """Record a running deploy, unless another one is running (its process is alive).

        Raises:
            DeployError: another deploy is in progress; names it and its pid.
        """
        with self._write() as db:
            for row in db.execute("SELECT * FROM deploys WHERE status = 'running'").fetchall():
                if alive(row["pid"], row["pid_start"]):
                    raise DeployError(
                        f"deploy {row['id']} (pid {row['pid']}) is still running",
                        hint="wait for it to finish, or stop it (Ctrl-C) and run the command again",
                    )
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM deploys").fetchone()[0]
            row_values = {
                "id": f"d{seq}",
                "seq": seq,
                "pid": pid,
                "pid_start": pid_start,
                "status": "running",
                "started": started,
                **self._checked(DeployRow, values),
            }
            db.execute(
                f"INSERT INTO deploys ({', '.join(row_values)}) "
                f"VALUES ({', '.join('?' * len(row_values))})",
                tuple(row_values.values()),
            )
        deploy = self.deploy(f"d{seq}")
        assert deploy is not None
        return deploy

    def update_deploy(
        self, deploy_id: str, *, record: dict[str, Any] | None = None, **values: Any
    ) -> DeployRow:
        if record is not None:
            values["record"] = json.dumps(record, default=str, sort_keys=True)
        self._update("deploys", DeployRow, deploy_id, values)
        deploy = self.deploy(deploy_id)
        assert deploy is not None
        return deploy

    def deploy(self, deploy_id: str) -> DeployRow | None:
        found = self._db.execute("SELECT * FROM deploys WHERE id = ?", (deploy_id,)).fetchone()
        return DeployRow(**found) if found else None

    def deploys(self, limit: int | None = None) -> list[DeployRow]:
        """Most recent first."""
        query = "SELECT * FROM deploys ORDER BY seq DESC"
        rows = self._db.execute(query + " LIMIT ?", (limit,)) if limit else self._db.execute(query)
        return [DeployRow(**row) for row in rows.fetchall()]

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _checked(row_type: type, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - _columns(row_type) - {"id", "seq"}
        if unknown or {"id", "seq"} & set(values):
            raise ValueError(f"unknown or read-only {row_type.__name__} fields: {sorted(values)}")
        return values

    def _update(self, table: str, row_type: type, key: str, values: dict[str, Any]) -> None:
        values = self._checked(row_type, values)
        if not values:
            return
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE {table} SET {assignments} WHERE id = ?", (*values.values(), key)
            )
            if cursor.rowcount != 1:
                raise TargetError(f"no {table[:-1]} {key!r} in {self.path}")
