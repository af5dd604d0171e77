"""The ``/ws`` protocol, pure: parse and validate client messages, build server messages.

No sockets, no asyncio, no clock (``now`` is a parameter), so every rule here is unit-tested
with plain values. ``docs/protocol.md`` documents the wire format with examples.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "PROTOCOL_VERSION",
    "TERMINAL_EVENTS",
    "ClientMessage",
    "ErrorCode",
    "Event",
    "Ping",
    "ProtocolError",
    "Resume",
    "StartAgent",
    "UserMessage",
    "check_resume",
    "check_start",
    "connection_established",
    "error_message",
    "parse_client_message",
    "pong",
    "resumed",
]

PROTOCOL_VERSION = 1
EVENT_TYPES = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "user_message",
    "agent_completed",
    "agent_error",
)
TERMINAL_EVENTS = frozenset({"agent_completed", "agent_error"})
MAX_ID_CHARS = 128


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_AGENT = "unknown_agent"
    UNKNOWN_RUN = "unknown_run"
    SEQ_FROM_FUTURE = "seq_from_future"
    RUN_FINISHED = "run_finished"
    RUN_UNAVAILABLE = "run_unavailable"
    TOO_MANY_RUNS = "too_many_runs"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class ProtocolError:
    """A message the server refuses; sent back as ``{"type": "error", ...}``."""

    code: ErrorCode
    detail: str
    request_id: str | None = None


@dataclass(frozen=True)
class StartAgent:
    agent: str
    request_id: str
    input: Any = None


@dataclass(frozen=True)
class UserMessage:
    run_id: str
    text: str
    request_id: str | None = None


@dataclass(frozen=True)
class Ping:
    request_id: str | None = None


@dataclass(frozen=True)
class Resume:
    run_id: str
    last_seq: int
    request_id: str | None = None


ClientMessage = StartAgent | UserMessage | Ping | Resume


@dataclass(frozen=True)
class Event:
    """One event of a run. ``user`` routes it and never goes on the wire."""

    run_id: str
    seq: int
    type: str
    timestamp: float
    payload: dict[str, Any] = field(default_factory=dict)
    user: str = ""
    request_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "run_id": self.run_id,
            "seq": self.seq,
            "timestamp": iso(self.timestamp),
            "payload": self.payload,
        }
        if self.request_id is not None:
            data["request_id"] = self.request_id
        return data

    @functools.cached_property
    def text(self) -> str:
        """The JSON frame, encoded once however many connections receive it."""
        return json.dumps(self.wire(), separators=(",", ":"))


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- parsing -------------------------------------------------------------------------------


def parse_client_message(
    text: str | bytes | None, *, max_bytes: int
) -> ClientMessage | ProtocolError:
    """Parse one client frame. Never raises: a refusal is a :class:`ProtocolError`."""
    if text is None or isinstance(text, bytes):
        return ProtocolError(
            ErrorCode.INVALID_MESSAGE, "binary frames are not supported: send JSON as text"
        )
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        return ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message is over the {max_bytes}-byte limit: send a smaller input",
        )
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        return ProtocolError(
            ErrorCode.INVALID_JSON, f"JSON nested too deeply: at most {MAX_DEPTH} levels"
        )
    except ValueError as exc:
        return ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc}")
    problem = _unstorable(data)
    if problem is not None:
        return ProtocolError(ErrorCode.INVALID_MESSAGE, problem)
    if not isinstance(data, dict):
        return ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"expected a JSON object, got {type(data).__name__}"
        )
    request_id = data.get("request_id")
    if request_id is not None and not _is_id(request_id):
        return ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'request_id' must be a string of 1 to {MAX_ID_CHARS} characters",
        )
    kind = data.get("type")
    if kind is None:
        return ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'type'", request_id)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        known = ", ".join(_PARSERS)
        shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
        return ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {shown!r}: expected one of {known}",
            request_id,
        )
    return parser(data, request_id)


MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a message may have."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number: send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


def _unstorable(data: Any) -> str | None:
    """What in a parsed message no store can keep, checked here at the protocol boundary so
    it is answered with an ``error`` reply instead of failing in the database: nesting past
    ``MAX_DEPTH``, NUL characters, lone surrogates. Iterative, so depth costs no stack."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return "strings must not contain NUL (\\u0000) characters"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "strings must be valid Unicode: a lone surrogate (\\ud800-\\udfff) is not"
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return f"JSON nested too deeply: at most {MAX_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None:
                    stack.append((key, depth))
                stack.append((item, depth + 1))
    return None


def _parse_start(data: dict[str, Any], request_id: str | None) -> ClientMessage | ProtocolError:
    if request_id is None:
        return _missing("request_id", "start_agent", request_id)
    agent = data.get("agent")
    if agent is None:
        return _missing("agent", "start_agent", request_id)
    if not _is_id(agent):
        return _invalid("agent", "a non-empty string", request_id)
    return StartAgent(agent=agent, request_id=request_id, input=data.get("input"))


def _parse_user_message(
    data: dict[str, Any], request_id: str | None
) -> ClientMessage | ProtocolError:
    run_id = data.get("run_id")
    text = data.get("text")
    if run_id is None:
        return _missing("run_id", "user_message", request_id)
    if not _is_id(run_id):
        return _invalid("run_id", "a run id string", request_id)
    if text is None:
        return _missing("text", "user_message", request_id)
    if not isinstance(text, str):
        return _invalid("text", "a string", request_id)
    return UserMessage(run_id=run_id, text=text, request_id=request_id)


def _parse_ping(data: dict[str, Any], request_id: str | None) -> ClientMessage | ProtocolError:
    return Ping(request_id=request_id)


def _parse_resume(data: dict[str, Any], request_id: str | None) -> ClientMessage | ProtocolError:
    run_id = data.get("run_id")
    if run_id is None:
        return _missing("run_id", "resume", request_id)
    if not _is_id(run_id):
        return _invalid("run_id", "a run id string", request_id)
    if "last_seq" not in data:
        return _missing("last_seq", "resume", request_id)
    last_seq = data["last_seq"]
    if not isinstance(last_seq, int) or isinstance(last_seq, bool) or not 0 <= last_seq < 2**63:
        return _invalid("last_seq", "an integer >= 0 (0 replays the whole run)", request_id)
    return Resume(run_id=run_id, last_seq=last_seq, request_id=request_id)


_PARSERS = {
    "start_agent": _parse_start,
    "user_message": _parse_user_message,
    "ping": _parse_ping,
    "resume": _parse_resume,
}


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def _missing(name: str, kind: str, request_id: str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.MISSING_FIELD, f"{kind} needs field {name!r}", request_id)


def _invalid(name: str, expected: str, request_id: str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, f"field {name!r} must be {expected}", request_id)


# -- decisions -----------------------------------------------------------------------------


def check_start(
    msg: StartAgent, *, agents: frozenset[str] | set[str], active_runs: int, max_runs: int
) -> ProtocolError | None:
    """Whether a ``start_agent`` may start a run."""
    if msg.agent not in agents:
        shown = msg.agent if len(msg.agent) <= 40 else msg.agent[:40] + "..."
        return ProtocolError(
            ErrorCode.UNKNOWN_AGENT,
            f"unknown agent {shown!r}: available agents are {', '.join(sorted(agents))}",
            msg.request_id,
        )
    if active_runs >= max_runs:
        return ProtocolError(
            ErrorCode.TOO_MANY_RUNS,
            f"{active_runs} runs in progress, the limit is {max_runs}: wait for one to finish",
            msg.request_id,
        )
    return None


def check_resume(
    msg: Resume, *, owner: str | None, user: str, latest_seq: int
) -> ProtocolError | None:
    """Whether ``resume`` can be served. ``owner`` is the run's user (None: no such run).

    Another user's run is reported as unknown, so run ids cannot be probed."""
    if owner is None or owner != user:
        return ProtocolError(
            ErrorCode.UNKNOWN_RUN,
            f"no run {msg.run_id!r} for this user: start a new run instead",
            msg.request_id,
        )
    if msg.last_seq > latest_seq:
        return ProtocolError(
            ErrorCode.SEQ_FROM_FUTURE,
            f"last_seq {msg.last_seq} is beyond the latest event of run {msg.run_id!r} "
            f"(seq {latest_seq}): resume from the last seq you received",
            msg.request_id,
        )
    return None


# -- server messages -----------------------------------------------------------------------


def connection_established(
    *,
    connection_id: str,
    user: str,
    instance: str,
    agents: list[str],
    max_message_bytes: int,
    now: float,
) -> dict[str, Any]:
    return {
        "type": "connection_established",
        "protocol": PROTOCOL_VERSION,
        "connection_id": connection_id,
        "user": user,
        "instance": instance,
        "agents": agents,
        "max_message_bytes": max_message_bytes,
        "server_time": iso(now),
    }


def error_message(error: ProtocolError) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "error", "code": str(error.code), "detail": error.detail}
    if error.request_id is not None:
        data["request_id"] = error.request_id
    return data


def pong(request_id: str | None, *, now: float) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "pong", "server_time": iso(now)}
    if request_id is not None:
        data["request_id"] = request_id
    return data


def resumed(msg: Resume, *, replayed: int, latest_seq: int, status: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "resumed",
        "run_id": msg.run_id,
        "from_seq": msg.last_seq,
        "replayed": replayed,
        "latest_seq": latest_seq,
        "status": status,
    }
    if msg.request_id is not None:
        data["request_id"] = msg.request_id
    return data


def message_accepted(msg: UserMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "message_accepted", "run_id": msg.run_id}
    if msg.request_id is not None:
        data["request_id"] = msg.request_id
    return data


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
