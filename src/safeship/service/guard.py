"""``WebSocketGuard``: pure ASGI middleware that gives every WebSocket handshake a definite answer
in milliseconds (accepted, denied with a reason, or "not ready, retry") and makes sure no
connection ever ends as a silent TCP drop.

Decisions live in ``core.handshake`` and ``core.closecodes``; this module gathers observations
(readiness, the token, connection counts) and carries the answer out.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from ..core.closecodes import TABLE, CloseCode, DenyKind, denial_response
from ..core.handshake import (
    Accept,
    AuthOutcome,
    Deny,
    Limits,
    MessageRate,
    Readiness,
    admit_message,
    decide,
    denial_form,
    expiry_deadline,
    normalize_origin,
    origin_allowed,
)
from ..errors import TokenError
from ..tokens import (
    ExtractedToken,
    Tickets,
    TokenVerifier,
    extract_token,
    negotiate_subprotocol,
    strip_token_subprotocols,
)
from .connections import Connection, ConnectionRegistry
from .metrics import Metrics

__all__ = ["REFRESH_MESSAGE_TYPE", "ClosedByGuard", "WebSocketGuard"]

logger = logging.getLogger("safeship.guard")

# uvicorn's websockets-sansio protocol never marks the handshake complete after a
# ``websocket.http.response`` denial, so it logs "ASGI callable returned without completing
# handshake." at ERROR on every refused token (Kludex/uvicorn#3138). The connection task's
# context outlives the app call, so a flag set while denying identifies exactly those records.
_denied_here: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "safeship_denied", default=False
)
_UVICORN_SPURIOUS = "ASGI callable returned without completing handshake."


class _SpuriousDenialError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_denied_here.get() and record.getMessage() == _UVICORN_SPURIOUS)


def _install_uvicorn_filter() -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _SpuriousDenialError) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(_SpuriousDenialError())


REFRESH_MESSAGE_TYPE = "auth.refresh"
DenialMode = Literal["auto", "http", "browser"]
Authorize = Callable[[Mapping[str, Any], Scope], "str | Awaitable[str | None] | None"]


class ClosedByGuard(OSError):
    """Raised to the app when it sends after the guard closed the connection. Starlette turns an
    ``OSError`` from ``send`` into ``WebSocketDisconnect``, so handlers see a normal disconnect."""


class WebSocketGuard:
    """Authenticate and admit WebSocket connections.

    Args:
        app: the ASGI app to protect.
        readiness: returns the service's readiness without I/O (e.g. ``Health.readiness``).
        verifier: the token verifier, or a callable returning it (``None`` until secrets load).
        connections: the registry shared with ``Startup`` so a drain can close connections.
        paths: WebSocket paths to guard; ``None`` guards every WebSocket route.
        mode: how to refuse: ``"http"`` answers with a real HTTP status (401/403/429/503) when the
            server supports the ``websocket.http.response`` extension; ``"browser"`` accepts then
            closes with 4401/4403/4429/1013/1012, which browsers can read; ``"auto"`` uses the
            browser form when the request carries an ``Origin`` header.
        allowed_origins: origins whose pages may authenticate with the cookie or a ticket;
            any other ``Origin`` gets 403/4403. ``None``: not checked.
        authorize: optional hook ``(claims, scope) -> reason | None``; a reason means 403.
        max_message_bytes: larger client messages close the connection with 1009.
        message_rate: client messages faster than this close the connection with 1008
            (counted in the closes metric under 1008). ``None``: no limit.
        expiry_grace: seconds past ``exp`` before closing with 4401; default: the verifier's leeway.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        readiness: Callable[[], Readiness],
        verifier: TokenVerifier | Callable[[], TokenVerifier | None] | None,
        connections: ConnectionRegistry | None = None,
        paths: Sequence[str] | None = None,
        mode: DenialMode = "auto",
        cookie: str | None = None,
        tickets: Tickets | None = None,
        allowed_origins: Sequence[str] | None = None,
        subprotocols: Sequence[str] = (),
        authorize: Authorize | None = None,
        limits: Limits = Limits(),
        max_message_bytes: int | None = 1 << 20,
        message_rate: MessageRate | None = None,
        expiry_grace: float | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("auto", "http", "browser"):
            raise ValueError(f"mode must be 'auto', 'http' or 'browser', not {mode!r}")
        self.app = app
        self.readiness = readiness
        self._verifier = verifier
        self.connections = connections if connections is not None else ConnectionRegistry()
        self.paths = frozenset(paths) if paths is not None else None
        self.mode = mode
        self.cookie = cookie
        self.tickets = tickets
        self.allowed_origins = (
            frozenset(normalize_origin(o) for o in allowed_origins)
            if allowed_origins is not None
            else None
        )
        self.subprotocols = tuple(subprotocols)
        self.authorize = authorize
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self.message_rate = message_rate
        self.expiry_grace = expiry_grace
        self.metrics = metrics
        self.clock = clock
        # prometheus' labels() takes a lock and hashes on every call; resolve the hot ones once.
        self._accepted = metrics.handshakes.labels("accepted") if metrics is not None else None
        _install_uvicorn_filter()

    @property
    def verifier(self) -> TokenVerifier | None:
        v = self._verifier
        return v if v is None or isinstance(v, TokenVerifier) else v()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or (
            self.paths is not None and scope.get("path") not in self.paths
        ):
            await self.app(scope, receive, send)
            return
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return  # the client left before the handshake; nothing to answer
        offered = list(scope.get("subprotocols") or ())
        subprotocol = negotiate_subprotocol(offered, self.subprotocols)
        readiness = self.readiness()
        auth = AuthOutcome()
        if readiness is Readiness.READY:
            auth = await self._authenticate(scope)
        verdict = decide(
            readiness,
            auth,
            limits=self.limits,
            total_connections=len(self.connections),
            user_connections=self.connections.count_for(auth.subject) if auth.subject else 0,
        )
        if isinstance(verdict, Deny):
            await self._deny(scope, send, verdict.kind, verdict.detail, subprotocol)
            return
        await self._serve(scope, connect, receive, send, verdict, offered, subprotocol)

    async def _authenticate(self, scope: Scope) -> AuthOutcome:
        verifier = self.verifier
        if verifier is None:
            return AuthOutcome(failure="missing", detail="token verification is not configured")
        try:
            found = extract_token(scope, cookie=self.cookie, tickets=self.tickets, redeem=False)
            if found is None:
                return AuthOutcome(failure="missing")
            if found.source == "ticket" and self.tickets is not None:
                token = await self.tickets.redeem_async(
                    found.token, path=str(scope.get("path")), now=self.clock()
                )
                if token is None:
                    raise TokenError(
                        "bad_ticket",
                        "the ticket is unknown, expired, already used or for another path",
                    )
                found = ExtractedToken(token, "ticket")
            claims = verifier.verify(found.token, now=self.clock())
        except TokenError as exc:
            return AuthOutcome(failure=exc.kind, detail=exc.message)
        if found.source in ("cookie", "ticket") and not origin_allowed(
            _origin(scope), self.allowed_origins
        ):
            # A browser sends the cookie with a handshake any page opens (cross-site
            # WebSocket hijacking): only the listed origins may use it.
            return AuthOutcome(
                claims=claims,
                forbidden=f"origin not allowed for {found.source} auth: see [auth] allowed_origins",
            )
        if self.authorize is not None:
            reason = self.authorize(claims, scope)
            if inspect.isawaitable(reason):
                reason = await reason
            if reason:
                return AuthOutcome(claims=claims, forbidden=str(reason))
        return AuthOutcome(claims=claims)

    def _browser_form(self, scope: Scope) -> bool:
        form = denial_form(
            self.mode,
            http_response_supported="websocket.http.response" in scope.get("extensions", {}),
            from_browser=any(name == b"origin" for name, _ in scope.get("headers", ())),
        )
        return form == "close"

    async def _deny(
        self, scope: Scope, send: Send, kind: DenyKind, detail: str, subprotocol: str | None
    ) -> None:
        spec = TABLE[kind]
        if self.metrics is not None:
            self.metrics.handshakes.labels(str(kind)).inc()
        logger.info("websocket %s denied: %s (%s)", scope.get("path"), kind, detail)
        if self._browser_form(scope):
            await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": []})
            await send(
                {"type": "websocket.close", "code": int(spec.close_code), "reason": _reason(detail)}
            )
            if self.metrics is not None:
                self.metrics.closes.labels(str(int(spec.close_code))).inc()
            return
        status, headers, body = denial_response(kind, detail)
        _denied_here.set(True)
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})

    async def _serve(
        self,
        scope: Scope,
        connect: Message,
        receive: Receive,
        send: Send,
        accepted: Accept,
        offered: list[str],
        subprotocol: str | None,
    ) -> None:
        state = dict(scope.get("state") or {})
        state["claims"] = dict(accepted.claims)
        state["subject"] = accepted.subject
        inner_scope = {**scope, "state": state, "subprotocols": strip_token_subprotocols(offered)}
        channel = _Channel(self, connect, receive, send, subprotocol, accepted.subject)
        connection = Connection(accepted.subject, channel.close)
        self.connections.add(connection)
        if self.metrics is not None and self._accepted is not None:
            self._accepted.inc()
            self.metrics.active.inc()
        channel.schedule_expiry(accepted.claims)
        try:
            await self.app(inner_scope, channel.receive, channel.send)
        except Exception as exc:
            if channel.closed or isinstance(exc, WebSocketDisconnect | ClosedByGuard):
                logger.debug("websocket handler ended after close: %r", exc)
            else:
                await self._internal_error(scope, channel, exc)
        else:
            if not channel.closed:
                await self._finish(scope, channel)
        finally:
            channel.cancel_expiry()
            self.connections.remove(connection)
            if self.metrics is not None:
                self.metrics.active.dec()

    async def _finish(self, scope: Scope, channel: _Channel) -> None:
        """The handler returned without closing: end the connection with 1000, never as a
        silent drop (no close frame: the client sees 1006) or an HTTP 500 for a handler that
        never accepted."""
        if channel.accepted:
            logger.info(
                "websocket handler %s returned without closing: closed with 1000", scope.get("path")
            )
        else:
            logger.warning(
                "websocket handler %s returned without accepting: accepted and closed with 1000",
                scope.get("path"),
            )
        try:
            await channel.close(CloseCode.NORMAL, "handler finished")
        except Exception as send_exc:  # the client is gone; nothing more to tell it
            logger.debug("could not close the finished connection: %r", send_exc)

    async def _internal_error(self, scope: Scope, channel: _Channel, exc: Exception) -> None:
        error_id = os.urandom(4).hex()
        logger.error(
            "unhandled exception in websocket handler %s (error id %s)",
            scope.get("path"),
            error_id,
            exc_info=exc,
        )
        reason = f"internal error (id {error_id})"
        try:
            # Also before accept: the guard admitted the connection, so it ends with a close
            # code (accept, then 1011) that a browser can read, not an HTTP 500 (1006).
            await channel.close(CloseCode.INTERNAL_ERROR, reason)
        except Exception as send_exc:  # the transport is gone; nothing more to tell the client
            logger.debug("could not report error %s to the client: %r", error_id, send_exc)


class _Channel:
    """One connection's view of ``receive``/``send``, with the guard's rules applied."""

    __slots__ = (
        "_connect",
        "_expiry",
        "_last",
        "_receive",
        "_tokens",
        "accepted",
        "close_code",
        "closed",
        "downstream",
        "guard",
        "subject",
        "subprotocol",
    )

    def __init__(
        self,
        guard: WebSocketGuard,
        connect: Message,
        receive: Receive,
        send: Send,
        subprotocol: str | None,
        subject: str,
    ) -> None:
        self.guard = guard
        self._connect: Message | None = connect
        self._receive = receive
        self.downstream = send
        self.subprotocol = subprotocol
        self.subject = subject
        self.accepted = False
        self.closed = False
        self.close_code = 1000
        self._expiry: asyncio.TimerHandle | None = None
        rate = guard.message_rate
        self._tokens = float(rate.burst) if rate is not None else 0.0
        self._last = time.monotonic()

    async def send(self, message: Message) -> None:
        if self.closed:
            raise ClosedByGuard(f"connection already closed with code {self.close_code}")
        kind = message["type"]
        if kind == "websocket.send":
            await self.downstream(message)
            return
        if kind == "websocket.accept":
            self.accepted = True
            if message.get("subprotocol") is None and self.subprotocol is not None:
                message = {**message, "subprotocol": self.subprotocol}
        elif kind == "websocket.close":
            self.closed = True
            self.close_code = int(message.get("code", 1000))
            self._count_close(self.close_code)
        await self.downstream(message)

    async def receive(self) -> Message:
        if self._connect is not None:
            message, self._connect = self._connect, None
            return message
        while True:
            if self.closed:
                return {"type": "websocket.disconnect", "code": self.close_code}
            message = await self._receive()
            if message["type"] != "websocket.receive":
                if message["type"] == "websocket.disconnect" and not self.closed:
                    self.closed = True
                    self.close_code = int(message.get("code", 1005))
                return message
            limit = self.guard.max_message_bytes
            if limit is not None and _too_big(message, limit):
                await self.close(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
                continue
            rate = self.guard.message_rate
            if rate is not None:
                now = time.monotonic()
                admitted, self._tokens = admit_message(self._tokens, self._last, now, rate)
                self._last = now
                if not admitted:
                    logger.info(
                        "websocket %s: message rate over %g/s, closing with 1008",
                        self.subject,
                        rate.per_second,
                    )
                    await self.close(
                        CloseCode.POLICY_VIOLATION,
                        f"message rate over {rate.per_second:g}/s (burst {rate.burst})",
                    )
                    continue
            text = message.get("text")
            # Cheap pre-check: only messages that mention the refresh type are parsed here.
            if (
                text is not None
                and REFRESH_MESSAGE_TYPE in text[:128]
                and await self._refresh(text)
            ):
                continue
            return message

    async def close(self, code: int, reason: str) -> None:
        """Close from the guard's side (expiry, drain, size limit, internal error)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = int(code)
        self.cancel_expiry()
        if not self.accepted:
            # Closing before accept refuses the handshake; browsers then see 1006, so accept first.
            await self.downstream(
                {"type": "websocket.accept", "subprotocol": self.subprotocol, "headers": []}
            )
            self.accepted = True
        self._count_close(code)
        await self.downstream(
            {"type": "websocket.close", "code": int(code), "reason": _reason(reason)}
        )

    def _count_close(self, code: int) -> None:
        if self.guard.metrics is not None:
            self.guard.metrics.closes.labels(str(code)).inc()

    def schedule_expiry(self, claims: Mapping[str, Any]) -> None:
        self.cancel_expiry()
        grace = self.guard.expiry_grace
        if grace is None:
            verifier = self.guard.verifier
            grace = verifier.settings.leeway if verifier is not None else 0.0
        deadline = expiry_deadline(claims, grace)
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.guard.clock())
        self._expiry = loop.call_later(delay, self._expire)

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expire(self) -> None:
        self._expiry = None
        task = asyncio.ensure_future(self.close(CloseCode.UNAUTHORIZED, "token expired"))
        task.add_done_callback(_log_failure)

    async def _refresh(self, text: str) -> bool:
        """Handle ``{"type": "auth.refresh", "token": ...}``. Returns whether it was one."""
        try:
            data = json.loads(text)
        except ValueError:
            return False
        if not isinstance(data, dict) or data.get("type") != REFRESH_MESSAGE_TYPE:
            return False
        verifier = self.guard.verifier
        token = data.get("token")
        reply: dict[str, Any]
        try:
            if verifier is None or not isinstance(token, str):
                raise TokenError("missing", "auth.refresh needs a 'token' string")
            claims = verifier.verify(token, now=self.guard.clock())
            if str(claims.get("sub")) != self.subject:
                raise TokenError("bad_subject", "a refresh token must have the same 'sub'")
        except TokenError as exc:
            reply = {"type": "auth.refresh_failed", "error": exc.kind, "detail": exc.message}
        else:
            self.schedule_expiry(claims)
            reply = {"type": "auth.refreshed", "exp": claims.get("exp")}
        if self.accepted and not self.closed:
            await self.downstream({"type": "websocket.send", "text": json.dumps(reply)})
        return True


def _origin(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if bytes(name).lower() == b"origin":
            return bytes(value).decode("latin-1")
    return None


def _too_big(message: Message, limit: int) -> bool:
    data = message.get("bytes")
    if data is not None:
        return len(data) > limit
    text = message.get("text") or ""
    # A str is at most 4 bytes per character: encode only when it could be over.
    return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)


def _reason(text: str) -> str:
    """Close reasons are limited to 123 bytes (RFC 6455 §5.5)."""
    encoded = text.encode()
    if len(encoded) <= 123:
        return text
    return encoded[:120].decode(errors="ignore") + "..."


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("closing an expired connection failed: %r", task.exception())
