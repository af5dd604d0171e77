"""The connection phases below the probe logic: DNS, TCP, and the ``websockets`` connector
that does TLS and the upgrade on a socket opened here.

``resolve`` and ``connect_tcp`` record what they saw into the probe's observation fields (a
plain dict) and return ``None`` on failure, so the caller stops at the first failed phase.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

__all__ = [
    "CLOSE_WAIT",
    "AddrInfo",
    "TimedConnect",
    "connect_tcp",
    "ms_since",
    "resolve",
    "ws_connector",
]

CLOSE_WAIT = 1.0
_USER_AGENT = f"safeship-probe websockets/{websockets.version.version}"

AddrInfo = tuple[int, int, int, str, Any]


def ms_since(start: float, end: float | None = None) -> float:
    """Milliseconds from a ``time.perf_counter()`` reading to ``end`` (default: now)."""
    return ((end if end is not None else time.perf_counter()) - start) * 1000.0


async def resolve(
    host: str,
    port: int,
    deadline: float,
    budget: float,
    seen: dict[str, Any],
    timings: dict[str, float],
) -> list[AddrInfo] | None:
    """``getaddrinfo`` by ``deadline`` (a loop time); timed as ``dns``. ``budget`` is the
    deadline in seconds, for the report."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        seen.update(timed_out_phase="dns", timeout_seconds=budget)
        return None
    except (OSError, UnicodeError) as exc:
        seen["dns_error"] = getattr(exc, "strerror", None) or str(exc)
        return None
    finally:
        timings["dns"] = ms_since(started)
    seen["resolved"] = True
    return list(dict.fromkeys(infos))


async def connect_tcp(
    infos: list[AddrInfo],
    deadline: float,
    budget: float,
    seen: dict[str, Any],
    timings: dict[str, float],
) -> socket.socket | None:
    """A connected non-blocking socket to the first address that accepts; timed as ``tcp``."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    first_error: OSError | None = None
    try:
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout_at(deadline):
                    await loop.sock_connect(sock, address)
            except TimeoutError:
                sock.close()
                seen.update(timed_out_phase="tcp", timeout_seconds=budget)
                return None
            except OSError as exc:
                sock.close()
                first_error = first_error or exc
                continue  # e.g. ::1 refused, 127.0.0.1 listening
            except BaseException:
                sock.close()
                raise
            return sock
    finally:
        timings["tcp"] = ms_since(started)
    if first_error is None:
        seen.update(connect_error="no address to connect to", connect_errno="EADDRNOTAVAIL")
    else:
        code = first_error.errno
        seen.update(
            # asyncio's message is "Connect call failed (addr)"; the errno says why.
            connect_error=os.strerror(code) if code else str(first_error),
            connect_errno=errno.errorcode.get(code, str(code)) if code else None,
        )
    return None


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs request headers (the Authorization header!) at DEBUG: never enable it."""

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


_LOGGER = _QuietLogger(logging.getLogger("safeship.probe"), {})


class TimedConnect(connect):
    """Records when the transport (TCP given, TLS done) is up, to time TLS apart from upgrade."""

    transport_ready: float | None = None

    async def open_tcp_connection(self) -> ClientConnection:
        connection = await super().open_tcp_connection()
        self.transport_ready = time.perf_counter()
        return connection


def ws_connector(
    url: str,
    sock: socket.socket,
    headers: dict[str, str],
    subprotocols: list[str],
    tls: dict[str, Any],
) -> TimedConnect:
    """A ``websockets`` connector for an already connected socket (no proxy, no keepalive).

    Raises:
        ValueError: a subprotocol that is not an HTTP token.
    """
    return TimedConnect(
        url,
        sock=sock,
        additional_headers=headers or None,
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        user_agent_header=_USER_AGENT,
        proxy=None,
        open_timeout=None,  # the caller's deadline covers TLS and upgrade
        ping_interval=None,
        close_timeout=CLOSE_WAIT,
        logger=_LOGGER,
        **tls,
    )
