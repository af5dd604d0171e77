"""The service library on real uvicorn, with the websockets client."""

from __future__ import annotations

import asyncio
import base64
import json
import signal

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from safeship.testing import scaled, wait_until
from safeship.tokens import mint

from .conftest import SECRET

pytestmark = pytest.mark.e2e


def token(sub: str = "alice", **kw) -> str:
    return mint(SECRET, sub, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(20)))


async def hello(url: str, **kw) -> dict:
    async with connect(url, open_timeout=scaled(5), **kw) as ws:
        return json.loads(await ws.recv())


async def denied_status(url: str, **kw) -> tuple[int, dict, dict]:
    with pytest.raises(InvalidStatus) as exc:
        async with connect(url, open_timeout=scaled(5), **kw):
            pass
    response = exc.value.response
    return response.status_code, dict(response.headers), json.loads(response.body)


async def close_code(url: str, **kw) -> tuple[int, str]:
    async with connect(url, open_timeout=scaled(5), **kw) as ws:
        with pytest.raises(ConnectionClosed) as exc:
            while True:
                await asyncio.wait_for(ws.recv(), scaled(10))
    assert exc.value.rcvd is not None, "closed without a close frame (1006)"
    return exc.value.rcvd.code, exc.value.rcvd.reason


def test_header_subprotocol_and_ticket_auth(spawn):
    server = spawn()
    url = server.ws_url + "/ws"
    assert (
        run(hello(url, additional_headers={"Authorization": f"Bearer {token('h')}"}))["sub"] == "h"
    )
    encoded = base64.urlsafe_b64encode(token("s").encode()).decode().rstrip("=")
    assert run(hello(url, subprotocols=["jwt-auth", f"jwt.{encoded}"]))["sub"] == "s"
    ticket = httpx.post(
        server.url + "/auth/ticket", headers={"Authorization": f"Bearer {token('t')}"}
    ).json()["ticket"]
    assert run(hello(f"{url}?ticket={ticket}"))["sub"] == "t"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, 4401),
        ({"Authorization": "Bearer garbage"}, 401, 4401),
        (
            {"Authorization": f"Bearer {mint('wrong-secret-wrong-secret-wrong-secret', 'x')}"},
            401,
            4401,
        ),
    ],
)
def test_denials_by_status_and_by_close_code(spawn, headers, status, code):
    server = spawn()
    url = server.ws_url + "/ws"
    got_status, got_headers, body = run(denied_status(url, additional_headers=headers))
    assert got_status == status
    assert got_headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert body["error"] == "invalid_token"
    # A browser (Origin header) gets the same answer as a close code it can read.
    got_code, _ = run(close_code(url, additional_headers=headers, origin="http://app.example"))
    assert got_code == code


def test_not_ready_gets_503_then_1013_in_background_mode(spawn):
    server = spawn({"BACKGROUND": "1", "AGENTS": "slow", "SLOW_SECONDS": "30"})
    ready = httpx.get(server.url + "/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "starting" and ready.json()["phase"] == "agents"
    url = server.ws_url + "/ws"
    headers = {"Authorization": f"Bearer {token()}"}
    status, got_headers, body = run(denied_status(url, additional_headers=headers))
    assert (status, got_headers["retry-after"], body["error"]) == (503, "1", "not_ready")
    code, _ = run(close_code(url, additional_headers=headers, origin="http://app.example"))
    assert code == 1013


def test_handler_exception_closes_1011_with_logged_error_id(spawn):
    server = spawn()

    async def scenario() -> tuple[int, str]:
        async with connect(
            server.ws_url + "/ws", additional_headers={"Authorization": f"Bearer {token()}"}
        ) as ws:
            await ws.recv()
            await ws.send("boom")
            with pytest.raises(ConnectionClosed) as exc:
                await asyncio.wait_for(ws.recv(), scaled(5))
        assert exc.value.rcvd is not None
        return exc.value.rcvd.code, exc.value.rcvd.reason

    code, reason = run(scenario())
    assert code == 1011
    error_id = reason.split("id ")[1].rstrip(")")
    wait_until(lambda: error_id in server.output(), timeout=5)
    assert "RuntimeError: handler exploded" in server.output()


def test_expired_token_closes_4401_at_exp(spawn):
    server = spawn({"LEEWAY": "0"})
    code, reason = run(
        close_code(
            server.ws_url + "/ws", additional_headers={"Authorization": f"Bearer {token(ttl=1)}"}
        )
    )
    assert code == 4401 and "expired" in reason


def test_sigterm_drains_with_1012_and_exits(spawn):
    server = spawn({"DRAIN_SECONDS": "1"})

    async def scenario() -> list[int]:
        headers = {"Authorization": f"Bearer {token()}"}
        sockets = [
            await connect(server.ws_url + "/ws", additional_headers=headers) for _ in range(3)
        ]
        for ws in sockets:
            await ws.recv()
        server.proc.send_signal(signal.SIGTERM)
        codes = []
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as exc:
                await asyncio.wait_for(ws.recv(), scaled(10))
            assert exc.value.rcvd is not None, "dropped without a close frame"
            codes.append(exc.value.rcvd.code)
        return codes

    assert run(scenario()) == [1012, 1012, 1012]
    server.wait_exit(10)
    assert "draining 3 connection(s) with close code 1012" in server.output()


def _failure_line(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith('{"event": "startup_failed"')]
    assert len(lines) == 1, output
    return json.loads(lines[0])


def test_exit_code_3_and_json_line_for_a_phase_that_raises(spawn):
    server = spawn({"AGENTS": "nameerror"}, wait=False)
    assert server.wait_exit(15) == 3
    output = server.output()
    failure = _failure_line(output)
    assert failure["phase"] == "agents"
    assert "NameError" in failure["error"] and "DatabaseSessionManager" in failure["error"]
    assert "DatabaseSessionManager" in failure["hint"]
    assert failure["where"].endswith("svc_broken_agent.py:6")
    assert "Traceback" not in output


def test_exit_code_3_for_a_phase_that_hangs(spawn):
    server = spawn({"AGENTS": "hang", "AGENTS_TIMEOUT": "0.5"}, wait=False)
    assert server.wait_exit(15) == 3
    failure = _failure_line(server.output())
    assert failure["phase"] == "agents" and failure["timed_out"] is True
    assert "0.5s" in failure["error"]


def test_exit_code_3_for_a_phase_that_blocks_the_loop(spawn):
    server = spawn({"AGENTS": "block", "AGENTS_TIMEOUT": "0.3"}, wait=False)
    assert server.wait_exit(15) == 3
    failure = _failure_line(server.output())
    assert failure["phase"] == "agents" and "blocking" in failure["error"]


def test_missing_secret_in_staging_exits_3_naming_the_variables(spawn):
    server = spawn({"SAFESHIP_ENV": "staging", "JWT_SECRET": ""}, wait=False)
    assert server.wait_exit(15) == 3
    failure = _failure_line(server.output())
    assert failure["phase"] == "secrets"
    assert "JWT_SECRET_STAGING" in failure["error"]


def test_http_denials_log_no_spurious_uvicorn_error(spawn):
    server = spawn()
    for _ in range(3):
        run(denied_status(server.ws_url + "/ws"))
    wait_until(lambda: server.output().count("401") >= 3, timeout=5)
    assert "ERROR" not in server.output()


def test_sigterm_during_a_slow_phase_stops_at_once(spawn, tmp_path):
    events = tmp_path / "startup-events.jsonl"
    server = spawn(
        {"AGENTS": "slow", "SLOW_SECONDS": "120", "AGENTS_TIMEOUT": "300",
         "SAFESHIP_STARTUP_EVENTS": str(events)},
        wait=False,
    )  # fmt: skip
    wait_until(
        lambda: events.exists() and '"phase_started", "phase": "agents"' in events.read_text(),
        timeout=15,
        what="phase agents to start",
    )
    server.proc.send_signal(signal.SIGTERM)
    server.wait_exit(10)  # not the phase's 120 s
    assert "phase agents cancelled: the service is stopping" in server.output()


def test_forbidden_is_403_or_4403(spawn):
    server = spawn({"DENY_ALL": "1"})
    url, headers = server.ws_url + "/ws", {"Authorization": f"Bearer {token()}"}
    status, _, body = run(denied_status(url, additional_headers=headers))
    assert (status, body["error"]) == (403, "forbidden")
    assert "DENY_ALL" in body["detail"]
    code, _ = run(close_code(url, additional_headers=headers, origin="http://app.example"))
    assert code == 4403


def test_per_user_limit_is_429_or_4429(spawn):
    server = spawn({"MAX_PER_USER": "1"})
    url, headers = server.ws_url + "/ws", {"Authorization": f"Bearer {token('limited')}"}

    async def scenario() -> tuple[tuple[int, dict, dict], tuple[int, str]]:
        async with connect(url, additional_headers=headers) as first:
            await first.recv()
            refused = await denied_status(url, additional_headers=headers)
            closed = await close_code(url, additional_headers=headers, origin="http://app.example")
            return refused, closed

    (status, got_headers, body), (code, _) = run(scenario())
    assert (status, got_headers["retry-after"], body["error"]) == (429, "5", "too_many_connections")
    assert code == 4429


def test_handshakes_while_draining_get_503_or_1012(spawn):
    server = spawn({"DRAIN_SECONDS": "4"})
    url, headers = server.ws_url + "/ws", {"Authorization": f"Bearer {token()}"}

    async def scenario() -> tuple[tuple[int, dict, dict], tuple[int, str]]:
        # Two open connections: the second is closed half-way through the drain window, so
        # the server is still listening (and draining) meanwhile.
        held = [await connect(url, additional_headers=headers) for _ in range(2)]
        for ws in held:
            await ws.recv()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(_closed(held[0]), scaled(5))
        refused = await denied_status(url, additional_headers=headers)
        closed = await close_code(url, additional_headers=headers, origin="http://app.example")
        return refused, closed

    (status, got_headers, body), (code, _) = run(scenario())
    assert (status, got_headers["retry-after"], body["error"]) == (503, "1", "draining")
    assert code == 1012


async def _closed(ws) -> None:
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()


def test_probe_tells_a_missing_route_from_a_denial(spawn):
    from safeship.probe import StaticToken, probe_ws

    server = spawn()
    source = StaticToken(token())
    missing = run(probe_ws(server.ws_url + "/no-such-path", token_source=source)).verdict
    assert (missing.kind, missing.code, missing.category) == ("no_route", 403, "protocol")
    assert "no such WebSocket route" in missing.detail
    assert "ws_path" in (missing.hint or "")
    unsigned = run(probe_ws(server.ws_url + "/ws")).verdict
    assert (unsigned.kind, unsigned.code, unsigned.category) == ("http_status", 401, "auth")


def test_probe_calls_the_guards_own_403_an_auth_failure(spawn):
    from safeship.probe import StaticToken, probe_ws

    server = spawn({"DENY_ALL": "1"})
    verdict = run(probe_ws(server.ws_url + "/ws", token_source=StaticToken(token()))).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("http_status", 403, "auth")
