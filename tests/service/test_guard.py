"""The guard, in process (Starlette's TestClient speaks the websocket.http.response extension)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from safeship.core.handshake import Limits
from safeship.tokens import mint

from .conftest import SECRET, make_app


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def subprotocol(token: str) -> str:
    return "jwt." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def test_header_token_accepted_and_claims_reach_the_handler(service):
    ship, app = service
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers=bearer(mint(SECRET, "alice"))) as ws,
    ):
        assert ws.receive_json() == {"type": "hello", "sub": "alice"}
        ws.send_text("ping")
        assert ws.receive_text() == "ping"
    assert ship.metrics.handshakes.labels("accepted")._value.get() == 1


def test_subprotocol_token_is_accepted_and_jwt_auth_echoed(service):
    _, app = service
    token = mint(SECRET, "bob")
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", subprotocols=["jwt-auth", subprotocol(token)]) as ws,
    ):
        assert ws.accepted_subprotocol == "jwt-auth"
        assert ws.receive_json()["sub"] == "bob"


def test_ticket_is_single_use(service):
    _, app = service
    token = mint(SECRET, "carol")
    with TestClient(app) as client:
        response = client.post("/auth/ticket", headers=bearer(token))
        assert response.status_code == 201
        ticket = response.json()["ticket"]
        with client.websocket_connect(f"/ws?ticket={ticket}") as ws:
            assert ws.receive_json()["sub"] == "carol"
        with pytest.raises(WebSocketDenialResponse) as denied:
            client.websocket_connect(f"/ws?ticket={ticket}").__enter__()
        assert denied.value.status_code == 401


@pytest.mark.parametrize(
    ("headers", "expected_detail"),
    [
        ({}, "no token"),
        (bearer("not-a-jwt"), ""),
        (bearer(mint(SECRET, "x", ttl=-120)), "expired"),
        (bearer(mint("another-secret-that-is-long-enough-000000", "x")), ""),
        ({"authorization": "Basic abc"}, ""),
    ],
)
def test_bad_tokens_get_401_with_www_authenticate(service, headers, expected_detail):
    _, app = service
    with TestClient(app) as client, pytest.raises(WebSocketDenialResponse) as denied:
        client.websocket_connect("/ws", headers=headers).__enter__()
    response = denied.value
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    body = response.json()
    assert body["error"] == "invalid_token"
    assert expected_detail in body["detail"].lower()


def test_browser_clients_get_close_codes_instead(service):
    _, app = service
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers={"origin": "http://app.example"}) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == 4401


def test_forbidden_by_authorize_hook():
    _, app = make_app(
        authorize=lambda claims, scope: (
            None if claims.get("role") == "user" else "role 'user' required"
        )
    )
    with TestClient(app) as client:
        with client.websocket_connect("/ws", headers=bearer(mint(SECRET, "u", role="user"))) as ws:
            ws.receive_json()
        with pytest.raises(WebSocketDenialResponse) as denied:
            client.websocket_connect(
                "/ws", headers=bearer(mint(SECRET, "u", role="guest"))
            ).__enter__()
    assert denied.value.status_code == 403
    assert denied.value.json() == {"error": "forbidden", "detail": "role 'user' required"}


def test_per_user_limit_gives_429():
    _, app = make_app(limits=Limits(per_user=1))
    token = mint(SECRET, "dave")
    with TestClient(app) as client, client.websocket_connect("/ws", headers=bearer(token)) as first:
        first.receive_json()
        with pytest.raises(WebSocketDenialResponse) as denied:
            client.websocket_connect("/ws", headers=bearer(token)).__enter__()
        assert denied.value.status_code == 429
        assert denied.value.headers["retry-after"] == "5"
        # another user is not limited
        with client.websocket_connect("/ws", headers=bearer(mint(SECRET, "erin"))) as other:
            assert other.receive_json()["sub"] == "erin"


def test_handler_exception_closes_1011_with_error_id(service, caplog):
    _, app = service
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers=bearer(mint(SECRET, "f"))) as ws,
    ):
        ws.receive_json()
        ws.send_text("boom")
        with (
            caplog.at_level(logging.ERROR, logger="safeship.guard"),
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_text()
    assert closed.value.code == 1011
    error_id = closed.value.reason.split("id ")[1].rstrip(")")
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_message_too_big_closes_1009():
    _, app = make_app(max_message_bytes=64)
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers=bearer(mint(SECRET, "g"))) as ws,
    ):
        ws.receive_json()
        ws.send_text("x" * 65)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1009


def test_token_refresh_in_band(service):
    _, app = service
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers=bearer(mint(SECRET, "h"))) as ws,
    ):
        ws.receive_json()
        fresh = mint(SECRET, "h", ttl=3600)
        ws.send_text(json.dumps({"type": "auth.refresh", "token": fresh}))
        reply = ws.receive_json()
        assert reply["type"] == "auth.refreshed" and reply["exp"] > time.time() + 3000
        ws.send_text(json.dumps({"type": "auth.refresh", "token": mint(SECRET, "someone-else")}))
        assert ws.receive_json()["type"] == "auth.refresh_failed"
        # ordinary traffic is untouched
        ws.send_text("still here")
        assert ws.receive_text() == "still here"


def test_token_subprotocol_is_hidden_from_the_app():
    seen = {}

    async def app(scope, receive, send):
        seen["subprotocols"] = scope["subprotocols"]
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    ship, _ = make_app()
    guarded = ship.guard(app)
    asyncio.run(ship.startup.run())  # phases only, no server
    assert ship.startup.machine.ready
    token = mint(SECRET, "i")
    client = TestClient(guarded)
    with client.websocket_connect("/", subprotocols=["chat.v1", subprotocol(token)]):
        pass
    assert seen["subprotocols"] == ["chat.v1"]
