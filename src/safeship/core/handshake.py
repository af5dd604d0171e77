"""The handshake decision: (readiness, auth outcome, limits) -> Accept | Deny.

The guard gathers the observations (startup state, token verification, connection counts) and
carries out the answer; every policy ``if`` lives here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from .closecodes import DenyKind

__all__ = [
    "Accept",
    "AuthOutcome",
    "DenialForm",
    "Deny",
    "Limits",
    "MessageRate",
    "Readiness",
    "admit_message",
    "decide",
    "denial_form",
    "expiry_deadline",
    "normalize_origin",
    "origin_allowed",
    "readiness_with_checks",
]


class Readiness(StrEnum):
    READY = "ready"
    STARTING = "starting"
    FAILED = "failed"
    DRAINING = "draining"


@dataclass(frozen=True)
class AuthOutcome:
    """What token extraction and verification found.

    ``failure`` is a ``TokenError.kind`` (``missing``, ``expired``, ...); ``forbidden`` carries the
    authorizer's reason when the token is valid but not allowed.
    """

    claims: Mapping[str, Any] | None = None
    failure: str | None = None
    detail: str = ""
    forbidden: str | None = None

    @property
    def subject(self) -> str | None:
        sub = self.claims.get("sub") if self.claims else None
        return str(sub) if sub is not None else None


@dataclass(frozen=True)
class Limits:
    per_user: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Accept:
    subject: str
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deny:
    kind: DenyKind
    detail: str


def decide(
    readiness: Readiness,
    auth: AuthOutcome,
    *,
    limits: Limits = Limits(),
    total_connections: int = 0,
    user_connections: int = 0,
) -> Accept | Deny:
    """Decide a handshake.

    Order matters: readiness first (a starting or draining service answers at once, before any
    token work); then the global limit (cheap, protects the process); then authentication and
    authorization; then the per-user limit, which needs the subject.
    """
    if readiness is Readiness.DRAINING:
        return Deny(DenyKind.DRAINING, "service is draining for a restart; reconnect")
    if readiness is Readiness.STARTING:
        return Deny(DenyKind.NOT_READY, "service is starting; retry shortly")
    if readiness is Readiness.FAILED:
        return Deny(DenyKind.NOT_READY, "service failed to start; see /health/ready")
    if limits.total is not None and total_connections >= limits.total:
        return Deny(DenyKind.TOO_MANY, f"server connection limit ({limits.total}) reached")
    if auth.failure is not None or auth.claims is None:
        kind = auth.failure or "missing"
        return Deny(DenyKind.UNAUTHENTICATED, auth.detail or _AUTH_DETAIL.get(kind, kind))
    subject = auth.subject
    if subject is None:
        return Deny(DenyKind.UNAUTHENTICATED, "token has no 'sub' claim")
    if auth.forbidden is not None:
        return Deny(DenyKind.FORBIDDEN, auth.forbidden)
    if limits.per_user is not None and user_connections >= limits.per_user:
        return Deny(DenyKind.TOO_MANY, f"connection limit per user ({limits.per_user}) reached")
    return Accept(subject=subject, claims=auth.claims)


_AUTH_DETAIL = {
    "missing": "no token: send an Authorization: Bearer header, a 'jwt.<base64url>' subprotocol, "
    "the auth cookie or a ticket",
}


def expiry_deadline(claims: Mapping[str, Any], grace: float) -> float | None:
    """When a connection authenticated by ``claims`` must be closed with 4401 (epoch seconds)."""
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp) + grace


DenialForm = Literal["http", "close"]


def denial_form(mode: str, *, http_response_supported: bool, from_browser: bool) -> DenialForm:
    """How to refuse a handshake: a real HTTP response, or accept then close with a code.

    Browsers cannot read a refused handshake's response (a page sees only 1006), so in
    ``auto`` mode a request with an ``Origin`` header gets the close code; servers without the
    ``websocket.http.response`` extension can only close.
    """
    if mode == "browser" or not http_response_supported:
        return "close"
    if mode == "http":
        return "http"
    return "close" if from_browser else "http"


def readiness_with_checks(startup: Readiness, required_checks_ok: bool) -> Readiness:
    """Readiness for new connections: a started service whose required dependency last
    failed its check is not ready."""
    if startup is Readiness.READY and not required_checks_ok:
        return Readiness.STARTING
    return startup


def normalize_origin(origin: str) -> str:
    """An ``Origin`` as compared: lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a handshake authenticated by ambient credentials (a cookie, a ticket) may
    proceed. ``allowed`` None: no list configured, every origin passes. No ``Origin`` header:
    not a browser, which is what cross-site hijacking needs (browsers always send one)."""
    if allowed is None or origin is None:
        return True
    return normalize_origin(origin) in allowed


@dataclass(frozen=True)
class MessageRate:
    """A per-connection limit on client messages: ``per_second`` sustained, ``burst`` at once
    (a token bucket)."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0) or self.burst < 1:
            raise ValueError("a message rate needs per_second > 0 (finite) and burst >= 1")


def admit_message(tokens: float, last: float, now: float, rate: MessageRate) -> tuple[bool, float]:
    """Whether one more message fits the bucket that held ``tokens`` at ``last``; and the
    tokens left at ``now``."""
    tokens = min(float(rate.burst), tokens + max(0.0, now - last) * rate.per_second)
    if tokens >= 1.0:
        return True, tokens - 1.0
    return False, tokens
