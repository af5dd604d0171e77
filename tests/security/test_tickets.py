"""Tickets: shared across instances through Redis (atomic single use, TTL, per-subject cap,
bound to a path), honoured only under the exact parameter name, and never logged."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from websockets.sync.client import connect

from safeship.config import Manifest
from safeship.errors import StartupError
from safeship.secrets import redact
from safeship.service import Safeship
from safeship.tokens import TicketStore, mint
from safeship.tokens.tickets_redis import RedisTicketStore

from ..e2e.conftest_agent import SHARED_REDIS, agent_services, auth  # noqa: F401  (fixture)
from ..service.conftest import SECRET, echo


def _app(environ: dict[str, str] | None = None) -> Starlette:
    ship = Safeship(
        manifest=Manifest(),
        environ={"SAFESHIP_ENV": "test", "JWT_SECRET": SECRET, **(environ or {})},
        on_failure="raise",
        mode="http",
    )
    app = Starlette(
        routes=[WebSocketRoute("/ws", echo), WebSocketRoute("/admin", echo)],
        lifespan=ship.lifespan,
    )
    ship.install(app)
    return app


def _ticket(client: TestClient, user: str, path: str | None = "/ws") -> str:
    query = f"?path={path}" if path else ""
    response = client.post(
        f"/auth/ticket{query}", headers={"authorization": f"Bearer {mint(SECRET, user)}"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


def _status(client: TestClient, url: str) -> int:
    try:
        with client.websocket_connect(url) as ws:
            ws.receive_json()
            return 101
    except WebSocketDenialResponse as denied:
        return denied.status_code


def test_only_the_exact_parameter_name_is_honoured() -> None:
    with TestClient(_app()) as client:
        ticket = _ticket(client, "alice")
        assert _status(client, f"/ws?tic%6bet={ticket}") == 401
        assert _status(client, f"/ws?TICKET={ticket}") == 401
        assert _status(client, f"/ws?ticket={ticket}") == 101
    for name in ("tic%6bet", "%74icket", "x%20y", "ticket"):
        assert ticket not in redact(f'"WebSocket /ws?{name}={ticket}" 403')


def test_a_ticket_is_bound_to_its_path() -> None:
    with TestClient(_app()) as client:
        ticket = _ticket(client, "bob", "/ws")
        assert _status(client, f"/admin?ticket={ticket}") == 401
        assert _status(client, f"/ws?ticket={ticket}") == 401  # spent by the failed attempt


def test_one_subject_cannot_evict_everyone_elses_tickets() -> None:
    store = TicketStore(ttl=30, max_entries=10_000)
    theirs = store.issue("jwt-victim", subject="victim", path="/ws", now=0)
    mine = [store.issue("jwt-x", subject="mallory", path="/ws", now=0) for _ in range(10_000)]
    assert store.redeem(theirs, path="/ws", now=1) == "jwt-victim"
    assert store.redeem(mine[-1], path="/ws", now=1) == "jwt-x"
    assert store.redeem(mine[0], path="/ws", now=1) is None  # her own oldest went first
    assert len(store) <= store.max_per_subject


def test_redis_store_is_single_use_with_a_cap_a_ttl_and_a_path() -> None:
    async def scenario() -> None:
        a, b = RedisTicketStore(SHARED_REDIS, ttl=30), RedisTicketStore(SHARED_REDIS, ttl=30)
        user, victim = f"m-{uuid.uuid4().hex}", f"v-{uuid.uuid4().hex}"
        try:
            theirs = await a.issue_async("jwt-v", subject=victim, path="/ws")
            mine = [await a.issue_async("jwt-m", subject=user, path="/ws") for _ in range(50)]
            assert await b.redeem_async(theirs, path="/ws") == "jwt-v"
            assert await b.redeem_async(theirs, path="/ws") is None  # GETDEL: once
            assert await b.redeem_async(mine[0], path="/ws") is None  # over the cap
            assert await b.redeem_async(mine[-1], path="/admin") is None  # wrong path
            assert await b.redeem_async(mine[-1], path="/ws") is None  # and spent by it
            late = await a.issue_async("jwt-m", subject=user, path="/ws", now=0.0)
            assert await b.redeem_async(late, path="/ws") is None  # past its ttl
            racers = await asyncio.gather(
                *(b.redeem_async(mine[-2], path="/ws") for _ in range(10))
            )
            assert racers.count("jwt-m") == 1
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(scenario())


def test_two_instances_share_tickets_through_redis() -> None:
    environ = {"REDIS_URL": SHARED_REDIS}
    with TestClient(_app(environ)) as one, TestClient(_app(environ)) as two:
        ticket = _ticket(one, f"carol-{uuid.uuid4().hex[:6]}")
        assert _status(two, f"/ws?ticket={ticket}") == 101
        assert _status(one, f"/ws?ticket={ticket}") == 401


@pytest.mark.e2e
def test_reference_service_instances_share_tickets(agent_services) -> None:  # noqa: F811
    first = agent_services.start({"REDIS_URL": SHARED_REDIS})
    second = agent_services.start({"REDIS_URL": SHARED_REDIS})
    response = httpx.post(first.url + "/auth/ticket?path=/ws", headers=auth("dave"), timeout=5)
    assert response.status_code == 201, response.text
    ticket = response.json()["ticket"]
    with connect(f"{second.ws_url}/ws?ticket={ticket}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_established"
    assert ticket not in first.output() + second.output()


def test_redis_url_without_redis_py_fails_the_first_phase_not_the_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what an install without redis-py sees
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    app = _app({"REDIS_URL": SHARED_REDIS})
    with pytest.raises(StartupError) as failed, TestClient(app):
        pass
    assert failed.value.phase == "manifest"
    assert "redis-py is not installed" in failed.value.error
