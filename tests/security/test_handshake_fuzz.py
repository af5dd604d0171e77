"""Raw-socket handshake fuzzing: whatever bytes arrive, the guarded server answers with a
status line (never a 500) or closes the socket within a deadline, never logs a traceback,
and keeps serving."""

from __future__ import annotations

import base64
import random
import socket
from collections.abc import Iterator

import httpx
import pytest

from safeship.tokens import mint

from ._server import SECRET, Server, guarded_server

KEY = base64.b64encode(b"0123456789abcdef").decode()
# Minted at collection: it must outlive a whole suite run, not only this module.
TOKEN = mint(SECRET, "fuzz", ttl=6 * 3600)


def _upgrade(extra: str = "", path: str = "/ws", version: str = "13", key: str = KEY) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode("latin-1")


CASES = {
    "garbage": bytes(range(256)) + b"\r\n\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "no-key": b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "bad-version": _upgrade(version="8"),
    "bad-key": _upgrade(key="short"),
    "two-bearers": _upgrade(f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer x\r\n"),
    "bearer-garbage": _upgrade("Authorization: Bearer \x01\x02\x7f\r\n"),
    "bearer-latin1": _upgrade("Authorization: Bearer \xe9\xe9\xe9.\xe9.\xe9\r\n"),
    "basic": _upgrade("Authorization: Basic YTpi\r\n"),
    "huge-token": _upgrade(f"Authorization: Bearer {'A' * 12000}\r\n"),
    "subprotocol-garbage": _upgrade("Sec-WebSocket-Protocol: jwt.!!!!, jwt.????\r\n"),
    "subprotocol-not-b64": _upgrade("Sec-WebSocket-Protocol: jwt.eyJhbGciOi\r\n"),
    "cookie-garbage": _upgrade("Cookie: ;;;=;==;\x7f\r\n"),
    "ticket-empty": _upgrade(path="/ws?ticket=&ticket="),
    "ticket-encoded": _upgrade(path="/ws?tic%6bet=abc"),
    "ticket-huge": _upgrade(path="/ws?ticket=" + "a" * 8000),
    "path-traversal": _upgrade(path="/../../etc/passwd"),
    "null-in-path": b"GET /ws\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-no-colon": _upgrade("NoColonHere\r\n"),
    "obs-fold": _upgrade("X-A: b\r\n c\r\n"),
    "many-headers": _upgrade("".join(f"X-{i}: {i}\r\n" for i in range(300))),
    "content-length-lie": b"POST /auth/ticket HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\nab",
    "chunked-bad": b"POST /auth/ticket HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "http10-upgrade": _upgrade().replace(b"HTTP/1.1", b"HTTP/1.0"),
    "expired-token": _upgrade(f"Authorization: Bearer {mint(SECRET, 'x', ttl=-300)}\r\n"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with guarded_server(tmp_path_factory.mktemp("fuzz"), http="HttpToolsHeadDeadline") as running:
        yield running


def _exchange(server: Server, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.settimeout(10)
        try:
            sock.sendall(payload)
        except OSError:
            return b""
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        except ConnectionResetError:
            pass
        return received


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_handshakes_get_an_answer_not_a_crash(server: Server, name: str) -> None:
    answer = _exchange(server, CASES[name])
    if answer:
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 "), (name, answer[:200])
        assert not status.startswith(b"HTTP/1.1 5"), (name, answer[:300])


def test_random_mutations_of_a_valid_handshake(server: Server) -> None:
    rng = random.Random(12)
    valid = _upgrade(f"Authorization: Bearer {TOKEN}\r\n")
    for _ in range(60):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        answer = _exchange(server, bytes(data))
        if answer:
            assert not answer.startswith(b"HTTP/1.1 5"), answer[:300]


def test_the_server_still_serves_and_logged_no_error(server: Server) -> None:
    assert httpx.get(server.url + "/health/ready", timeout=5).status_code == 200
    answer = _exchange(server, _upgrade(f"Authorization: Bearer {TOKEN}\r\n"))
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    output = server.output()
    # At DEBUG the websockets library logs each refused handshake with its traceback; what
    # must never appear is an error: an exception in the app or the guard.
    errors = [line for line in output.splitlines() if line.startswith(("ERROR", "CRITICAL"))]
    assert not errors, errors
    assert "Exception in ASGI application" not in output
