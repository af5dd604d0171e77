"""Limits: a per-connection message rate (1008, counted), subjects that cannot dodge the
per-user limit, and bad input answered at the protocol boundary instead of failing in
PostgreSQL with a traceback."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from safeship.core.handshake import MessageRate, admit_message
from safeship.tokens import mint

from ..e2e.conftest_agent import agent_services, auth  # noqa: F401  (fixture)
from ..service.conftest import SECRET, make_app


def test_the_bucket_refills_at_the_rate_and_caps_at_the_burst() -> None:
    rate = MessageRate(per_second=2, burst=3)
    tokens, admitted = 3.0, []
    for _ in range(5):
        ok, tokens = admit_message(tokens, 0.0, 0.0, rate)
        admitted.append(ok)
    assert admitted == [True, True, True, False, False]
    assert admit_message(tokens, 0.0, 0.5, rate)[0]  # one token back after half a second
    assert admit_message(0.0, 0.0, 100.0, rate)[1] == 2.0  # capped at the burst, minus one
    with pytest.raises(ValueError):
        MessageRate(per_second=float("inf"), burst=1)


def test_a_flood_on_one_connection_is_closed_with_1008_and_counted() -> None:
    ship, app = make_app(message_rate=MessageRate(per_second=5, burst=10))
    headers = {"authorization": f"Bearer {mint(SECRET, 'flood')}"}
    with TestClient(app) as client, client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json()["type"] == "hello"
        answered = 0
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(1000):
                ws.send_text("ping")
                ws.receive_text()
                answered += 1
        assert closed.value.code == 1008 and "message rate" in closed.value.reason
        assert answered <= 20
    assert ship.metrics is not None
    assert ship.metrics.closes.labels("1008")._value.get() == 1


@pytest.mark.e2e
def test_reference_service_refuses_unstorable_input_on_postgresql(agent_services) -> None:  # noqa: F811
    server = agent_services.start(agent_services.postgres())
    bad_inputs = [
        '{"type": "start_agent", "request_id": "r1", "agent": "echo", "input": NaN}',
        '{"type": "start_agent", "request_id": "r2", "agent": "echo", "input": Infinity}',
        '{"type": "start_agent", "request_id": "r3", "agent": "echo", "input": 1e999}',
        '{"type": "start_agent", "request_id": "r4", "agent": "echo", "input": "a\\u0000b"}',
        '{"type": "start_agent", "request_id": "r5", "agent": "echo", "input": "\\ud800"}',
        '{"type": "start_agent", "request_id": "r6", "agent": "echo", "input": {"\\u0000": 1}}',
        '{"type": "resume", "request_id": "r7", "run_id": "x", "last_seq": 99999999999999999999}',
    ]
    with connect(server.ws_url + "/ws", additional_headers=auth(), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_established"
        for bad in bad_inputs:
            ws.send(bad)
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] == "error", (bad, reply)
            assert reply["code"] != "internal_error", (bad, reply)
        ws.send(json.dumps({"type": "ping", "request_id": "p"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    assert "Traceback" not in server.output()
