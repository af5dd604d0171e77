"""What a probe returns: the verdict, per-phase timings and per-step results."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..core.verdict import Verdict

__all__ = ["ProbeResult", "StepResult", "display_url"]

# Query parameters that may carry credentials; their values never leave the probe.
_SECRET_PARAMS = frozenset({"ticket", "token", "access_token", "jwt", "auth", "key", "api_key"})


def display_url(url: str) -> str:
    """``url`` without user info, and with credential-like query values replaced."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = urllib.parse.urlencode(
            [(k, "[redacted]" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs],
            safe="[]",
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class StepResult:
    index: int
    """1-based."""
    request_id: str
    passed: bool
    ms: float | None
    detail: str
    skipped_messages: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "request_id": self.request_id,
            "passed": self.passed,
            "ms": _round(self.ms),
            "detail": self.detail,
            "skipped_messages": self.skipped_messages,
        }


@dataclass(frozen=True)
class ProbeResult:
    """One probe. ``timings`` holds milliseconds per phase that was reached: ``dns``, ``tcp``,
    ``tls``, ``upgrade`` (WebSocket) or ``response`` (HTTP), ``first_message``, ``total``.
    Step durations are in ``steps``. Holds no token."""

    url: str
    verdict: Verdict
    timings: dict[str, float] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    messages_seen: int = 0
    subprotocol: str | None = None
    token_source: str | None = None
    """``describe()`` of the token source, never the token."""

    @property
    def ok(self) -> bool:
        return self.verdict.is_success

    def as_dict(self) -> dict[str, Any]:
        timings: dict[str, Any] = {k: _round(v) for k, v in self.timings.items()}
        timings["steps"] = [_round(s.ms) for s in self.steps]
        return {
            "url": self.url,
            "ok": self.ok,
            "verdict": self.verdict.as_dict(),
            "timings": timings,
            "steps": [s.as_dict() for s in self.steps],
            "messages_seen": self.messages_seen,
            "subprotocol": self.subprotocol,
            "token_source": self.token_source,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
