"""The close-code / HTTP-status table, in one place.

A refused WebSocket handshake is answered either with a real HTTP response (through the ASGI
``websocket.http.response`` extension) or, for browsers that cannot read handshake responses, by
accepting and closing at once with the matching close code. Codes follow the ``4000 + HTTP
status`` convention (as in graphql-ws) where no RFC 6455 code fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = [
    "DENIAL_HEADER",
    "TABLE",
    "CloseCode",
    "DenialSpec",
    "DenyKind",
    "close_meaning",
    "denial_response",
]


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TOO_MANY_CONNECTIONS = 4429


class DenyKind(StrEnum):
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    TOO_MANY = "too_many_connections"
    NOT_READY = "not_ready"
    DRAINING = "draining"
    INTERNAL = "internal_error"


@dataclass(frozen=True)
class DenialSpec:
    http_status: int
    close_code: CloseCode
    error: str
    """The ``error`` field of the JSON body."""
    client_action: str
    retry_after: int | None = None
    www_authenticate: bool = False


TABLE: dict[DenyKind, DenialSpec] = {
    DenyKind.UNAUTHENTICATED: DenialSpec(
        401,
        CloseCode.UNAUTHORIZED,
        "invalid_token",
        "get a new token, then reconnect",
        www_authenticate=True,
    ),
    DenyKind.FORBIDDEN: DenialSpec(403, CloseCode.FORBIDDEN, "forbidden", "do not retry"),
    DenyKind.TOO_MANY: DenialSpec(
        429,
        CloseCode.TOO_MANY_CONNECTIONS,
        "too_many_connections",
        "back off, then retry",
        retry_after=5,
    ),
    DenyKind.NOT_READY: DenialSpec(
        503, CloseCode.TRY_AGAIN_LATER, "not_ready", "retry shortly", retry_after=1
    ),
    DenyKind.DRAINING: DenialSpec(
        503,
        CloseCode.SERVICE_RESTART,
        "draining",
        "reconnect (to another instance)",
        retry_after=1,
    ),
    DenyKind.INTERNAL: DenialSpec(
        500, CloseCode.INTERNAL_ERROR, "internal_error", "retry; report the error id"
    ),
}

_MEANINGS: dict[int, str] = {
    1000: "normal closure",
    1001: "going away",
    1006: "abnormal closure (connection dropped without a close frame)",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
    1012: "service restart (draining): reconnect",
    1013: "try again later (not ready)",
    4401: "token missing, invalid or expired: get a new token, then reconnect",
    4403: "forbidden",
    4429: "too many connections: back off",
}


def close_meaning(code: int) -> str:
    """A human meaning for any close code, including unknown ones."""
    if code in _MEANINGS:
        return _MEANINGS[code]
    if 4000 <= code < 5000:
        return (
            f"application-defined (HTTP {code - 4000})" if code >= 4100 else "application-defined"
        )
    return "unknown close code"


DENIAL_HEADER = "x-safeship-denial"
"""Marks a refusal as the guard's own, with its error kind as the value: a client can tell a
denial from a framework's bare 403/404 for a WebSocket path that has no route."""


def denial_response(kind: DenyKind, detail: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON body of the HTTP answer to a refused handshake."""
    spec = TABLE[kind]
    body = json.dumps({"error": spec.error, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (DENIAL_HEADER.encode(), spec.error.encode()),
    ]
    if spec.www_authenticate:
        # RFC 6750 §3: the error code, never the token or why in detail.
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    if spec.retry_after is not None:
        headers.append((b"retry-after", str(spec.retry_after).encode()))
    return spec.http_status, headers, body
