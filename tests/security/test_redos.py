"""ReDoS: every regex that sees client input runs in linear time, and redaction looks at a
bounded length (the timings are in benchmarks/redact_speed.py, not here)."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator

import h11._connection
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from safeship.secrets import install_redaction, redact
from safeship.secrets.redact import MAX_EXAMINED_CHARS
from safeship.testing import run_server

from ._linear import problems

# Every module whose regexes see what a client sends (headers, query strings, tokens,
# messages, log lines built from them), and how each pattern is used: "search" (sub, search,
# finditer: tried at every position) or "anchored" (match / fullmatch only).
MODULES = (
    "safeship.secrets.redact",
    "safeship.secrets.strength",
    "safeship.secrets.resolve",
    "safeship.tokens.extract",
    "safeship.tokens.verify",
    "safeship.tokens.tickets",
    "safeship.tokens.tickets_redis",
    "safeship.core.handshake",
    "safeship.service.deadline",
    "safeship.service.guard",
    "safeship.service.health",
    "safeship.service.startup",
    "safeship.service.connections",
    "safeship.deploy.front",
    "agent_service.protocol",
    "agent_service.connection",
)
ALLOWED = {
    "safeship.secrets.redact._PASSES": "search",
    "safeship.secrets.redact._JWT": "search",
    "safeship.secrets.strength._TEMPLATE": "search",
    "safeship.tokens.extract._TOKEN68": "anchored",
    "safeship.tokens.extract._B64URL": "anchored",
    "safeship.tokens.extract._CONTROL": "search",
    "safeship.tokens.extract._NOT_LATIN1": "search",
    "safeship.tokens.verify._COMPACT": "anchored",
}


def _patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            found = [value] if isinstance(value, re.Pattern) else []
            if isinstance(value, tuple):
                found = [
                    v
                    for item in value
                    for v in (item if isinstance(item, tuple) else (item,))
                    if isinstance(v, re.Pattern)
                ]
            for pattern in found:
                yield f"{name}.{attr}", pattern


def test_every_client_facing_regex_is_listed_and_linear() -> None:
    seen = set()
    for where, pattern in _patterns():
        seen.add(where)
        assert where in ALLOWED, f"{where} ({pattern.pattern!r}) is not in the allow-list"
        found = problems(pattern, anchored=ALLOWED[where] == "anchored")
        assert not found, f"{where} {pattern.pattern!r}: {found}"
    assert seen == set(ALLOWED)


@pytest.mark.parametrize(
    "pattern",
    [
        # What redaction used to run: each "eyJ" starts an attempt that scans to the end.
        r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*",
        r"(a+)+$",
        r"(?:a|a)*b",
        r"\s*:\s*x",
        r"(?<![a-z])[a-z0-9]*+\.[a-z]*+",
    ],
)
def test_the_analyzer_rejects_backtracking_shapes(pattern: str) -> None:
    assert problems(re.compile(pattern), anchored=False)


@pytest.mark.parametrize(
    "unit", ["eyJ", "a.eyJ", "authorization: ", "token=&", "://a:", "Bearer ", "jwt.1", "?%", " "]
)
def test_redaction_examines_a_bounded_length(unit: str) -> None:
    big = unit * (4 * MAX_EXAMINED_CHARS // len(unit))
    out = redact(big + " token=SECRET-AT-THE-END")
    assert len(out) < MAX_EXAMINED_CHARS * 2
    assert "SECRET-AT-THE-END" not in out
    assert "more characters not shown" in out


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_log() -> Iterator[_Lines]:
    install_redaction()
    handler = _Lines()
    logger = logging.getLogger("uvicorn.access")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_a_request_at_the_header_limit_is_answered_and_logged_bounded(
    access_log: _Lines,
) -> None:
    """The attack of the review: one GET whose query is token-shaped up to the server's limit.
    The server answers it and the next request, and the access line is bounded and redacted."""
    limit = h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # what uvicorn gives h11

    async def live(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/health/live", live)])
    attack = "eyJ" * ((limit - 200) // 3)
    server = run_server(app, http="h11", access_log=True, log_config=None, log_level="info")
    with server as url, httpx.Client(timeout=10) as client:
        assert client.get(f"{url}/health/live?{attack}").status_code == 200
        assert client.get(f"{url}/health/live?jwt=a.eyJb.c").status_code == 200
    lines = access_log.lines
    assert any("/health/live?jwt=[redacted]" in line for line in lines)
    assert all(len(line) <= MAX_EXAMINED_CHARS + 100 for line in lines)
