"""Finding the token of a handshake scope, and subprotocol negotiation."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from safeship.errors import TokenError
from safeship.tokens import (
    AUTH_SUBPROTOCOL,
    SUBPROTOCOL_PREFIX,
    ExtractedToken,
    TicketStore,
    extract_token,
    mint,
    negotiate_subprotocol,
    parse_bearer,
    strip_token_subprotocols,
)

NOW = 1_800_000_000.0
TOKEN = mint("extract-secret-0123456789-abcdefghijklmnop", "alice", now=NOW)


def _subprotocol(token: str | bytes) -> str:
    raw = token.encode() if isinstance(token, str) else token
    return SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _scope(
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    query: bytes = b"",
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/ws",
        "headers": headers or [],
        "query_string": query,
    }
    if subprotocols is not None:
        scope["subprotocols"] = subprotocols
    return scope


def _malformed(scope: dict[str, Any], **kwargs: Any) -> TokenError:
    with pytest.raises(TokenError) as caught:
        extract_token(scope, **kwargs)
    assert caught.value.kind == "malformed"
    return caught.value


def test_nothing_to_extract() -> None:
    assert extract_token(_scope()) is None
    assert (
        extract_token(_scope([(b"cookie", f"session={TOKEN}".encode())])) is None
    )  # no cookie set
    assert extract_token(_scope(subprotocols=["chat.v1", AUTH_SUBPROTOCOL])) is None


def test_from_the_authorization_header() -> None:
    found = extract_token(_scope([(b"authorization", f"Bearer {TOKEN}".encode())]))
    assert found == ExtractedToken(TOKEN, "header")
    assert TOKEN not in repr(found)
    lower = extract_token(_scope([(b"authorization", f"bearer  {TOKEN} ".encode())]))
    assert lower is not None and lower.token == TOKEN


def test_from_the_subprotocol_without_padding() -> None:
    entry = _subprotocol(TOKEN)
    assert not entry.endswith("=")
    found = extract_token(_scope(subprotocols=["chat.v1", entry, AUTH_SUBPROTOCOL]))
    assert found == ExtractedToken(TOKEN, "subprotocol")
    padded = entry + "=" * (-len(entry[4:]) % 4)
    assert extract_token(_scope(subprotocols=[padded])) == found


def test_subprotocol_from_the_header_when_the_scope_has_no_list() -> None:
    header = f"chat.v1, {_subprotocol(TOKEN)}".encode()
    found = extract_token(_scope([(b"sec-websocket-protocol", header)]))
    assert found == ExtractedToken(TOKEN, "subprotocol")


def test_from_the_configured_cookie() -> None:
    headers = [(b"cookie", f"theme=dark; session={TOKEN}".encode())]
    assert extract_token(_scope(headers), cookie="session") == ExtractedToken(TOKEN, "cookie")
    assert extract_token(_scope(headers), cookie="other") is None


def test_from_a_ticket_once() -> None:
    tickets = TicketStore(ttl=30)
    ticket = tickets.issue(TOKEN, now=NOW)
    scope = _scope(query=f"x=1&ticket={ticket}".encode())
    found = extract_token(scope, tickets=tickets, now=NOW + 1)
    assert found == ExtractedToken(TOKEN, "ticket")
    with pytest.raises(TokenError) as caught:
        extract_token(scope, tickets=tickets, now=NOW + 2)
    assert caught.value.kind == "bad_ticket"
    assert ticket not in caught.value.message


@pytest.mark.parametrize(
    ("query", "store"),
    [
        (b"ticket=unknown", True),
        (b"ticket=", True),
        (b"ticket=a&ticket=b", True),
        (b"ticket=a", False),
    ],
)
def test_bad_tickets(query: bytes, store: bool) -> None:
    with pytest.raises(TokenError) as caught:
        extract_token(_scope(query=query), tickets=TicketStore() if store else None, now=NOW)
    assert caught.value.kind == "bad_ticket"


def test_expired_ticket() -> None:
    tickets = TicketStore(ttl=30)
    ticket = tickets.issue(TOKEN, now=NOW)
    with pytest.raises(TokenError) as caught:
        extract_token(_scope(query=f"ticket={ticket}".encode()), tickets=tickets, now=NOW + 30)
    assert caught.value.kind == "bad_ticket"


def test_precedence_header_subprotocol_cookie_ticket() -> None:
    tickets = TicketStore()
    ticket = tickets.issue("ticket.token.value", now=NOW)
    other = mint("extract-secret-0123456789-abcdefghijklmnop", "bob", now=NOW)
    headers = [(b"cookie", b"session=cookie.token.value")]
    query = f"ticket={ticket}".encode()
    full = _scope(
        [(b"authorization", f"Bearer {TOKEN}".encode()), *headers], [_subprotocol(other)], query
    )
    kwargs: dict[str, Any] = {"cookie": "session", "tickets": tickets, "now": NOW}
    assert extract_token(full, **kwargs) == ExtractedToken(TOKEN, "header")
    no_header = _scope(headers, [_subprotocol(other)], query)
    assert extract_token(no_header, **kwargs) == ExtractedToken(other, "subprotocol")
    assert extract_token(_scope(headers, [], query), **kwargs) == ExtractedToken(
        "cookie.token.value", "cookie"
    )
    # Sources of higher precedence never spend the ticket.
    assert len(tickets) == 1
    assert extract_token(_scope(query=query), **kwargs) == ExtractedToken(
        "ticket.token.value", "ticket"
    )


@pytest.mark.parametrize(
    "value",
    [
        b"Basic dXNlcjpwYXNz",
        b"Bearer",
        b"Bearer ",
        TOKEN.encode(),
        b"Bearer two tokens",
        b"Bearer \x00abc",
        b"Bearer abc\r\nX-Injected: 1",
        b"Bearer \xff\xfe\xfd",
        b"Bearer caf\xe9",
    ],
)
def test_malformed_authorization_header(value: bytes) -> None:
    error = _malformed(_scope([(b"authorization", value)]))
    assert "Authorization" in error.message or "bearer token" in error.message


def test_two_authorization_headers_are_malformed() -> None:
    header = (b"authorization", f"Bearer {TOKEN}".encode())
    _malformed(_scope([header, header]))


@pytest.mark.parametrize(
    "entry",
    [
        "jwt.",
        "jwt.!!!notbase64",
        "jwt.abc=def",
        _subprotocol(b"\xff\xfe\xfd\xfc"),
        _subprotocol("not a token"),
        _subprotocol("line\nbreak"),
    ],
)
def test_malformed_subprotocol(entry: str) -> None:
    error = _malformed(_scope(subprotocols=[entry]))
    assert "jwt." in error.message


def test_two_token_subprotocols_are_malformed() -> None:
    _malformed(_scope(subprotocols=[_subprotocol(TOKEN), _subprotocol(TOKEN)]))


def test_garbage_cookie_header_is_malformed() -> None:
    _malformed(_scope([(b"cookie", b"session=\x01\x02")]), cookie="session")


def test_parse_bearer() -> None:
    assert parse_bearer(f"Bearer {TOKEN}") == TOKEN
    assert parse_bearer(b"BEARER abc.def.ghi") == "abc.def.ghi"
    with pytest.raises(TokenError):
        parse_bearer("Token abc")


def test_negotiate_never_echoes_the_token() -> None:
    entry = _subprotocol(TOKEN)
    assert negotiate_subprotocol([entry, "chat.v2", "chat.v1"], ["chat.v1", "chat.v2"]) == "chat.v2"
    assert negotiate_subprotocol([entry, AUTH_SUBPROTOCOL], ["chat.v1"]) == AUTH_SUBPROTOCOL
    assert negotiate_subprotocol([entry]) is None
    assert negotiate_subprotocol([entry], [entry]) is None
    assert negotiate_subprotocol([]) is None


def test_strip_token_subprotocols() -> None:
    entry = _subprotocol(TOKEN)
    assert strip_token_subprotocols(["chat.v1", entry, AUTH_SUBPROTOCOL]) == [
        "chat.v1",
        AUTH_SUBPROTOCOL,
    ]
