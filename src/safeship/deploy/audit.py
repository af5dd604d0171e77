"""The tamper-evident audit log: append-only JSON lines chained by SHA-256, keyed and anchored.

Each line is one object ``{"seq", "ts", "who", "event", "what", "why", "prev", "hash"}``.
``hash`` is the SHA-256 of the canonical JSON of the entry without ``hash`` (and ``mac``);
``prev`` is the ``hash`` of the line before (64 zeros for the first). Editing, deleting or
reordering a line breaks the chain at a line that ``verify`` names.

A plain hash chain can be recomputed by whoever can write the file, so two more defences:

- **Key.** With ``SAFESHIP_AUDIT_KEY`` set (from the secret store, never in the state
  directory), each entry also carries ``mac``, HMAC-SHA256 of its ``hash`` under the key;
  ``verify`` with the key refuses an entry without a valid one, so a rewritten history with
  recomputed hashes, or a forged entry, fails.
- **Anchor.** Every append records ``(seq, hash)`` of the new head in the state store
  (``state.db`` beside the log); ``verify`` fails when the log ends before the anchored entry
  or that entry's hash differs (the tail was truncated or rewritten), and when the log is
  missing.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import hmac
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Manifest
from ..errors import AuditError

__all__ = [
    "AUDIT_KEY_ENV",
    "GENESIS",
    "AuditLog",
    "AuditVerification",
    "audit_path",
    "entry_hash",
    "verify",
]

GENESIS = "0" * 64
AUDIT_KEY_ENV = "SAFESHIP_AUDIT_KEY"
_FIELDS = ("seq", "ts", "who", "event", "what", "why", "prev", "hash")


def audit_path(manifest: Manifest) -> Path:
    """``<state_dir>/audit.jsonl`` under the manifest's root (default ``.safeship/``)."""
    return manifest.resolve(manifest.deploy.state_dir) / "audit.jsonl"


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of ``entry`` minus
    ``hash`` and ``mac``."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "mac")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def entry_mac(entry_hash: str, key: str) -> str:
    """HMAC-SHA256 of an entry's ``hash`` under the audit key."""
    return hmac.new(key.encode("utf-8"), entry_hash.encode("ascii"), hashlib.sha256).hexdigest()


def _key(environ: Mapping[str, str]) -> str | None:
    return environ.get(AUDIT_KEY_ENV, "").strip() or None


def _state_db(log: Path) -> Path:
    return log.parent / "state.db"


def _anchor_key(log: Path) -> str:
    return str(log.resolve())


def _anchor(log: Path, seq: int, head: str) -> None:
    from .state import StateStore

    try:
        with StateStore(_state_db(log)) as store:
            store.set_audit_head(_anchor_key(log), seq, head)
    except Exception as exc:
        raise AuditError(
            f"the entry was written, but its anchor in {_state_db(log)} was not: {exc}",
            hint="check that the state directory is writable",
        ) from None


def _anchored(log: Path) -> tuple[int, str] | None:
    from .state import StateStore

    if not _state_db(log).exists():
        return None
    with StateStore(_state_db(log)) as store:
        return store.audit_head(_anchor_key(log))


def _actor(environ: Mapping[str, str]) -> str:
    if environ.get("SAFESHIP_ACTOR", "").strip():
        return environ["SAFESHIP_ACTOR"].strip()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers may run as a uid without a passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _scrub(value: Any) -> Any:
    """Redact anything secret-shaped from free-form fields before it is written forever."""
    try:
        from ..secrets import redact
    except ImportError:  # pragma: no cover - secrets module is part of every build
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


class AuditLog:
    """Append-only access to one audit file. Safe across processes: appends hold an
    exclusive ``flock`` while they read the chain's head and write the new line."""

    def __init__(
        self,
        path: Path | str,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], str] = _utc_now,
    ) -> None:
        self.path = Path(path)
        self._environ = os.environ if environ is None else environ
        self._clock = clock

    def append(self, event: str, what: Mapping[str, Any], why: str | None = None) -> dict[str, Any]:
        """Append one entry and return it.

        Raises:
            AuditError: the file cannot be written, or its last line is damaged (appending
                to a broken chain would hide the damage).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise AuditError(
                f"cannot open audit log {self.path}: {exc.strerror}",
                hint="check that the state directory is writable",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = self._head(fd)
            entry: dict[str, Any] = {
                "seq": seq + 1,
                "ts": self._clock(),
                "who": _actor(self._environ),
                "event": event,
                # Round-trip through JSON so the hashed form is exactly what is stored.
                "what": json.loads(json.dumps(_scrub(dict(what)), default=str)),
                "why": _scrub(why) if why is not None else None,
                "prev": prev,
            }
            entry["hash"] = entry_hash(entry)
            key = _key(self._environ)
            if key is not None:
                entry["mac"] = entry_mac(entry["hash"], key)
            line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
            # Still under the lock, so anchors advance in the order of the lines.
            _anchor(self.path, entry["seq"], entry["hash"])
        except OSError as exc:
            raise AuditError(f"cannot write audit log {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)  # closing releases the lock
        return entry

    def _head(self, fd: int) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry, read backwards from the end of the file."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS
        chunk = 4096
        data = b""
        pos = size
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            data = os.pread(fd, step, pos) + data
            if data.count(b"\n") >= 2 or pos == 0:
                break
            chunk *= 2
        if not data.endswith(b"\n"):
            raise AuditError(
                f"audit log {self.path} ends with an incomplete line",
                hint="run `safeship audit verify` to locate the damage; the log was truncated",
            )
        last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            entry = json.loads(last)
            return int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"the last line of audit log {self.path} is not a valid entry",
                hint="run `safeship audit verify` to locate the damage",
            ) from None

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first.

        Raises:
            AuditError: the file is unreadable or a line is not JSON (use ``verify`` for detail).
        """
        if not self.path.exists():
            return []
        out = []
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditError(f"cannot read audit log {self.path}: {exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AuditError(
                    f"{self.path}:{number}: not valid JSON",
                    hint="run `safeship audit verify` for the full diagnosis",
                ) from None
        return out


@dataclass
class AuditVerification:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    head: str | None = None
    """Hash of the last valid entry: record it elsewhere to detect later tail deletion."""
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": self.path,
            "entries": self.entries,
            "head": self.head,
            "problems": list(self.problems),
        }


def verify(
    path: Path | str, *, key: str | None = None, environ: Mapping[str, str] | None = None
) -> AuditVerification:
    """Check the whole chain and name every broken line.

    Detects an edited line (its hash no longer matches), a deleted or reordered line (a gap
    or step back in ``seq``, or ``prev`` not matching the line before), invalid JSON and a
    truncated last line; with the audit key (``key``, default ``$SAFESHIP_AUDIT_KEY``), an
    entry without a valid ``mac`` (a rewritten or forged history); against the anchor in the
    state store, a log that ends early or whose anchored entry changed. A missing file fails.
    """
    path = Path(path)
    key = key if key is not None else _key(os.environ if environ is None else environ)
    result = AuditVerification(ok=True, entries=0, path=str(path))
    try:
        anchor = _anchored(path)
    except Exception as exc:
        result.ok = False
        result.problems.append(f"cannot read the anchor in {_state_db(path)}: {exc}")
        return result
    if not path.exists():
        result.ok = False
        anchored = f" (the state store anchors {anchor[0]} entries)" if anchor else ""
        result.problems.append(f"no audit log at {path}{anchored}")
        return result
    try:
        raw = path.read_bytes()
    except OSError as exc:
        result.ok = False
        result.problems.append(f"cannot read {path}: {exc.strerror}")
        return result
    lines = raw.split(b"\n")
    truncated = not raw.endswith(b"\n") and raw != b""
    if lines and lines[-1] == b"":
        lines.pop()
    prev_hash, prev_seq = GENESIS, 0
    problems = result.problems
    for number, data in enumerate(lines, 1):
        is_last = number == len(lines)
        try:
            entry = json.loads(data.decode("utf-8"))
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            if is_last and truncated:
                problems.append(f"line {number}: truncated (the last line is incomplete)")
            else:
                problems.append(f"line {number}: invalid JSON")
            continue
        result.entries += 1
        missing = [k for k in _FIELDS if k not in entry]
        if missing:
            problems.append(f"line {number}: missing field(s) {', '.join(missing)}")
            continue
        if entry_hash(entry) != entry["hash"]:
            problems.append(f"line {number}: hash mismatch (the entry was edited)")
        if key is not None and not (
            isinstance(entry.get("mac"), str)
            and isinstance(entry["hash"], str)
            and hmac.compare_digest(entry["mac"], entry_mac(entry["hash"], key))
        ):
            problems.append(
                f"line {number}: no valid mac under the audit key (the entry was forged, or "
                "the history rewritten)"
            )
        if anchor is not None and entry.get("seq") == anchor[0] and entry["hash"] != anchor[1]:
            problems.append(
                f"line {number}: seq {anchor[0]} is not the entry the state store anchored "
                "(the history was rewritten)"
            )
        seq = entry["seq"]
        if not isinstance(seq, int) or seq != prev_seq + 1:
            if isinstance(seq, int) and seq <= prev_seq:
                problems.append(
                    f"line {number}: seq {seq} after {prev_seq} (lines reordered or duplicated)"
                )
            else:
                problems.append(
                    f"line {number}: seq {seq} after {prev_seq} "
                    "(an entry before this line was deleted)"
                )
        if entry["prev"] != prev_hash:
            problems.append(
                f"line {number}: prev does not match the hash of the line before "
                "(a line was deleted, inserted or moved)"
            )
        prev_hash = str(entry["hash"])
        prev_seq = seq if isinstance(seq, int) else prev_seq + 1
        if is_last and truncated:
            problems.append(f"line {number}: truncated (the last line has no newline)")
    if anchor is not None and prev_seq < anchor[0]:
        problems.append(
            f"the log ends at seq {prev_seq}, but the state store anchors seq {anchor[0]} "
            "(entries were removed from the end)"
        )
    result.ok = not problems
    result.head = prev_hash if result.entries else None
    return result
