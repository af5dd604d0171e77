from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from safeship.errors import ProbeError, UsageError
from safeship.probe.tokens import (
    TOKEN_SOURCES,
    MintedToken,
    StaticToken,
    TokenEndpoint,
    TokenFile,
    TokenSource,
    subprotocols_for,
    token_source,
)
from safeship.testing import run_server

SECRET = "probe-test-secret-0123456789abcdefghij"
ENDPOINT_TOKEN = "endpoint.issued.token"


def get(source: TokenSource) -> str:
    return asyncio.run(source.get())


async def _issue(request: Request) -> JSONResponse:
    body = await request.json()
    if body.get("user") == "denied":
        return JSONResponse({"error": "nope"}, status_code=403)
    if body.get("user") == "empty":
        return JSONResponse({"something": "else"})
    if body.get("user") == "oauth":
        return JSONResponse({"access_token": ENDPOINT_TOKEN, "token_type": "Bearer"})
    return JSONResponse({"token": ENDPOINT_TOKEN})


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with run_server(Starlette(routes=[Route("/token", _issue, methods=["POST"])])) as base:
        yield base + "/token"


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PROBE_TEST_SECRET", SECRET)
    return "PROBE_TEST_SECRET"


def test_static_token():
    assert get(StaticToken(" abc \n")) == "abc"
    with pytest.raises(ProbeError):
        get(StaticToken(""))
    assert "abc" not in repr(StaticToken("abc"))


def test_token_file_is_read_again_on_every_probe(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("first\n")
    source = TokenFile(path)
    assert get(source) == "first"
    path.write_text("second")
    assert get(source) == "second"


def test_token_file_unreadable_names_the_file(tmp_path: Path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(ProbeError) as info:
        get(TokenFile(missing))
    assert str(missing) in info.value.message
    assert "No such file" in info.value.message
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ProbeError, match="empty"):
        get(TokenFile(empty))


def test_minted_token_reads_the_variable_each_time(
    monkeypatch: pytest.MonkeyPatch, env_secret: str
):
    source = MintedToken(env_secret, ttl=30, claims={"role": "probe"})
    token = get(source)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "safeship-probe"
    assert claims["role"] == "probe"
    assert 29 <= claims["exp"] - claims["iat"] <= 31
    monkeypatch.setenv(env_secret, "another-secret-0123456789abcdefghijkl")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(get(source), SECRET, algorithms=["HS256"])
    assert SECRET not in repr(source) and SECRET not in source.describe()


def test_minted_token_issuer_and_audience(env_secret: str):
    token = get(MintedToken(env_secret, sub="bot", issuer="me", audience="svc"))
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="svc", issuer="me")
    assert claims["sub"] == "bot"


@pytest.mark.parametrize("value", [None, ""])
def test_minted_token_missing_variable_is_named(value: str | None):
    environ = {} if value is None else {"JWT_SECRET_STAGING": value}
    with pytest.raises(ProbeError) as info:
        get(MintedToken("JWT_SECRET_STAGING", environ=environ))
    assert "JWT_SECRET_STAGING" in info.value.message
    assert ("not set" if value is None else "empty") in info.value.message


@pytest.mark.e2e
def test_token_endpoint(endpoint: str):
    assert get(TokenEndpoint(endpoint)) == ENDPOINT_TOKEN
    assert get(TokenEndpoint(endpoint, body={"user": "oauth"})) == ENDPOINT_TOKEN
    with pytest.raises(ProbeError, match="HTTP 403"):
        get(TokenEndpoint(endpoint, body={"user": "denied"}))
    with pytest.raises(ProbeError, match="without a token"):
        get(TokenEndpoint(endpoint, body={"user": "empty"}))


def test_token_endpoint_unreachable():
    with pytest.raises(ProbeError, match="cannot reach the token endpoint"):
        get(TokenEndpoint("http://127.0.0.1:9/token", timeout=2))


def test_subprotocols_carry_the_token_base64url_without_padding():
    auth, carrier = subprotocols_for("a.b-c")
    assert auth == "jwt-auth"
    assert carrier.startswith("jwt.") and not carrier.endswith("=")
    encoded = carrier.removeprefix("jwt.")
    assert base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)) == b"a.b-c"


def test_unknown_kind_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown token source"):
        token_source("carrier-pigeon", "x")


# The contract every registered source keeps: a usable config gives a non-empty string, an
# unusable one raises ProbeError (never anything else), and nothing shows the token.
@pytest.fixture
def kind_good_bad(request: pytest.FixtureRequest, tmp_path: Path, env_secret: str):
    kind = request.param
    if kind == "token":
        return kind, "static-token-value", " "
    if kind == "file":
        (tmp_path / "t").write_text("file-token-value")
        return kind, str(tmp_path / "t"), str(tmp_path / "missing")
    if kind == "env":
        return kind, env_secret, "PROBE_TEST_UNSET_VARIABLE"
    if kind == "url":
        return kind, request.getfixturevalue("endpoint"), "http://127.0.0.1:9/token"
    raise AssertionError(f"add a contract case for token source {kind!r}")


@pytest.mark.parametrize(
    "kind_good_bad",
    [pytest.param(k, marks=pytest.mark.e2e) if k == "url" else k for k in TOKEN_SOURCES],
    indirect=True,
)
def test_token_source_contract(kind_good_bad):
    kind, good, bad = kind_good_bad
    source = token_source(kind, good)
    assert isinstance(source, TokenSource)
    token = get(source)
    assert token and isinstance(token, str) and token == token.strip()
    assert token not in repr(source) and token not in source.describe()
    with pytest.raises(ProbeError) as info:
        get(token_source(kind, bad))
    assert info.value.hint
