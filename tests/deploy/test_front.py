"""The front listener, run for real as ``python -m safeship.deploy.front``."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from safeship.deploy.front import control_path, request
from safeship.testing import free_port, run_server, scaled, wait_until


def backend_app(name: str) -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(name)

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(f"{name}:{await ws.receive_text()}")
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[Route("/", hello), WebSocketRoute("/ws", echo)])


@dataclass
class FrontProcess:
    proc: subprocess.Popen[bytes]
    control: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run(request(self.control, message, scaled(5)))

    def switch(self, url: str | None) -> dict[str, Any]:
        port = None if url is None else int(url.rsplit(":", 1)[1])
        reply = self.call({"op": "switch", "port": port})
        assert reply["ok"], reply
        return reply


def spawn_front(tmp_path: Path, port: int = 0) -> subprocess.Popen[bytes]:
    control = str(control_path(tmp_path))
    return subprocess.Popen(
        [sys.executable, "-m", "safeship.deploy.front", "--port", str(port), "--control", control],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def front(tmp_path: Path) -> Iterator[FrontProcess]:
    proc = spawn_front(tmp_path)
    try:
        control = control_path(tmp_path)

        def status() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(f"front exited: {proc.stderr.read() if proc.stderr else ''!r}")
            try:
                return asyncio.run(request(control, {"op": "status"}, 1.0))
            except OSError:
                return None

        reply = wait_until(status, timeout=10, interval=0.05, what="front control socket")
        yield FrontProcess(proc, control, reply["port"])
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=scaled(10))


def echo(ws: Any, text: str) -> str:
    ws.send(text)
    reply: str = ws.recv(timeout=scaled(5))
    return reply


@pytest.mark.e2e
def test_forwards_http_and_websockets(front: FrontProcess) -> None:
    with run_server(backend_app("a")) as a:
        front.switch(a)
        assert httpx.get(front.url, timeout=scaled(5)).text == "a"
        with connect(front.ws_url, open_timeout=scaled(5)) as ws:
            assert echo(ws, "hello") == "a:hello"
            assert echo(ws, "x" * 200_000) == "a:" + "x" * 200_000
        assert front.call({"op": "status"})["served"] == 2


@pytest.mark.e2e
def test_switch_moves_only_new_connections(front: FrontProcess) -> None:
    with run_server(backend_app("a")) as a, run_server(backend_app("b")) as b:
        front.switch(a)
        with connect(front.ws_url, open_timeout=scaled(5)) as old:
            assert echo(old, "1") == "a:1"
            reply = front.switch(b)
            assert reply["previous"] == int(a.rsplit(":", 1)[1])
            with connect(front.ws_url, open_timeout=scaled(5)) as new:
                assert echo(new, "2") == "b:2"
                # The connection opened before the switch keeps its backend and keeps working.
                assert echo(old, "3") == "a:3"
                assert echo(new, "4") == "b:4"
            assert httpx.get(front.url, timeout=scaled(5)).text == "b"
            assert echo(old, "5") == "a:5"


@pytest.mark.e2e
def test_no_backend_answers_503_at_once(front: FrontProcess) -> None:
    response = httpx.get(front.url, timeout=scaled(5))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"error": "unavailable", "detail": "no revision is serving"}
    with pytest.raises(InvalidStatus) as denied:
        connect(front.ws_url, open_timeout=scaled(5))
    assert denied.value.response.status_code == 503


@pytest.mark.e2e
def test_refusing_backend_answers_503(front: FrontProcess) -> None:
    closed = free_port()
    front.call({"op": "switch", "port": closed})
    response = httpx.get(front.url, timeout=scaled(5))
    assert response.status_code == 503
    assert f"port {closed} refused" in response.json()["detail"]
    # Switching back to nothing is allowed too.
    assert front.switch(None)["backend"] is None
    assert front.call({"op": "status"})["refused"] == 1


@pytest.mark.e2e
def test_bad_control_requests_are_answered_not_fatal(front: FrontProcess) -> None:
    assert front.call({"op": "reboot"}) == {
        "ok": False,
        "error": "unknown op 'reboot'; expected 'switch', 'split' or 'status'",
    }
    for port in (0, 70000, "80", True):
        reply = front.call({"op": "switch", "port": port})
        assert reply["ok"] is False and "port must be" in reply["error"]
    assert front.call({"op": "status"})["backend"] is None


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.e2e
def test_a_split_sends_its_share_of_new_connections_to_the_canary(front: FrontProcess) -> None:
    with run_server(backend_app("a")) as a, run_server(backend_app("b")) as b:
        front.switch(a)
        with connect(front.ws_url, open_timeout=scaled(5)) as before:
            assert echo(before, "1") == "a:1"
            reply = front.call({"op": "split", "port": port_of(b), "percent": 10})
            assert reply == {"ok": True, "backend": port_of(a),
                             "canary": {"port": port_of(b), "percent": 10}}  # fmt: skip
            landed = [httpx.get(front.url, timeout=scaled(5)).text for _ in range(40)]
            assert landed.count("b") == 4 and landed.count("a") == 36
            assert landed[:10].count("b") == 1  # even the first ten connections reach it
            assert echo(before, "2") == "a:2"  # open connections keep their backend
            with connect(front.ws_url, open_timeout=scaled(5)) as ws:
                on_b = echo(ws, "3").startswith("b:")
            front.call({"op": "split", "port": port_of(b), "percent": 50})
            landed = [httpx.get(front.url, timeout=scaled(5)).text for _ in range(10)]
            assert landed.count("b") == 5
            status = front.call({"op": "status"})
            assert status["canary"] == {"port": port_of(b), "percent": 50}
            assert status["served_by"][str(port_of(b))] == 4 + on_b + 5
        # A switch ends the split: everything new goes to the switched-to backend.
        front.switch(b)
        assert {httpx.get(front.url, timeout=scaled(5)).text for _ in range(5)} == {"b"}
        assert front.call({"op": "status"})["canary"] is None


@pytest.mark.e2e
def test_bad_split_requests_are_refused_and_change_nothing(front: FrontProcess) -> None:
    no_backend = front.call({"op": "split", "port": 9, "percent": 10})
    assert no_backend["ok"] is False and "needs a serving backend" in no_backend["error"]
    front.call({"op": "switch", "port": 8})
    for percent in (0, 100, "10", 10.5, None):
        reply = front.call({"op": "split", "port": 9, "percent": percent})
        assert reply["ok"] is False and "percent must be 1-99" in reply["error"]
    for port in (0, 70000, None):
        reply = front.call({"op": "split", "port": port, "percent": 10})
        assert reply["ok"] is False and "port must be" in reply["error"]
    same = front.call({"op": "split", "port": 8, "percent": 10})
    assert same["ok"] is False
    assert front.call({"op": "status"})["canary"] is None


@pytest.mark.e2e
def test_port_in_use_fails_with_a_json_event(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn_front(tmp_path, port)
        _, err = proc.communicate(timeout=scaled(10))
    assert proc.returncode == 2
    event = json.loads(err.decode().strip().splitlines()[-1])
    assert event["event"] == "front_failed"
    assert event["port"] == port
    assert event["errno"] == 98 or "in use" in event["error"]


def test_control_path_stays_short(tmp_path: Path) -> None:
    assert control_path(tmp_path) == tmp_path / "front.sock"
    deep = tmp_path / ("d" * 120)
    path = control_path(deep)
    assert len(str(path)) < 100
    assert path == control_path(deep)  # deterministic: client and front agree
    assert path != control_path(tmp_path / ("e" * 120))


def test_control_request_to_no_front_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        asyncio.run(request(tmp_path / "none.sock", {"op": "status"}, 1.0))
