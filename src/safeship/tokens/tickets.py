"""One-time tickets: how a browser, which cannot set headers on a WebSocket handshake, trades
its JWT for a short-lived, single-use ``?ticket=`` value. Re-exported from ``safeship.tokens``.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import TokenError
from .extract import parse_bearer

if TYPE_CHECKING:
    from .verify import TokenVerifier

__all__ = ["DEFAULT_PER_SUBJECT", "TicketStore", "Tickets", "ticket_endpoint"]


@runtime_checkable
class Tickets(Protocol):
    """Where one-time tickets live: in memory (``TicketStore``, one process) or shared
    (``RedisTicketStore``, every instance behind a load balancer or ``--workers N``)."""

    ttl: float

    async def issue_async(
        self, token: str, *, subject: str, path: str | None, now: float | None = None
    ) -> str:
        """Store an already verified JWT; return an unguessable ticket for it, usable once on
        ``path`` (any path when None)."""
        ...

    async def redeem_async(self, ticket: str, *, path: str, now: float | None = None) -> str | None:
        """The JWT behind ``ticket``, once, on the path it was issued for; None if unknown,
        expired, already used or issued for another path."""
        ...


DEFAULT_PER_SUBJECT = 20
"""Live tickets one subject may hold: at the cap its own oldest ticket is dropped, never
someone else's."""


class TicketStore:
    """One-time tickets for browsers, in memory: short-lived (default 30 s), single use, bound
    to a path, at most ``max_per_subject`` live per subject, bounded size.

    ``now`` is seconds since the epoch (``time.time()``), the clock the guard judges tokens
    by. At ``max_entries`` the oldest ticket is dropped to make room.
    """

    def __init__(
        self,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        max_per_subject: int = DEFAULT_PER_SUBJECT,
    ) -> None:
        if not (0 < ttl < float("inf")) or max_entries < 1 or max_per_subject < 1:
            raise ValueError(
                "TicketStore needs a finite ttl > 0, max_entries >= 1 and max_per_subject >= 1"
            )
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_per_subject = max_per_subject
        # Insertion order is expiry order (one ttl for all), so expired tickets sit in front.
        self._entries: OrderedDict[str, tuple[str, float, str | None, str | None]] = OrderedDict()
        self._by_subject: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def issue(
        self,
        token: str,
        *,
        now: float | None = None,
        subject: str | None = None,
        path: str | None = None,
    ) -> str:
        """Store an already verified JWT; return an unguessable ticket for it."""
        now = time.time() if now is None else now
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            self._purge(now)
            if subject is not None:
                mine = self._by_subject.setdefault(subject, deque())
                while len(mine) >= self.max_per_subject:
                    self._entries.pop(mine.popleft(), None)
                mine.append(ticket)
            while len(self._entries) >= self.max_entries:
                dropped, (_, _, owner, _) = self._entries.popitem(last=False)
                self._forget(dropped, owner)
            self._entries[ticket] = (token, now + self.ttl, subject, path)
        return ticket

    def redeem(
        self, ticket: str, *, now: float | None = None, path: str | None = None
    ) -> str | None:
        """The JWT behind ``ticket``, once; None if it is unknown, expired, already used, or
        bound to another path than ``path``."""
        now = time.time() if now is None else now
        with self._lock:
            entry = self._entries.pop(ticket, None)
            if entry is not None:
                self._forget(ticket, entry[2])
        if entry is None:
            return None
        token, expires, _, bound = entry
        if bound is not None and path is not None and bound != path:
            return None
        return token if now < expires else None

    async def issue_async(
        self, token: str, *, subject: str, path: str | None, now: float | None = None
    ) -> str:
        return self.issue(token, now=now, subject=subject, path=path)

    async def redeem_async(self, ticket: str, *, path: str, now: float | None = None) -> str | None:
        return self.redeem(ticket, now=now, path=path)

    def _purge(self, now: float) -> None:
        while self._entries:
            ticket, (_, expires, subject, _) = next(iter(self._entries.items()))
            if now < expires:
                return
            self._entries.popitem(last=False)
            self._forget(ticket, subject)

    def _forget(self, ticket: str, subject: str | None) -> None:
        mine = self._by_subject.get(subject) if subject is not None else None
        if mine is None:
            return
        with contextlib.suppress(ValueError):
            mine.remove(ticket)  # at most max_per_subject entries
        if not mine:
            del self._by_subject[subject]  # type: ignore[arg-type]


def _invalid(detail: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_token", "detail": detail},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"', "Cache-Control": "no-store"},
    )


def ticket_endpoint(
    verifier: TokenVerifier, tickets: Tickets, *, default_path: str | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint (mount it for POST) that trades ``Authorization: Bearer <jwt>``
    for a ticket: ``201 {"ticket": ..., "expires_in": ttl, "path": ...}``; a missing or
    invalid token gets 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` and
    ``{error, detail}``. The ticket is bound to the WebSocket path given as ``?path=``
    (default ``default_path``; with neither, to any path)."""

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
            claims = verifier.verify(token)
        except TokenError as exc:
            return _invalid(exc.message)
        path = request.query_params.get("path") or default_path
        if path is not None and not path.startswith("/"):
            return JSONResponse(
                {"error": "invalid_request", "detail": "'path' must be a path such as /ws"},
                status_code=400,
            )
        try:
            ticket = await tickets.issue_async(token, subject=str(claims["sub"]), path=path)
        except TokenError as exc:
            return JSONResponse(
                {"error": "unavailable", "detail": exc.message},
                status_code=503,
                headers={"Retry-After": "1", "Cache-Control": "no-store"},
            )
        return JSONResponse(
            {"ticket": ticket, "expires_in": tickets.ttl, "path": path},
            status_code=201,
            # A ticket is a credential: no cache may keep it (as for OAuth token responses).
            headers={"Cache-Control": "no-store"},
        )

    return endpoint
