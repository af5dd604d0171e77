from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from typer.testing import CliRunner

from safeship.cli import app, main
from safeship.cli.probe import build_steps
from safeship.errors import UsageError
from safeship.testing import run_server, scaled

TOKEN = "cli-probe-token-0123456789"

# -- usage errors (no server) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ftp://example.com"], "must start with ws://"),
        (["example.com:8000/ws"], "must start with ws://"),
        (["ws://h/ws", "--send", "{not json"], "invalid JSON"),
        (["ws://h/ws", "--send", "[1]"], "JSON object"),
        (["ws://h/ws", "--send", "{}", "--expect", "type"], "PATH=VALUE"),
        (["ws://h/ws", "--expect", "type=pong"], "before any --send"),
        (["ws://h/ws", "--token", "a", "--token-file", "b"], "--token and --token-file"),
        (
            ["ws://h/ws", "--secret-env", "A", "--token-url", "http://t"],
            "--secret-env and --token-url",
        ),
        (["ws://h/ws", "--subprotocol-token"], "needs a token"),
        (["ws://h/ws", "--connect-only", "--send", "{}"], "--connect-only"),
        (["http://h/health/ready", "--send", "{}"], "only apply to ws://"),
        (["ws://h/ws", "--header", "no-colon"], "Name: value"),
    ],
)
def test_usage_errors_exit_2_with_a_message(argv, words, capsys):
    assert main(["probe", *argv]) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert words in " ".join(err.split())


def test_usage_error_as_json(capsys):
    assert main(["probe", "ws://h/ws", "--send", "{bad", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["error"] == "UsageError"


def test_build_steps_groups_expects_under_the_previous_send():
    steps = build_steps(
        [
            ("send", '{"type": "ping"}'),
            ("expect", "type=pong"),
            ("send", '{"type": "start_agent"}'),
            ("expect", "type=agent_completed"),
            ("expect", "payload.n=3"),
        ],
        step_timeout=2.0,
    )
    assert [dict(s.send) for s in steps] == [{"type": "ping"}, {"type": "start_agent"}]
    assert [dict(s.expect) for s in steps] == [
        {"type": "pong"},
        {"type": "agent_completed", "payload.n": 3},
    ]
    assert {s.timeout for s in steps} == {2.0}
    with pytest.raises(UsageError):
        build_steps([("expect", "a=1")], 1.0)


# -- against a real server ------------------------------------------------------------------


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    if websocket.headers.get("authorization") != f"Bearer {TOKEN}":
        # the browser-friendly denial: accept, then close at once
        await websocket.close(code=4401, reason="token missing, invalid or expired")
        return
    await websocket.send_json({"type": "connection_established"})
    try:
        while True:
            message = await websocket.receive_json()
            reply: dict[str, Any] = {"request_id": message.get("request_id")}
            reply.update(
                {"type": "pong"} if message.get("type") == "ping" else {"type": "ack", "n": 1}
            )
            await websocket.send_json(reply)
    except WebSocketDisconnect:
        return


async def _leak(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    auth = dict(scope["headers"]).get(b"authorization", b"").decode()
    body = json.dumps({"error": "invalid_token", "detail": f"rejected {auth}"}).encode()
    await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
    await send({"type": "websocket.http.response.body", "body": body})


class _Raw:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def _ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    routes = [
        WebSocketRoute("/ws", _ws),
        WebSocketRoute("/leak", _Raw(_leak)),
        Route("/health/ready", _ready),
    ]
    with run_server(Starlette(routes=routes)) as base:
        yield base


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["probe", *args], catch_exceptions=False)


@pytest.mark.e2e
def test_ok_exits_0_and_renders_timings_and_steps(server: str):
    ws = server.replace("http://", "ws://") + "/ws"
    result = invoke(
        ws,
        "--token",
        TOKEN,
        "--send",
        '{"type": "ping"}',
        "--expect",
        "type=pong",
        "--send",
        '{"type": "other"}',
        "--expect",
        "type=ack",
        "--expect",
        "n=1",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.splitlines()[0].startswith("ok")
    for phase in ("dns", "tcp", "upgrade", "total"):
        assert phase in out
    assert "passed" in out and "steps" in out


@pytest.mark.e2e
def test_expect_belongs_to_the_send_before_it(server: str):
    ws = server.replace("http://", "ws://") + "/ws"
    # n=1 is true for the second reply only; attached to the first step it must fail
    result = invoke(
        ws,
        "--token",
        TOKEN,
        "--send",
        '{"type": "ping"}',
        "--expect",
        "n=1",
        "--send",
        '{"type": "other"}',
        "--json",
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["verdict"]["kind"] == "check_failed"
    assert data["verdict"]["phase"] == "step 1"


@pytest.mark.e2e
def test_failed_verdict_exits_1_with_json_shape(server: str):
    ws = server.replace("http://", "ws://") + "/ws"
    result = invoke(ws, "--json", "--settle", str(scaled(1)))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert set(data) == {
        "url",
        "ok",
        "verdict",
        "timings",
        "steps",
        "messages_seen",
        "subprotocol",
        "token_source",
    }
    assert data["ok"] is False
    assert data["verdict"]["kind"] == "closed"
    assert data["verdict"]["code"] == 4401
    assert data["verdict"]["category"] == "auth"
    assert {"dns", "tcp", "upgrade", "total", "steps"} <= set(data["timings"])


@pytest.mark.e2e
def test_http_url_probes_http(server: str):
    result = invoke(f"{server}/health/ready", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["verdict"]["code"] == 200


@pytest.mark.e2e
def test_unreadable_token_file_is_inconclusive_exit_2(server: str, tmp_path: Path):
    ws = server.replace("http://", "ws://") + "/ws"
    result = invoke(ws, "--token-file", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "inconclusive" in result.output
    assert str(tmp_path / "nope") in "".join(result.output.split())


@pytest.mark.e2e
@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("path", ["/ws", "/leak"])
def test_the_token_never_appears_in_output(server: str, tmp_path: Path, path: str, as_json: bool):
    ws = server.replace("http://", "ws://") + path
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    for source in (["--token", TOKEN], ["--token-file", str(token_file)]):
        args = [ws, *source, "--send", '{"type": "ping"}', *(["--json"] if as_json else [])]
        result = invoke(*args)
        assert TOKEN not in result.output
        assert TOKEN[:12] not in result.output.replace("\n", "")
