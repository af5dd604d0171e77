"""Redaction of secrets and tokens: the text function, and every log record once installed."""

from __future__ import annotations

import base64
import io
import logging
import logging.config
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn.config
from websockets.sync.client import connect

from safeship.secrets import RedactingFilter, install_redaction, redact, register_secret
from safeship.testing import run_server, scaled, wait_until
from safeship.tokens import mint

SECRET = "registered-secret-0123456789-abcdefghijklmn"
TOKEN = mint("k" * 8 + "0123456789abcdefghijklmnopqrstuvwxyz", "alice", ttl=6 * 3600)
TICKET = "tkt_Zm9vYmFyYmF6cXV4cXV1eA"
SUBPROTOCOL = "jwt." + base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("=")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _assert_clean(text: str) -> None:
    for leaked in (SECRET, TOKEN, TICKET, SUBPROTOCOL[4:], TOKEN.split(".")[1]):
        assert leaked not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc", "Authorization: Bearer [redacted]"),
        ("{'authorization': b'Bearer abc'}", "{'authorization': b'Bearer [redacted]'}"),
        ("(b'authorization', b'Bearer abc')", "(b'authorization', b'Bearer [redacted]')"),
        ('"Authorization": "Basic dXNlcjpwYXNz"', '"Authorization": "Basic [redacted]"'),
        ('127.0.0.1:5000 - "WebSocket /ws?ticket=abc" [accepted]',
         '127.0.0.1:5000 - "WebSocket /ws?ticket=[redacted]" [accepted]'),
        ("/x?a=1&token=abc&b=2", "/x?a=1&token=[redacted]&b=2"),
        ("b'access_token=abc&jwt=def'", "b'access_token=[redacted]&jwt=[redacted]'"),
        ("cookie: session=abc; theme=dark", "cookie: [redacted]"),
        ("postgresql://app:pa55@db:5432/app", "postgresql://app:[redacted]@db:5432/app"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:[redacted]@127.0.0.1:6379/0"),
        ("?client_secret=s3&password=p&api_key=k",
         "?client_secret=[redacted]&password=[redacted]&api_key=[redacted]"),
        ("Bearer abcdefgh12345678", "Bearer [redacted]"),
        ("https://example.com/path?q=1", "https://example.com/path?q=1"),
        ('WWW-Authenticate: Bearer error="invalid_token"',
         'WWW-Authenticate: Bearer error="invalid_token"'),
        ("raised jwt.InvalidSignatureError", "raised jwt.InvalidSignatureError"),
        ("nothing to see here", "nothing to see here"),
    ],
)  # fmt: skip
def test_redact_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_tokens_subprotocols_and_registered_secrets() -> None:
    register_secret(SECRET)
    text = redact(
        f"token {TOKEN} offered {['chat', SUBPROTOCOL]} with key {SECRET}; Bearer {TOKEN}"
    )
    _assert_clean(text)
    assert "jwt.[redacted]" in text
    assert "[redacted:" in text  # registered secrets carry their fingerprint
    # A token embedded in other text is still found.
    assert TOKEN not in redact(f"x{TOKEN}y")


def test_register_secret_ignores_tiny_values_and_accepts_bytes() -> None:
    register_secret("ab")
    assert redact("a cab ride") == "a cab ride"
    value = b"bytes-secret-value-0123456789"
    register_secret(value)
    assert value.decode() not in redact(f"key={value.decode()}!")


@pytest.fixture
def installed() -> Iterator[None]:
    """Redaction installed for the test; the record factory and uvicorn's loggers restored."""
    factory = logging.getLogRecordFactory()
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for name in UVICORN_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    register_secret(SECRET)
    install_redaction()
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)
        for name, (handlers, level, propagate, disabled) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled


def _fresh_logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger(f"safeship.test.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def test_install_is_idempotent(installed: None) -> None:
    factory = logging.getLogRecordFactory()
    install_redaction()
    assert logging.getLogRecordFactory() is factory


def test_logger_created_after_install_is_redacted(installed: None) -> None:
    logger, stream = _fresh_logger()
    logger.info("Authorization: Bearer %s", TOKEN)
    logger.warning("connect /ws?ticket=%s subprotocols=%r", TICKET, [SUBPROTOCOL])
    logger.error("secret is %s", SECRET)
    logger.info("dict args %(tok)s", {"tok": TOKEN})
    text = stream.getvalue()
    _assert_clean(text)
    assert text.count("[redacted") == 5
    assert "ticket=[redacted]" in text


def test_exception_messages_and_tracebacks_are_redacted(installed: None) -> None:
    logger, stream = _fresh_logger()
    try:
        raise ValueError(f"bad token {TOKEN} for ticket={TICKET}")
    except ValueError:
        logger.exception("handshake failed for %s", SUBPROTOCOL)
    text = stream.getvalue()
    _assert_clean(text)
    assert "Traceback" in text and "ValueError: bad token [redacted]" in text


def test_unformattable_records_do_not_leak_their_args(
    installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logger, stream = _fresh_logger()
    logger.info("two placeholders %s %s", TOKEN)  # one argument missing
    text = stream.getvalue() + capsys.readouterr().err
    assert "could not be formatted" in text
    _assert_clean(text)


def test_uvicorn_loggers_configured_like_uvicorn(
    installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws?ticket={TICKET}"
    )
    # uvicorn's AccessFormatter unpacks record.args, so they must survive (redacted).
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/feed?token={TOKEN}", "1.1", 200
    )
    try:
        raise RuntimeError(f"Authorization: Bearer {TOKEN}")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    captured = capsys.readouterr()
    text = captured.out + captured.err
    _assert_clean(text)
    assert '"WebSocket /ws?ticket=[redacted]" [accepted]' in captured.err
    assert '"GET /feed?token=[redacted] HTTP/1.1" 200' in captured.out
    assert "RuntimeError: Authorization: Bearer [redacted]" in captured.err
    assert "Logging error" not in text


def test_redacting_filter_on_a_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"safeship.test.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("token=%s", TOKEN, extra={"color_message": "token=%s"})
    assert stream.getvalue() == "token=[redacted]\n"


async def _ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


@pytest.mark.e2e
def test_real_uvicorn_websocket_log_lines_are_redacted(
    installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def logged() -> bool:
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
        return "[accepted]" in "".join(seen)

    with run_server(_ws_app, lifespan="off", log_level="info") as base:
        url = base.replace("http://", "ws://") + f"/ws?ticket={TICKET}&jwt={TOKEN}"
        offered: Any = [SUBPROTOCOL]
        with connect(url, subprotocols=offered, open_timeout=scaled(5), close_timeout=scaled(5)):
            pass
        wait_until(logged, timeout=5, what="uvicorn's WebSocket log line")
    text = "".join(seen)
    _assert_clean(text)
    assert "/ws?ticket=[redacted]&jwt=[redacted]" in text
