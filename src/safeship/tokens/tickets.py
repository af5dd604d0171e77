"""One-time tickets: how a browser, which cannot set headers on a WebSocket handshake, trades
its JWT for a short-lived, single-use ``?ticket=`` value. Re-exported from ``safeship.tokens``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import TokenError
from .extract import parse_bearer

if TYPE_CHECKING:
    from .verify import TokenVerifier

__all__ = ["TicketStore", "ticket_endpoint"]


class TicketStore:
    """One-time tickets for browsers: short-lived (default 30 s), single use, in memory,
    bounded size.

    ``now`` is seconds since the epoch (``time.time()``), the clock the guard judges tokens
    by. At ``max_entries`` the oldest ticket is dropped to make room.
    """

    def __init__(self, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("TicketStore needs ttl > 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        # Insertion order is expiry order (one ttl for all), so expired tickets sit in front.
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, token: str, *, now: float | None = None) -> str:
        """Store an already verified JWT; return an unguessable ticket for it."""
        now = time.time() if now is None else now
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            self._purge(now)
            while len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
            self._entries[ticket] = (token, now + self.ttl)
        return ticket

    def redeem(self, ticket: str, *, now: float | None = None) -> str | None:
        """The JWT behind ``ticket``, once; None if it is unknown, expired or already used."""
        now = time.time() if now is None else now
        with self._lock:
            entry = self._entries.pop(ticket, None)
        if entry is None:
            return None
        token, expires = entry
        return token if now < expires else None

    def _purge(self, now: float) -> None:
        while self._entries:
            _, (_, expires) = next(iter(self._entries.items()))
            if now < expires:
                return
            self._entries.popitem(last=False)


def _invalid(detail: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_token", "detail": detail},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"', "Cache-Control": "no-store"},
    )


def ticket_endpoint(
    verifier: TokenVerifier, tickets: TicketStore
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint (mount it for POST) that trades ``Authorization: Bearer <jwt>``
    for a ticket: ``201 {"ticket": ..., "expires_in": ttl}``; a missing or invalid token gets
    401 with ``WWW-Authenticate: Bearer error="invalid_token"`` and ``{error, detail}``."""

    async def endpoint(request: Request) -> Response:
        if request.method != "POST":
            return JSONResponse(
                {"error": "method_not_allowed", "detail": "request a ticket with POST"},
                status_code=405,
                headers={"Allow": "POST"},
            )
        header = request.headers.getlist("authorization")
        if not header:
            return _invalid("missing 'Authorization: Bearer <token>' header")
        if len(header) > 1:
            return _invalid("more than one Authorization header")
        try:
            token = parse_bearer(header[0])
            verifier.verify(token)
        except TokenError as exc:
            return _invalid(exc.message)
        ticket = tickets.issue(token)
        return JSONResponse(
            {"ticket": ticket, "expires_in": tickets.ttl},
            status_code=201,
            # A ticket is a credential: no cache may keep it (as for OAuth token responses).
            headers={"Cache-Control": "no-store"},
        )

    return endpoint
