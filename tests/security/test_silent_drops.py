"""No silent drops: every connection the guard admitted ends with a definite close code, and
the reference service answers bad input with an ``error`` reply and keeps the connection."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from safeship.config import Manifest
from safeship.service import Safeship
from safeship.testing import run_server
from safeship.tokens import mint

from ..e2e.conftest_agent import agent_services, auth  # noqa: F401  (fixture)

SECRET = "silent-drops-secret-0123456789-abcdefghijkl"


async def returns_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")


async def returns_without_accept(websocket: WebSocket) -> None:
    return None


async def fails_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    json.loads("[" * 100_000)  # RecursionError


async def fails_before_accept(websocket: WebSocket) -> None:
    raise RuntimeError("broken before accept")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    ship = Safeship(
        manifest=Manifest(),
        environ={"SAFESHIP_ENV": "test", "JWT_SECRET": SECRET},
        on_failure="raise",
    )
    routes = [
        WebSocketRoute("/after-accept", returns_after_accept),
        WebSocketRoute("/no-accept", returns_without_accept),
        WebSocketRoute("/fails", fails_after_accept),
        WebSocketRoute("/fails-early", fails_before_accept),
    ]
    app = Starlette(routes=routes, lifespan=ship.lifespan)
    ship.install(app)
    with run_server(app, ws="websockets-sansio") as base:
        yield base.replace("http", "ws")


def _close(url: str, path: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {mint(SECRET, 'alice')}"}
    with connect(url + path, additional_headers=headers, open_timeout=5, close_timeout=5) as ws:
        try:
            while True:
                ws.recv(timeout=5)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame (1006)"
            return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/after-accept", 1000, "handler finished"),
        ("/no-accept", 1000, "handler finished"),
        ("/fails", 1011, "internal error (id "),
        ("/fails-early", 1011, "internal error (id "),
    ],
)
def test_every_admitted_connection_ends_with_a_close_code(
    url: str, path: str, code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="safeship.guard")
    for _ in range(3):
        got_code, got_reason = _close(url, path)
        assert got_code == code and reason in got_reason
    ours = [r for r in caplog.records if r.name == "safeship.guard" and path in r.getMessage()]
    assert len(ours) == 3  # once per connection


@pytest.mark.e2e
def test_reference_service_answers_deep_or_malformed_json_and_keeps_the_connection(
    agent_services,  # noqa: F811
) -> None:
    server = agent_services.start()
    with connect(server.ws_url + "/ws", additional_headers=auth(), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_established"
        for bad in ("[" * 1500 + "]" * 1500, '{"type": "ping", "x": ' + "[" * 1500, "{nope"):
            ws.send(bad)
            reply = json.loads(ws.recv(timeout=5))
            assert reply["type"] == "error" and reply["code"] == "invalid_json", reply
        ws.send(json.dumps({"type": "ping", "request_id": "p1"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    assert "Traceback" not in server.output()
