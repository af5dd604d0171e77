"""Finding the token of a WebSocket handshake: header, subprotocol, cookie or ticket.

Re-exported from ``safeship.tokens``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

from starlette.requests import cookie_parser
from starlette.types import Scope

from ..errors import TokenError

if TYPE_CHECKING:
    from .tickets import Tickets, TicketStore

__all__ = [
    "AUTH_SUBPROTOCOL",
    "SUBPROTOCOL_PREFIX",
    "ExtractedToken",
    "extract_token",
    "negotiate_subprotocol",
    "parse_bearer",
    "strip_token_subprotocols",
]

SUBPROTOCOL_PREFIX = "jwt."
AUTH_SUBPROTOCOL = "jwt-auth"

_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]++=*+")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


@dataclass(frozen=True)
class ExtractedToken:
    token: str = field(repr=False)
    source: Literal["header", "subprotocol", "cookie", "ticket"]


# Runs on every handshake: one regex scan instead of a Python-level loop per character.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NOT_LATIN1 = re.compile(r"[^\x00-\xff]")


def _header_text(value: Any, name: str) -> str:
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
    elif isinstance(value, str) and not _NOT_LATIN1.search(value):
        text = value
    else:
        raise TokenError("malformed", f"the {name} header is not latin-1 text")
    if _CONTROL.search(text):
        raise TokenError("malformed", f"the {name} header holds control characters")
    return text


def parse_bearer(value: str | bytes) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Raises:
        TokenError: ``malformed`` when the value is not ``Bearer <token68>``.
    """
    scheme, _, rest = _header_text(value, "Authorization").strip().partition(" ")
    token = rest.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenError(
            "malformed",
            "the Authorization header must be 'Bearer <token>'",
            hint="send 'Authorization: Bearer <jwt>'",
        )
    if not _TOKEN68.fullmatch(token):
        raise TokenError("malformed", "the bearer token holds characters a token cannot have")
    return token


def _header_values(scope: Scope, name: bytes) -> list[Any]:
    return [value for key, value in scope.get("headers") or () if bytes(key).lower() == name]


def _offered_subprotocols(scope: Scope) -> list[str]:
    if "subprotocols" in scope:
        return [str(p) for p in scope["subprotocols"] or ()]
    offered: list[str] = []
    for value in _header_values(scope, b"sec-websocket-protocol"):
        text = _header_text(value, "Sec-WebSocket-Protocol")
        offered.extend(p.strip() for p in text.split(",") if p.strip())
    return offered


def _decode_subprotocol(entry: str) -> str:
    payload = entry[len(SUBPROTOCOL_PREFIX) :]
    bad = TokenError(
        "malformed",
        f"the {SUBPROTOCOL_PREFIX}<token> subprotocol does not carry base64url(JWT)",
        hint="offer the subprotocol 'jwt.' + base64url(token), without padding",
    )
    if not _B64URL.fullmatch(payload):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(payload.rstrip("=") + "=" * (-len(payload.rstrip("=")) % 4))
        token = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    if not _TOKEN68.fullmatch(token):
        raise bad
    return token


def extract_token(
    scope: Scope,
    *,
    cookie: str | None = None,
    tickets: TicketStore | Tickets | None = None,
    now: float | None = None,
    redeem: bool = True,
) -> ExtractedToken | None:
    """The handshake's token: the ``Authorization: Bearer`` header, then a ``jwt.<base64url>``
    subprotocol, then the ``cookie`` named, then a one-time ``ticket`` query parameter
    (redeemed from ``tickets``; with ``redeem=False`` the ticket itself is returned, for a
    caller that redeems it from an asynchronous store). None when there is none.

    The ticket is honoured only under the exact parameter name ``ticket``: an encoded name
    (``tic%6bet``) is not decoded into it.

    Raises:
        TokenError: ``malformed`` for a malformed Authorization header or ``jwt.``
            subprotocol (or garbage bytes in them); ``bad_ticket`` for a ticket that is
            unknown, expired or already used.
    """
    authorization = _header_values(scope, b"authorization")
    if len(authorization) > 1:
        raise TokenError("malformed", "the handshake has more than one Authorization header")
    if authorization:
        return ExtractedToken(parse_bearer(authorization[0]), "header")

    carrying = [p for p in _offered_subprotocols(scope) if p.startswith(SUBPROTOCOL_PREFIX)]
    if len(carrying) > 1:
        raise TokenError("malformed", "the handshake offers more than one jwt.<token> subprotocol")
    if carrying:
        return ExtractedToken(_decode_subprotocol(carrying[0]), "subprotocol")

    if cookie:
        for value in _header_values(scope, b"cookie"):
            jar = cookie_parser(_header_text(value, "Cookie"))
            if jar.get(cookie):
                return ExtractedToken(jar[cookie], "cookie")

    values = _ticket_values(bytes(scope.get("query_string") or b""))
    if values is None:
        return None
    if tickets is None:
        raise TokenError("bad_ticket", "this service does not issue tickets")
    if not redeem:
        if len(values) != 1 or not values[0]:
            raise TokenError("bad_ticket", "the handshake needs exactly one non-empty ticket")
        return ExtractedToken(values[0], "ticket")
    redeem_now = getattr(tickets, "redeem", None)
    if redeem_now is None:
        raise TypeError(
            "extract_token(redeem=True) needs an in-memory TicketStore; with a shared store, "
            "pass redeem=False and redeem the ticket with redeem_async()"
        )
    token = redeem_now(values[0], now=now) if len(values) == 1 and values[0] else None
    if token is None:
        raise TokenError(
            "bad_ticket",
            "the ticket is unknown, expired or already used",
            hint="request a new ticket just before connecting; each one works once",
        )
    return ExtractedToken(token, "ticket")


def _ticket_values(query: bytes) -> list[str] | None:
    """The values of the parameter named exactly ``ticket`` (the name is compared before any
    percent-decoding; values are decoded), or None when there is none."""
    values = [
        unquote_plus(value.decode("latin-1"))
        for name, _, value in (part.partition(b"=") for part in query.split(b"&"))
        if name == b"ticket"
    ]
    return values or None


def strip_token_subprotocols(offered: Sequence[str]) -> list[str]:
    """``offered`` without the ``jwt.<token>`` entries, so the app never sees the token."""
    return [p for p in offered if not p.startswith(SUBPROTOCOL_PREFIX)]


def negotiate_subprotocol(offered: Sequence[str], app_supported: Sequence[str] = ()) -> str | None:
    """The subprotocol to echo on accept, never a ``jwt.<token>`` entry: the first offered one
    the app supports, else ``jwt-auth`` when offered, else None."""
    for protocol in strip_token_subprotocols(offered):
        if protocol in app_supported:
            return protocol
    return AUTH_SUBPROTOCOL if AUTH_SUBPROTOCOL in offered else None
