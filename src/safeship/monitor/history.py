"""The monitor's history: every probe and every incident, in SQLite under the state directory
(``<state_dir>/monitor.db``), bounded by age.

WAL mode with a busy timeout, one short transaction per write, like the deploy state store,
so ``diagnose`` and a second monitor can read while one writes. No secret is ever stored:
samples hold verdicts and timings only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import TargetError
from .probing import Sample

__all__ = ["History"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS probes (
    at REAL NOT NULL, key TEXT NOT NULL, env TEXT NOT NULL, revision TEXT,
    category TEXT NOT NULL, kind TEXT, code INTEGER, detail TEXT,
    handshake_ms REAL, total_ms REAL, sample TEXT
);
CREATE INDEX IF NOT EXISTS probes_key_at ON probes (key, at);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, env TEXT NOT NULL,
    revision TEXT, class TEXT NOT NULL, opened REAL NOT NULL, resolved REAL, detail TEXT
);
CREATE INDEX IF NOT EXISTS incidents_key ON incidents (key, resolved);
"""


class History:
    def __init__(self, path: Path | str, *, max_age: float, busy_timeout: float = 5.0) -> None:
        """Raises ``TargetError`` when the database cannot be opened."""
        self.path = Path(path)
        self.max_age = max_age
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # History, not state: a power cut may lose the last probes, never corrupt the file;
            # an fsync per probe would cost more CPU than the probe.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise TargetError(
                f"cannot open the monitor history {self.path}: {exc}",
                hint="check that the state directory ([deploy] state_dir) is writable",
            ) from None
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(self, sample: Sample) -> None:
        ep = sample.endpoint
        with self._write() as db:
            db.execute(
                "INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sample.at, ep.key, ep.env, ep.revision, sample.category, sample.kind,
                    sample.code, sample.detail, sample.handshake_ms, sample.total_ms,
                    # The whole sample (every check's verdict and timings) only for failures:
                    # at 1 s, passing samples would make the file grow by GBs a day.
                    None if sample.ok else json.dumps(sample.as_dict()),
                ),
            )  # fmt: skip

    def open_incident(
        self, key: str, env: str, revision: str | None, check: str, at: float, detail: str
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO incidents (key, env, revision, class, opened, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, env, revision, check, at, detail),
            )

    def resolve_incident(self, key: str, check: str, at: float) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE incidents SET resolved = ? WHERE key = ? AND class = ? AND resolved IS NULL",
                (at, key, check),
            )

    def prune(self, now: float) -> int:
        """Delete what is older than ``max_age``; returns the number of probes deleted."""
        cutoff = now - self.max_age
        with self._write() as db:
            deleted = db.execute("DELETE FROM probes WHERE at < ?", (cutoff,)).rowcount
            db.execute(
                "DELETE FROM incidents WHERE resolved IS NOT NULL AND resolved < ?", (cutoff,)
            )
        return int(deleted)

    def samples(self, key: str, since: float) -> list[tuple[float, str, float | None]]:
        """``(at, category, handshake_ms)`` of ``key`` since ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT at, category, handshake_ms FROM probes WHERE key = ? AND at >= ? ORDER BY at",
            (key, since),
        ).fetchall()
        return [(r["at"], r["category"], r["handshake_ms"]) for r in rows]

    def recent(self, env: str, limit: int = 20) -> list[dict[str, Any]]:
        """The last probes of ``env`` (front and revisions), newest first."""
        rows = self._db.execute(
            "SELECT * FROM probes WHERE env = ? ORDER BY at DESC LIMIT ?", (env, limit)
        ).fetchall()
        return [json.loads(r["sample"]) if r["sample"] else _summary(r) for r in rows]

    def incidents(self, env: str | None = None, *, open_only: bool = False) -> list[dict[str, Any]]:
        query = "SELECT * FROM incidents"
        clauses, args = [], []
        if env is not None:
            clauses.append("env = ?")
            args.append(env)
        if open_only:
            clauses.append("resolved IS NULL")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        rows = self._db.execute(query + " ORDER BY opened DESC", args).fetchall()
        return [dict(r) for r in rows]


def _summary(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "env": row["env"],
        "revision": row["revision"],
        "at": row["at"],
        "ok": row["category"] == "ok",
        "category": row["category"],
        "kind": row["kind"],
        "code": row["code"],
        "detail": row["detail"],
        "handshake_ms": row["handshake_ms"],
        "total_ms": row["total_ms"],
    }
