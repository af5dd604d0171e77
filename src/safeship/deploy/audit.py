"""The tamper-evident audit log: append-only JSON lines chained by SHA-256, keyed and anchored.

Each line is one object ``{"seq", "ts", "who", "event", "what", "why", "prev", "hash"}``.
``hash`` is the SHA-256 of the canonical JSON of the entry without ``hash`` (and ``mac``);
``prev`` is the ``hash`` of the line before (64 zeros for the first). Editing, deleting or
reordering a line breaks the chain at a line that ``verify`` names.

A plain hash chain can be recomputed by whoever can write the file, so two more defences:

- **Key.** With ``SAFESHIP_AUDIT_KEY`` set (from the secret store, never in the state
  directory), each entry also carries ``mac``, HMAC-SHA256 of its ``hash`` under the key.
  ``hash`` covers ``prev``, so one valid mac vouches for every entry before it. ``verify``
  with the key refuses a mac that does not verify, an entry without one after keyed entries,
  and a log where no entry is keyed (a rewrite can strip every mac): a rewritten history
  with recomputed hashes, or a forged entry, fails. Entries written before the key was set
  (legacy) are accepted when a keyed entry follows them, and reported.
- **Anchor.** Every append records ``(seq, hash)`` of the new head in the state store
  (``state.db`` beside the log); ``verify`` fails when the log ends before the anchored entry,
  goes past it, or that entry's hash differs (the tail was truncated, appended to or
  rewritten), and when the log is missing. No log and no anchor is a fresh project.

What neither defends against: whoever holds the key (or root on the machine that has it in
its environment), and whoever deletes the whole state directory (log and anchor together).
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
    "key_weakness",
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


def key_weakness(key: str) -> str | None:
    """Why ``key`` is too weak for the audit chain, or ``None``. Every entry's ``hash`` and
    ``mac`` are in the log, so a guessable key can be found offline and then any history
    written: the key must pass the same strength rules as a JWT secret (never quoted)."""
    from ..secrets import weaknesses

    problems = weaknesses(key, min_bytes=32)
    if not problems:
        return None
    return (
        f"{AUDIT_KEY_ENV} {'; '.join(problems)}: a guessable key can be recovered offline from "
        "the log's own macs"
    )


_KEY_HINT = (
    "set it to a random value, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
)


def _state_db(log: Path) -> Path:
    return log.parent / "state.db"


def _anchor_key(log: Path) -> str:
    # The file name, not the absolute path: the state directory may be moved or mounted
    # elsewhere, and state.db is always beside the log.
    return log.name


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
                to a broken chain would hide the damage), or ``SAFESHIP_AUDIT_KEY`` is weak.
        """
        key = _key(self._environ)
        if key is not None and (weak := key_weakness(key)) is not None:
            raise AuditError(weak, hint=_KEY_HINT)
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
    """Hash of the last valid entry."""
    path: str = ""
    status: str = "intact"
    """``intact``, ``broken``, ``missing`` (an anchored log is gone) or ``no_log`` (nothing
    was ever written: a fresh project)."""
    keyed: int = 0
    """Entries whose ``mac`` verified under the audit key (0 when no key was given)."""
    unkeyed: int = 0
    """Entries that carry no ``mac`` at all (written without the key, or before keying)."""
    anchored: int | None = None
    """The ``seq`` the state store anchors, or ``None`` (no anchor: written before anchoring,
    or the state store is gone)."""
    notes: list[str] = field(default_factory=list)
    """What this verification could not prove, although nothing is broken."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "path": self.path,
            "entries": self.entries,
            "head": self.head,
            "keyed": self.keyed,
            "unkeyed": self.unkeyed,
            "anchored": self.anchored,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


def verify(
    path: Path | str, *, key: str | None = None, environ: Mapping[str, str] | None = None
) -> AuditVerification:
    """Check the whole chain and name every broken line.

    Detects an edited line (its hash no longer matches), a deleted or reordered line (a gap
    or step back in ``seq``, or ``prev`` not matching the line before), invalid JSON and a
    truncated last line. With the audit key (``key``, default ``$SAFESHIP_AUDIT_KEY``): an
    entry whose ``mac`` does not verify, an entry without one after keyed entries, and a log
    where no entry is keyed (legacy, or its macs stripped by a rewrite). Against the anchor
    in the state store: a log that ends before the anchored entry, goes past it, or whose
    anchored entry changed, and a missing file. Without an anchor and without a file, there is
    no audit log yet (ok).
    """
    path = Path(path)
    key = key if key is not None else _key(os.environ if environ is None else environ)
    result = AuditVerification(ok=True, entries=0, path=str(path))
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    except OSError as exc:
        result.ok, result.status = False, "broken"
        result.problems.append(f"cannot read {path}: {exc.strerror}")
        return result
    try:
        if fd is not None:
            # Appends write the line and its anchor under LOCK_EX: read both as one state.
            fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            anchor = _anchored(path)
        except Exception as exc:
            result.ok, result.status = False, "broken"
            result.problems.append(f"cannot read the anchor in {_state_db(path)}: {exc}")
            return result
        if fd is None:
            if anchor is None:
                result.status = "no_log"
                result.notes.append(f"no audit log yet at {path}")
                return result
            result.ok, result.status, result.anchored = False, "missing", anchor[0]
            result.problems.append(
                f"audit log missing: expected {anchor[0]} entries anchored in {_state_db(path)}"
            )
            return result
        try:
            raw = _read_all(fd)
        except OSError as exc:
            result.ok, result.status = False, "broken"
            result.problems.append(f"cannot read {path}: {exc.strerror}")
            return result
    finally:
        if fd is not None:
            os.close(fd)
    if key is not None and (weak := key_weakness(key)) is not None:
        result.problems.append(f"{weak} ({_KEY_HINT})")
    _check(raw, key, anchor, result)
    if anchor is None and result.entries:
        result.notes.append(
            f"not anchored in {_state_db(path)}: written before anchoring, or the state store "
            "was removed; a truncated tail cannot be seen (the next append anchors it)"
        )
    result.ok = not result.problems
    result.status = "intact" if result.ok else "broken"
    return result


def _entries(count: int) -> str:
    return "1 entry carries" if count == 1 else f"{count} entries carry"


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _check(
    raw: bytes, key: str | None, anchor: tuple[int, str] | None, result: AuditVerification
) -> None:
    lines = raw.split(b"\n")
    truncated = not raw.endswith(b"\n") and raw != b""
    if lines and lines[-1] == b"":
        lines.pop()
    prev_hash, prev_seq = GENESIS, 0
    problems = result.problems
    first_keyed: int | None = None  # line number of the first entry with a mac
    macs_unchecked = 0
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
        mac = entry.get("mac")
        if mac is None:
            result.unkeyed += 1
            if key is not None and first_keyed is not None:
                problems.append(
                    f"line {number}: no mac after keyed entries (appended without "
                    f"{AUDIT_KEY_ENV}, or forged)"
                )
        else:
            first_keyed = first_keyed or number
            if key is None:
                macs_unchecked += 1
            elif (
                isinstance(mac, str)
                and isinstance(entry["hash"], str)
                and hmac.compare_digest(mac, entry_mac(entry["hash"], key))
            ):
                result.keyed += 1
            else:
                problems.append(
                    f"line {number}: the mac does not verify under the audit key (the entry "
                    "was forged or the history rewritten, or it was written under another key)"
                )
        seq = entry["seq"]
        if anchor is not None and seq == anchor[0] and entry["hash"] != anchor[1]:
            problems.append(
                f"line {number}: seq {anchor[0]} is not the entry the state store anchored "
                "(the history was rewritten)"
            )
        if anchor is not None and isinstance(seq, int) and seq > anchor[0]:
            problems.append(
                f"line {number}: seq {seq} is past the head the state store anchors (seq "
                f"{anchor[0]}): appended outside safeship, or its anchor write failed"
            )
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
    if anchor is not None:
        result.anchored = anchor[0]
        if prev_seq < anchor[0]:
            problems.append(
                f"the log ends at seq {prev_seq}, but the state store anchors seq {anchor[0]} "
                "(entries were removed from the end)"
            )
    result.head = prev_hash if result.entries else None
    if not result.entries:
        return
    if key is not None and first_keyed is None:
        # A rewrite that strips every mac looks exactly like a log written before the key:
        # with the key configured, neither is accepted.
        problems.append(
            f"unkeyed: no entry of {result.entries} carries a mac, although "
            f"{AUDIT_KEY_ENV} is set (written before the key was set, or the macs were "
            "stripped by a rewrite); review the history, then any append with the key set "
            "(a deploy, a skipped gate) keys the log and vouches for the entries before it"
        )
    elif key is not None and first_keyed is not None and first_keyed > 1:
        legacy = "line 1 was" if first_keyed == 2 else f"lines 1-{first_keyed - 1} were"
        result.notes.append(
            f"{legacy} written before {AUDIT_KEY_ENV} was set (legacy); "
            f"the keyed entry at line {first_keyed} vouches for them"
        )
    elif key is None and macs_unchecked:
        result.notes.append(
            f"{_entries(macs_unchecked)} a mac that was not checked: set {AUDIT_KEY_ENV} "
            "to verify it"
        )
    if key is None and result.unkeyed:
        result.notes.append(
            f"unkeyed: {_entries(result.unkeyed)} no mac (written without "
            f"{AUDIT_KEY_ENV}); the hash chain and the anchor hold, but whoever can write "
            "the state directory could have recomputed them"
        )
