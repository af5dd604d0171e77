"""The probes against real uvicorn servers on 127.0.0.1:0, one per failure the verdicts name."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from safeship.probe import (
    MintedToken,
    ProbeResult,
    StaticToken,
    Step,
    TokenFile,
    probe,
    probe_http,
    probe_ws,
)
from safeship.testing import run_server, scaled
from safeship.tokens import TokenVerifier, mint

pytestmark = pytest.mark.e2e

SECRET = "probe-e2e-secret-0123456789abcdefghijkl"
LEAKY = "leaky-token-0123456789"  # a token a broken server echoes back


# -- the server under probe: raw ASGI, so denials are real HTTP responses ------------------


def _token_of(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization" and value.startswith(b"Bearer "):
            return value[7:].decode()
    for offered in scope.get("subprotocols", []):
        if offered.startswith("jwt."):
            encoded = offered[4:]
            return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    return None


async def _deny(
    send: Any, status: int, body: dict[str, str], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "websocket.http.response.body", "body": payload})


async def _send(send: Any, data: dict[str, Any]) -> None:
    await send({"type": "websocket.send", "text": json.dumps(data)})


class Raw:
    """A raw ASGI WebSocket endpoint (Starlette passes non-function endpoints through)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        behaviour = self.behaviour
        if behaviour == "not_ready":
            await _deny(
                send,
                503,
                {"error": "not_ready", "detail": "phase database running"},
                [(b"retry-after", b"1")],
            )
            return
        token = _token_of(scope)
        if behaviour == "leak":
            await _deny(send, 401, {"error": "invalid_token", "detail": f"rejected {token}"}, [])
            return
        if behaviour == "auth":
            try:
                TokenVerifier(SECRET).verify(token or "")
            except Exception:
                await _deny(
                    send,
                    401,
                    {"error": "invalid_token", "detail": "token missing, invalid or expired"},
                    [(b"www-authenticate", b'Bearer error="invalid_token"')],
                )
                return
        offered = scope.get("subprotocols", [])
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": "jwt-auth" if "jwt-auth" in offered else None,
            }
        )
        if behaviour == "close_4401":
            await send({"type": "websocket.close", "code": 4401, "reason": "token expired"})
            return
        if behaviour == "close_1013":
            await send({"type": "websocket.close", "code": 1013, "reason": "not ready"})
            return
        await _send(send, {"type": "connection_established"})
        await self._serve(receive, send)

    async def _serve(self, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            message = json.loads(event.get("text") or "{}")
            rid = message.get("request_id")
            kind = message.get("type")
            await _send(send, {"type": "heartbeat"})
            if kind == "ping":
                await _send(send, {"type": "pong", "request_id": "someone-else"})
                await _send(send, {"type": "pong", "request_id": rid, "payload": {"n": 1}})
            elif kind == "start_agent":
                run = "run-1"
                await _send(
                    send, {"type": "agent_started", "request_id": rid, "run_id": run, "seq": 1}
                )
                await _send(send, {"type": "heartbeat"})
                await _send(send, {"type": "agent_thinking", "run_id": run, "seq": 2})
                result = {"result": message.get("input")}
                await _send(
                    send, {"type": "agent_completed", "run_id": run, "seq": 3, "payload": result}
                )
            elif kind == "fail":
                await _send(send, {"type": "error", "request_id": rid, "code": "boom"})
            elif kind == "crash":
                await send(
                    {"type": "websocket.close", "code": 1011, "reason": "internal error, id e-1234"}
                )
                return
            elif kind == "bye":
                await _send(send, {"type": "pong", "request_id": rid})
                await send({"type": "websocket.close", "code": 1000})
                return
            # anything else ("silence") gets no reply at all


async def _ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


async def _not_ready(request: Request) -> JSONResponse:
    body = {"status": "starting", "phase": "database", "since": 1.0}
    return JSONResponse(body, status_code=503, headers={"retry-after": "2"})


async def _broken(request: Request) -> JSONResponse:
    return JSONResponse({"error": "internal_error"}, status_code=500)


def make_app() -> Starlette:
    behaviours = ["open", "auth", "not_ready", "leak", "close_4401", "close_1013"]
    return Starlette(
        routes=[
            *(WebSocketRoute(f"/ws/{b}", Raw(b)) for b in behaviours),
            Route("/health/ready", _ready),
            Route("/health/not-ready", _not_ready),
            Route("/broken", _broken),
        ]
    )


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with run_server(make_app()) as url:
        yield url


@pytest.fixture(scope="module")
def ws(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/ws"


def run(coro: Any) -> ProbeResult:
    result = asyncio.run(coro)
    json.dumps(result.as_dict())  # always plain data
    return result


def token() -> str:
    return mint(SECRET, "tester", ttl=60)


# -- success ----------------------------------------------------------------------------


def test_ok_with_header_token_times_each_phase(ws: str):
    result = run(probe_ws(f"{ws}/auth", token_source=StaticToken(token())))
    assert result.verdict.kind == "ok", result.verdict
    assert {"dns", "tcp", "upgrade", "first_message", "total"} <= set(result.timings)
    assert "tls" not in result.timings
    assert result.messages_seen == 1  # the welcome, seen during the settle window
    assert result.subprotocol is None


def test_ok_with_subprotocol_token(ws: str):
    result = run(probe_ws(f"{ws}/auth", token_source=StaticToken(token()), subprotocol_token=True))
    assert result.verdict.kind == "ok", result.verdict
    assert result.subprotocol == "jwt-auth"


def test_minted_token_from_the_environment(ws: str):
    source = MintedToken("PROBE_SECRET", environ={"PROBE_SECRET": SECRET})
    assert run(probe_ws(f"{ws}/auth", token_source=source)).verdict.kind == "ok"


def test_steps_skip_welcome_heartbeats_and_other_requests(ws: str):
    steps = [
        Step({"type": "ping"}, {"type": "pong", "payload.n": 1}, timeout=scaled(2)),
        Step(
            {"type": "start_agent", "input": "hello"},
            {"type": "agent_completed", "payload.result": "hello"},
        ),
    ]
    result = run(probe_ws(f"{ws}/open", steps=steps))
    assert result.verdict.kind == "ok", result.verdict
    assert [s.passed for s in result.steps] == [True, True]
    assert result.steps[0].skipped_messages >= 3  # welcome, heartbeat, someone else's pong
    assert result.steps[1].skipped_messages >= 3  # heartbeats, agent_started, agent_thinking
    assert result.verdict.detail.endswith("2 step(s) passed")


def test_normal_close_after_the_steps_is_ok(ws: str):
    result = run(probe_ws(f"{ws}/open", steps=[Step({"type": "bye"}, {"type": "pong"})]))
    assert result.verdict.kind == "ok", result.verdict


def test_connect_only_ignores_steps(ws: str):
    result = run(probe_ws(f"{ws}/open", steps=[Step({"type": "silence"})], connect_only=True))
    assert result.verdict.kind == "ok"
    assert result.steps == []


# -- refused upgrades ---------------------------------------------------------------------


def test_401_without_a_token(ws: str):
    verdict = run(probe_ws(f"{ws}/auth")).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("http_status", 401, "auth")
    assert "error=invalid_token" in verdict.detail
    assert 'Bearer error="invalid_token"' in verdict.detail
    assert verdict.hint is not None and "--token" in verdict.hint


def test_401_with_a_token_signed_by_another_secret(ws: str):
    wrong = mint("another-secret-0123456789abcdefghijkl", "tester")
    verdict = run(probe_ws(f"{ws}/auth", token_source=StaticToken(wrong))).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("http_status", 401, "auth")
    assert verdict.hint is not None and "JWT_SECRET" in verdict.hint


def test_503_not_ready_with_retry_after(ws: str):
    verdict = run(probe_ws(f"{ws}/not_ready")).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("http_status", 503, "not_ready")
    assert verdict.retry_after == 1
    assert "phase database running" in verdict.detail


def test_accept_then_close_4401(ws: str):
    # a long settle window: the close must be seen even on a loaded machine
    verdict = run(probe_ws(f"{ws}/close_4401", connect_only=True, settle=scaled(1))).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("closed", 4401, "auth")
    assert verdict.reason == "token expired"
    assert verdict.phase == "settle"


def test_accept_then_close_1013_even_with_steps(ws: str):
    verdict = run(probe_ws(f"{ws}/close_1013", steps=[Step({"type": "ping"})])).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("closed", 1013, "not_ready")
    assert verdict.phase == "step 1"


# -- failures after the upgrade -------------------------------------------------------------


def test_1011_keeps_the_error_id(ws: str):
    result = run(probe_ws(f"{ws}/open", steps=[Step({"type": "crash"})]))
    verdict = result.verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("closed", 1011, "internal_error")
    assert verdict.reason == "internal error, id e-1234"
    assert result.steps[0].passed is False


def test_a_step_that_is_never_answered_times_out(ws: str):
    steps = [Step({"type": "ping"}, {"type": "pong"}), Step({"type": "silence"}, timeout=0.3)]
    result = run(probe_ws(f"{ws}/open", steps=steps, timeout=scaled(5)))
    verdict = result.verdict
    assert (verdict.kind, verdict.phase, verdict.category) == ("timeout", "step 2", "timeout")
    assert [s.passed for s in result.steps] == [True, False]
    assert "unrelated message" in result.steps[1].detail  # the heartbeat was skipped


def test_check_failed_names_path_expected_and_actual(ws: str):
    result = run(
        probe_ws(f"{ws}/open", steps=[Step({"type": "ping"}, {"type": "pong", "payload.n": 2})])
    )
    verdict = result.verdict
    assert (verdict.kind, verdict.phase) == ("check_failed", "step 1")
    assert "payload.n: expected 2, got 1" in verdict.detail


def test_an_error_reply_fails_the_step_at_once(ws: str):
    steps = [Step({"type": "fail"}, {"type": "pong"}, timeout=scaled(30))]
    result = run(probe_ws(f"{ws}/open", steps=steps, timeout=scaled(30)))
    assert result.verdict.kind == "check_failed"
    assert '"error"' in result.verdict.detail


# -- failures before the upgrade ------------------------------------------------------------


def test_tcp_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    verdict = run(probe_ws(f"ws://127.0.0.1:{port}/ws")).verdict
    assert (verdict.kind, verdict.category) == ("tcp_refused", "unreachable")
    assert "ECONNREFUSED" in verdict.detail


def test_a_listener_that_never_answers_times_out_in_the_upgrade():
    # Accepted by the kernel's backlog, never by anyone: the story's "handshake timeouts".
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        result = run(probe_ws(f"ws://127.0.0.1:{port}/ws", timeout=scaled(5), open_timeout=0.3))
    verdict = result.verdict
    assert (verdict.kind, verdict.phase, verdict.category) == ("timeout", "upgrade", "timeout")
    assert "tcp" in result.timings


def test_dns_failure_for_an_invalid_name():
    verdict = run(probe_ws("ws://safeship-probe.invalid/ws", timeout=scaled(10))).verdict
    assert verdict.kind in ("dns", "timeout")
    assert verdict.category in ("unreachable", "timeout")
    if verdict.kind == "timeout":
        assert verdict.phase == "dns"


def test_token_file_unreadable_is_inconclusive(ws: str, tmp_path: Path):
    result = run(probe_ws(f"{ws}/auth", token_source=TokenFile(tmp_path / "missing")))
    assert (result.verdict.kind, result.verdict.category) == ("inconclusive", "inconclusive")
    assert str(tmp_path / "missing") in result.verdict.detail
    assert result.verdict.exit_code == 2
    assert "dns" not in result.timings  # nothing was attempted


def test_token_file_is_read_on_every_probe(ws: str, tmp_path: Path):
    path = tmp_path / "token"
    source = TokenFile(path)
    path.write_text(token())
    assert run(probe_ws(f"{ws}/auth", token_source=source)).verdict.kind == "ok"
    path.write_text("rotated-but-wrong")
    assert run(probe_ws(f"{ws}/auth", token_source=source)).verdict.code == 401


def test_the_token_never_appears_in_the_result(ws: str):
    for url, subprotocol in ((f"{ws}/leak", False), (f"{ws}/leak", True), (f"{ws}/open", True)):
        result = run(probe_ws(url, token_source=StaticToken(LEAKY), subprotocol_token=subprotocol))
        text = json.dumps(result.as_dict()) + repr(result)
        assert LEAKY not in text
        encoded = base64.urlsafe_b64encode(LEAKY.encode()).rstrip(b"=").decode()
        assert encoded not in text
    assert (
        "[redacted]" in run(probe_ws(f"{ws}/leak", token_source=StaticToken(LEAKY))).verdict.detail
    )


# -- HTTP -----------------------------------------------------------------------------------


def test_http_ready_and_not_ready(base: str):
    result = run(probe_http(f"{base}/health/ready"))
    assert result.verdict.kind == "ok" and result.verdict.code == 200
    assert {"dns", "tcp", "response", "total"} <= set(result.timings)
    verdict = run(probe_http(f"{base}/health/not-ready")).verdict
    assert (verdict.kind, verdict.code, verdict.category) == ("http_status", 503, "not_ready")
    assert "phase=database" in verdict.detail and verdict.retry_after == 2
    verdict = run(probe_http(f"{base}/broken")).verdict
    assert (verdict.code, verdict.category) == (500, "internal_error")


def test_http_failures_before_a_response():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run(probe_http(f"http://127.0.0.1:{port}/health/ready")).verdict.kind == "tcp_refused"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        verdict = run(probe_http(f"http://127.0.0.1:{port}/health/ready", timeout=0.3)).verdict
    assert (verdict.kind, verdict.phase) == ("timeout", "response")


def test_probe_dispatches_by_scheme(base: str, ws: str):
    assert run(probe(f"{base}/health/ready")).timings.get("response") is not None
    assert run(probe(f"{ws}/open")).timings.get("upgrade") is not None


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_wss_times_tls_and_reports_an_untrusted_certificate(tls_files: tuple[Path, Path]):
    cert, key = tls_files
    with run_server(make_app(), ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        port = url.rsplit(":", 1)[1]
        trusted = ssl.create_default_context(cafile=str(cert))
        result = run(probe_ws(f"wss://127.0.0.1:{port}/ws/open", ssl_context=trusted))
        assert result.verdict.kind == "ok", result.verdict
        assert {"tcp", "tls", "upgrade"} <= set(result.timings)
        verdict = run(probe_ws(f"wss://127.0.0.1:{port}/ws/open")).verdict
        assert (verdict.kind, verdict.category) == ("tls", "unreachable")
        assert "CERTIFICATE_VERIFY_FAILED" in verdict.detail
        result = run(probe_http(f"https://127.0.0.1:{port}/health/ready", ssl_context=trusted))
        assert result.verdict.kind == "ok" and "tls" in result.timings
        verdict = run(probe_http(f"https://127.0.0.1:{port}/health/ready")).verdict
        assert verdict.kind == "tls"


def test_an_invalid_application_subprotocol_is_inconclusive(ws: str):
    verdict = run(probe_ws(f"{ws}/open", subprotocols=["not a token"])).verdict
    assert (verdict.kind, verdict.exit_code) == ("inconclusive", 2)
    assert "invalid subprotocol" in verdict.detail


def test_debug_logging_never_shows_the_token(ws: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    run(probe_ws(f"{ws}/open", token_source=StaticToken(LEAKY), steps=[Step({"type": "ping"})]))
    run(probe_ws(f"{ws}/leak", token_source=StaticToken(LEAKY), subprotocol_token=True))
    ours = [r for r in caplog.records if not r.name.startswith("uvicorn")]
    assert LEAKY not in "\n".join(r.getMessage() for r in ours)
