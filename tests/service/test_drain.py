"""The drain endpoint on a real uvicorn server: only a short-lived drain token drains, and a
drain closes the open WebSockets with 1012 and drops readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from safeship.config import AuthConfig, Manifest, ServiceConfig
from safeship.errors import ConfigError
from safeship.service import DRAIN_AUDIENCE, Safeship, mint_drain_token
from safeship.testing import run_server, scaled
from safeship.tokens import mint

from .conftest import SECRET, echo

PATH = "/_safeship/drain"


def make_app(*, drain_path: str | None = PATH, audience: str | None = None) -> Starlette:
    ship = Safeship(
        manifest=Manifest(
            service=ServiceConfig(drain_path=drain_path), auth=AuthConfig(audience=audience)
        ),
        environ={"SAFESHIP_ENV": "test", "JWT_SECRET": SECRET},
        on_failure="raise",
        drain_seconds=0.5,
    )
    app = Starlette(routes=[WebSocketRoute("/ws", echo)], lifespan=ship.lifespan)
    ship.install(app)
    return app


@pytest.fixture
def server() -> Iterator[str]:
    with run_server(make_app()) as url:
        yield url


def drain(url: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}{PATH}", headers=headers, timeout=scaled(5))


def ready(url: str) -> int:
    return httpx.get(f"{url}/health/ready", timeout=scaled(5)).status_code


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws"


def test_the_endpoint_is_off_unless_configured() -> None:
    with run_server(make_app(drain_path=None)) as url:
        assert drain(url, mint_drain_token(SECRET)).status_code in (404, 405)
        assert ready(url) == 200


def test_no_token_or_a_bad_one_is_401(server: str) -> None:
    missing = drain(server, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    other_key = mint_drain_token("another-secret-that-is-long-enough-0123456789")
    assert drain(server, other_key).status_code == 401
    assert drain(server, "not a token").status_code == 401
    assert ready(server) == 200


def test_a_client_token_can_never_drain(server: str) -> None:
    client = mint(SECRET, "alice")
    reply = drain(server, client)
    assert reply.status_code == 403 and reply.json()["error"] == "forbidden"
    # A client token that also names the drain audience is still not a drain token.
    both = mint(SECRET, "alice", aud=["clients", DRAIN_AUDIENCE])
    assert drain(server, both).status_code == 403
    assert ready(server) == 200


def test_a_long_lived_drain_token_is_refused(server: str) -> None:
    forever = mint(SECRET, "deployer", ttl=3600, audience=DRAIN_AUDIENCE)
    reply = drain(server, forever)
    assert reply.status_code == 403 and "at most" in reply.json()["detail"]
    with pytest.raises(ValueError, match="at most"):
        mint_drain_token(SECRET, ttl=3600)


def test_a_drain_token_cannot_open_a_websocket(server: str) -> None:
    async def scenario() -> int:
        token = mint_drain_token(SECRET)
        with pytest.raises(InvalidStatus) as denied:
            async with connect(ws_url(server), additional_headers=bearer(token)):
                pass
        return denied.value.response.status_code

    assert asyncio.run(scenario()) == 401


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_drain_token_drains_readiness_and_closes_websockets_with_1012(server: str) -> None:
    async def scenario() -> tuple[list[int], int, int]:
        clients = [
            await connect(ws_url(server), additional_headers=bearer(mint(SECRET, f"u{i}")))
            for i in range(3)
        ]
        for ws in clients:
            await asyncio.wait_for(ws.recv(), scaled(5))  # the hello: the connection is up
        reply = await asyncio.to_thread(drain, server, mint_drain_token(SECRET))
        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), scaled(10))
            assert closed.value.rcvd is not None
            codes.append(closed.value.rcvd.code)
        again = await asyncio.to_thread(drain, server, mint_drain_token(SECRET))
        assert again.status_code == 202  # idempotent
        return codes, reply.status_code, await asyncio.to_thread(ready, server)

    codes, status, readiness = asyncio.run(scenario())
    assert status == 202
    assert codes == [1012, 1012, 1012]
    assert readiness == 503


def test_the_clients_audience_may_not_be_the_drain_audience() -> None:
    with pytest.raises(ConfigError, match="client tokens would then be drain tokens"):
        make_app(audience=DRAIN_AUDIENCE)
