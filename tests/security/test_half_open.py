"""Half-open connections: a socket that never completes its request head is closed, by the
server safeship runs (uvicorn with the head-deadline protocols: the local target's revisions,
the boot gate) and by the local front."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from safeship.config import Manifest, ServiceConfig
from safeship.deploy.front import Front
from safeship.deploy.targets.base import RevisionSpec
from safeship.deploy.targets.local import LocalTarget
from safeship.gates.boot import _command
from safeship.gates.runner import CheckContext
from safeship.testing import free_port, scaled, wait_until

APPS = Path(__file__).parent / "apps"


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the peer closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(scaled(within))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.fixture(scope="module", params=["H11HeadDeadline", "HttpToolsHeadDeadline"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp("half_open")
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "plain_app:app", "--app-dir", str(APPS),
         "--host", "127.0.0.1", "--port", str(port),
         "--http", f"safeship.service.deadline:{request.param}"],
        env={**os.environ, "SAFESHIP_HEAD_TIMEOUT": "0.5"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(port), timeout=20, what="uvicorn to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=scaled(10))
        log.close()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text == "hello"
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET / HTTP/1.1\r\n", b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"],
)
def test_the_server_closes_a_socket_that_never_completes_its_head(
    server: int, partial: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(partial)
        assert _closed_by_peer(sock, within=10)


def test_the_server_closes_a_slowloris_that_keeps_sending(server: int) -> None:
    """A byte of header every 50 ms never completes the head: the deadline runs from the
    connection, not from the last byte."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    deadline = time.monotonic() + scaled(10)
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.settimeout(0.05)
        closed = False
        for byte in head:
            if time.monotonic() > deadline:
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed


def test_complete_requests_and_websockets_outlive_the_deadline(server: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server}") as client:
        assert client.get("/").text == "hello"
        with connect(f"ws://127.0.0.1:{server}/ws", open_timeout=5) as ws:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.5)  # idle for three deadlines
            ws.send("still open")
            assert ws.recv(timeout=5) == "still open"
        assert client.get("/").text == "hello"  # the kept-alive connection still works


def _local_target_argv(port: int) -> list[str]:
    spec = RevisionSpec(source=APPS.parent, app="plain_app:app", app_dir=APPS.name)
    return LocalTarget._argv(None, spec, APPS.parent, port)


def _boot_gate_argv(port: int) -> list[str]:
    manifest = Manifest(service=ServiceConfig(app="plain_app:app", app_dir=str(APPS)))
    ctx = CheckContext(
        root=APPS, manifest=manifest, env="test", critical=False, entries=(), environ={},
        block_tiers=frozenset(),
    )  # fmt: skip
    return _command(ctx, port)


@pytest.mark.parametrize("argv_of", [_local_target_argv, _boot_gate_argv], ids=["local", "boot"])
def test_the_command_lines_safeship_runs_close_half_open_sockets(
    tmp_path: Path, argv_of: Callable[[int], list[str]]
) -> None:
    """The revision command of the local target and the boot gate's server, run for real."""
    port = free_port()
    argv = argv_of(port)
    assert "--http" in argv and "--timeout-keep-alive" in argv
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            argv, env={**os.environ, "SAFESHIP_HEAD_TIMEOUT": "0.5"}, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: _answers(port), timeout=20, what="the server to listen")
        for partial in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(partial)
                assert _closed_by_peer(sock, within=10), partial
    finally:
        proc.terminate()
        proc.wait(timeout=scaled(10))


def test_through_the_front_a_half_request_head_is_closed(server: int, tmp_path: Path) -> None:
    """A real front before a real server: the front passes the first bytes on, and the
    server's head deadline closes the connection; the client sees the end of it."""
    with _front(tmp_path, backend=server) as front:
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            assert _closed_by_peer(sock, within=10)
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
            assert _closed_by_peer(sock, within=10)  # nothing sent: the front's own deadline
        assert front.served == 1 and front.refused == 0


@contextlib.contextmanager
def _front(tmp_path: Path, backend: int | None = None) -> Iterator[Front]:
    loop = asyncio.new_event_loop()
    front = Front(
        host="127.0.0.1", port=0, control=tmp_path / "front.sock", backend=backend,
        first_bytes_timeout=0.5,
    )  # fmt: skip
    loop.run_until_complete(front.start())
    thread = threading.Thread(target=loop.run_until_complete, args=(front.serve(),), daemon=True)
    thread.start()
    try:
        yield front
    finally:
        loop.call_soon_threadsafe(front.stop)
        thread.join(scaled(10))
        loop.close()


def test_the_front_closes_a_silent_client(tmp_path: Path) -> None:
    with _front(tmp_path) as front:
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
            assert _closed_by_peer(sock, within=10)
        assert front.refused == 0 and front.served == 0  # never reached a backend
