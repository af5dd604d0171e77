"""Run a server with DEBUG logging, authenticate every way there is, and check that no secret,
token or ticket value reaches the output."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from safeship.testing import scaled, wait_until
from safeship.tokens import mint

from .conftest import SECRET

pytestmark = pytest.mark.e2e


def test_no_secret_token_or_ticket_in_debug_logs(spawn):
    server = spawn({"LOG_LEVEL": "DEBUG"}, log_level="debug")
    tokens = [mint(SECRET, f"user{i}") for i in range(4)]
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    ticket = httpx.post(server.url + "/auth/ticket", headers=headers).json()["ticket"]
    bad_ticket = "tkt-" + "z" * 30

    async def scenario() -> None:
        async with connect(server.ws_url + "/ws", additional_headers=headers) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth.refresh", "token": tokens[3]}))
            await ws.recv()
        encoded = base64.urlsafe_b64encode(tokens[1].encode()).decode().rstrip("=")
        async with connect(
            server.ws_url + "/ws", subprotocols=["jwt-auth", f"jwt.{encoded}"]
        ) as ws:
            await ws.recv()
        async with connect(f"{server.ws_url}/ws?ticket={ticket}") as ws:
            await ws.recv()
        with pytest.raises(InvalidStatus):
            async with connect(f"{server.ws_url}/ws?ticket={bad_ticket}&token={tokens[2]}"):
                pass

    asyncio.run(asyncio.wait_for(scenario(), scaled(20)))
    wait_until(lambda: "ticket" in server.output(), timeout=5)
    output = server.output()
    assert "/ws?ticket=" in output  # uvicorn did log the query string ...
    for value in [SECRET, ticket, bad_ticket, *tokens]:
        assert value not in output  # ... but never the values
    for t in tokens:
        assert t.split(".")[2] not in output  # not even the signature part
