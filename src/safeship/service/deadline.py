"""uvicorn HTTP protocols with a deadline on the request head (half-open and slowloris sockets).

uvicorn arms no timer before a response: a socket that never finishes its request head (nothing
sent, or a byte every few seconds) stays open forever, holding a file descriptor and a slot.
These subclasses close a connection whose request head (a WebSocket handshake included) is not
complete within ``SAFESHIP_HEAD_TIMEOUT`` seconds (default 10) of the connection or of the
end of the previous response. Select one on uvicorn's command line::

    uvicorn app:app --http safeship.service.deadline:H11HeadDeadline
    uvicorn app:app --http safeship.service.deadline:HttpToolsHeadDeadline

uvicorn (and h11/httptools) are imported when uvicorn asks for a class, not with this module:
the service library imports without them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
from typing import Any

# H11HeadDeadline and HttpToolsHeadDeadline are built on first access (see __getattr__).
__all__ = ["HEAD_TIMEOUT_ENV", "KEEP_ALIVE_SECONDS", "head_timeout", "uvicorn_options"]

HEAD_TIMEOUT_ENV = "SAFESHIP_HEAD_TIMEOUT"
_DEFAULT = 10.0
KEEP_ALIVE_SECONDS = 5
"""uvicorn's ``--timeout-keep-alive``: how long an idle connection may wait for its next
request after a response (uvicorn's default, stated so the bound is visible)."""

logger = logging.getLogger("safeship.deadline")


def head_timeout(environ: dict[str, str] | None = None) -> float:
    """Seconds a connection has to complete its request head: ``$SAFESHIP_HEAD_TIMEOUT`` when it
    is a finite number > 0, else 10."""
    raw = (os.environ if environ is None else environ).get(HEAD_TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return _DEFAULT
    return value if math.isfinite(value) and value > 0 else _DEFAULT


def uvicorn_options() -> list[str]:
    """The uvicorn options that bound the time to a complete request head, for the command
    lines safeship runs: ``--http`` with the head-deadline protocol (httptools' when httptools
    is installed, which is uvicorn's own choice then; else h11's), and ``--timeout-keep-alive``
    (between requests). The deadline itself is read by the server from
    ``$SAFESHIP_HEAD_TIMEOUT``."""
    import importlib.util

    http = "HttpToolsHeadDeadline" if importlib.util.find_spec("httptools") else "H11HeadDeadline"
    return [
        "--http", f"{__name__}:{http}", "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
    ]  # fmt: skip


class _Deadline:
    """The timer: armed while the peer owes a request head, cancelled when the head is in."""

    def __init__(self, protocol: Any, waiting: Any) -> None:
        self._protocol = protocol
        self._waiting = waiting  # () -> bool: still no complete head
        self._timeout = head_timeout()
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = self._protocol.loop.call_later(self._timeout, self._expire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        transport = self._protocol.transport
        # After a WebSocket upgrade the transport belongs to another protocol: not ours to close.
        if transport.is_closing() or transport.get_protocol() is not self._protocol:
            return
        if self._waiting():
            logger.info(
                "closing a connection from %s: no complete request head within %gs",
                _peer(self._protocol),
                self._timeout,
            )
            transport.close()


def _peer(protocol: Any) -> str:
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "?"


@functools.cache
def _h11_class() -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class H11HeadDeadline(H11Protocol):
        """uvicorn's h11 protocol, closing connections that send no request head in time."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = _Deadline(self, lambda: self.conn.their_state is h11.IDLE)
            self._deadline.arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                self._deadline.arm()  # between requests: the next head is owed
            else:
                self._deadline.cancel()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return H11HeadDeadline


@functools.cache
def _httptools_class() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsHeadDeadline(HttpToolsProtocol):
        """uvicorn's httptools protocol with the same request-head deadline."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_in = False
            self._deadline = _Deadline(self, lambda: not self._head_in)
            self._deadline.arm()

        def on_message_begin(self) -> None:
            self._head_in = False
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._head_in = True
            self._deadline.cancel()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._head_in = False
            self._deadline.arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return HttpToolsHeadDeadline


def __getattr__(name: str) -> Any:
    if name == "H11HeadDeadline":
        return _h11_class()
    if name == "HttpToolsHeadDeadline":
        return _httptools_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
