"""What :class:`~agent_service.client.AgentClient` records: delivery statistics, run results,
and how a failed connection attempt is classified."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus

from safeship.core.verdict import close_category, status_category

__all__ = ["ClientStats", "RunResult", "ServerError", "failure_category"]


class ServerError(Exception):
    """The server answered a request with ``{"type": "error"}``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class ClientStats:
    connects_ok: int = 0
    connects_failed: Counter[str] = field(default_factory=Counter)
    """Failed connection attempts by verdict category (auth, not_ready, unreachable, ...)."""
    closes: Counter[int] = field(default_factory=Counter)
    """Connections ended, by close code (1006: no close frame)."""
    reconnects: int = 0
    resumes: int = 0
    events: int = 0
    lost: int = 0
    duplicates: int = 0
    runs_started: int = 0
    runs_completed: int = 0
    runs_failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    """Everything that went wrong, by kind: ``connect:<category>``, ``closed:<code>``,
    ``error:<code>``, ``run_timeout``, ``gave_up``."""

    def merge(self, other: ClientStats) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, Counter):
                mine.update(value)
            else:
                setattr(self, name, mine + value)

    def as_dict(self) -> dict[str, Any]:
        return {
            name: dict(sorted((str(k), v) for k, v in value.items()))
            if isinstance(value, Counter)
            else value
            for name, value in vars(self).items()
        }


@dataclass
class RunResult:
    run_id: str
    agent: str | None
    status: str
    """``completed``, ``failed``, ``interrupted`` or ``running``."""
    output: Any = None
    error: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    lost: int = 0
    duplicates: int = 0

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def failure_category(exc: BaseException) -> str:
    """The verdict category of a failed connection attempt (``core.verdict`` categories)."""
    if isinstance(exc, InvalidStatus):
        return str(status_category(exc.response.status_code))
    if isinstance(exc, ConnectionClosed):
        return str(close_category(exc.rcvd.code)) if exc.rcvd is not None else "internal_error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "unreachable"
    return "protocol"
