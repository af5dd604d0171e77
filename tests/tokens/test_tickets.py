"""TicketStore (single use, expiry, bounded) and the ticket endpoint."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from safeship.tokens import TicketStore, TokenSettings, TokenVerifier, mint

NOW = 1_800_000_000.0
SECRET = "tickets-secret-0123456789-abcdefghijklmnop"


def test_single_use() -> None:
    store = TicketStore(ttl=30)
    ticket = store.issue("jwt-a", now=NOW)
    assert len(ticket) >= 40
    assert store.redeem(ticket, now=NOW + 1) == "jwt-a"
    assert store.redeem(ticket, now=NOW + 1) is None
    assert store.redeem("never-issued", now=NOW) is None


def test_expiry_with_explicit_now() -> None:
    store = TicketStore(ttl=30)
    ticket = store.issue("jwt-a", now=NOW)
    assert store.redeem(ticket, now=NOW + 30) is None
    ticket = store.issue("jwt-b", now=NOW)
    assert store.redeem(ticket, now=NOW + 29.999) == "jwt-b"


def test_tickets_are_unguessable_and_distinct() -> None:
    store = TicketStore()
    tickets = {store.issue("jwt", now=NOW) for _ in range(200)}
    assert len(tickets) == 200


def test_bounded_size_drops_the_oldest() -> None:
    store = TicketStore(ttl=30, max_entries=2)
    first = store.issue("jwt-1", now=NOW)
    second = store.issue("jwt-2", now=NOW)
    third = store.issue("jwt-3", now=NOW)
    assert len(store) == 2
    assert store.redeem(first, now=NOW) is None
    assert store.redeem(second, now=NOW) == "jwt-2"
    assert store.redeem(third, now=NOW) == "jwt-3"


def test_expired_tickets_are_purged_on_issue() -> None:
    store = TicketStore(ttl=30)
    for _ in range(5):
        store.issue("old", now=NOW)
    store.issue("new", now=NOW + 31)
    assert len(store) == 1


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        TicketStore(ttl=0)
    with pytest.raises(ValueError):
        TicketStore(max_entries=0)


@pytest.fixture
def client_and_store() -> tuple[TestClient, TicketStore]:
    from safeship.tokens import ticket_endpoint

    store = TicketStore(ttl=20)
    verifier = TokenVerifier(SECRET, TokenSettings(leeway=0))
    app = Starlette(
        routes=[Route("/ws/ticket", ticket_endpoint(verifier, store), methods=["POST", "GET"])]
    )
    return TestClient(app), store


def test_endpoint_issues_a_ticket_for_a_valid_token(
    client_and_store: tuple[TestClient, TicketStore],
) -> None:
    client, store = client_and_store
    token = mint(SECRET, "alice")
    response = client.post("/ws/ticket", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    body = response.json()
    assert body["expires_in"] == 20
    assert response.headers["cache-control"] == "no-store"
    assert store.redeem(body["ticket"]) == token
    assert store.redeem(body["ticket"]) is None


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer <token>"),
        ({"Authorization": "Bearer not-a-jwt"}, "compact JWT"),
        (
            {"Authorization": f"Bearer {mint('other-secret-0123456789-abcdefghijk', 'a')}"},
            "signature",
        ),
        ({"Authorization": f"Bearer {mint(SECRET, 'alice', ttl=-60)}"}, "expired"),
    ],
)
def test_endpoint_rejects_missing_and_invalid_tokens(
    client_and_store: tuple[TestClient, TicketStore], headers: dict[str, str], detail: str
) -> None:
    client, store = client_and_store
    response = client.post("/ws/ticket", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    body = response.json()
    assert body["error"] == "invalid_token"
    assert detail in body["detail"]
    assert len(store) == 0


def test_endpoint_wants_post(client_and_store: tuple[TestClient, TicketStore]) -> None:
    client, _ = client_and_store
    response = client.get("/ws/ticket", headers={"Authorization": f"Bearer {mint(SECRET, 'a')}"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
