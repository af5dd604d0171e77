"""The deploy's probe setup: URLs, the round trip, and the token minted from the clients' secret."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jwt
import pytest

from safeship.config import Manifest
from safeship.deploy.probes import ProbeOutcome, probe_steps, probe_token_source, ws_url
from safeship.errors import ConfigError, SecretError

SECRET = "clients-secret-5b0f3c1e9a7d4b2c8e6f0a1b3c5d7e9f"


def manifest(tmp_path: Path, **deploy: Any) -> Manifest:
    return Manifest.model_validate(
        {"service": {"app": "svc.main:app"}, "deploy": deploy, "root": tmp_path}
    )


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("http://127.0.0.1:8700", "/ws", "ws://127.0.0.1:8700/ws"),
        ("https://svc.example.com/", "ws", "wss://svc.example.com/ws"),
        ("http://h:1/api", "/v1/ws", "ws://h:1/api/v1/ws"),
    ],
)
def test_ws_url(base: str, path: str, expected: str) -> None:
    assert ws_url(base, path) == expected


def test_no_round_trip_by_default(tmp_path: Path) -> None:
    assert probe_steps(manifest(tmp_path)) == []


def test_round_trip_from_the_manifest(tmp_path: Path) -> None:
    steps = probe_steps(
        manifest(tmp_path, probe_send='{"type": "ping"}', probe_expect={"type": "pong"},
                 probe_timeout=1.5)
    )  # fmt: skip
    assert len(steps) == 1
    assert dict(steps[0].send) == {"type": "ping"} and dict(steps[0].expect) == {"type": "pong"}
    assert steps[0].timeout == 1.5


def test_expect_without_send_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deploy\.probe_expect"):
        probe_steps(manifest(tmp_path, probe_expect={"type": "pong"}))


def test_token_is_minted_from_the_environment_secret(tmp_path: Path) -> None:
    source = probe_token_source(manifest(tmp_path), "staging", {"JWT_SECRET_STAGING": SECRET})
    token = asyncio.run(source.get())
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "safeship-probe"
    assert SECRET not in source.describe() and SECRET not in repr(source)
    assert "JWT_SECRET_STAGING" in source.describe()


def test_token_comes_from_the_clients_file(tmp_path: Path) -> None:
    (tmp_path / "clients.env").write_text(f"JWT_SECRET={SECRET}\n")
    m = manifest(tmp_path, probe_secret="file:clients.env")
    source = probe_token_source(m, "test", {"JWT_SECRET_TEST": "the-service-secret-" + "x" * 20})
    token = asyncio.run(source.get())
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "safeship-probe"


def test_missing_secret_names_every_variable_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as caught:
        probe_token_source(manifest(tmp_path), "test", {"JWT_SECRET_TEST": "  "})
    message = caught.value.message
    assert "JWT_SECRET_TEST" in message and "JWT_SECRET," not in message  # both, in order
    assert "JWT_SECRET_TEST, JWT_SECRET" in message
    assert "probe_secret" in message
    assert caught.value.tried == ("JWT_SECRET_TEST", "JWT_SECRET")


def test_weak_secret_is_refused_in_a_critical_environment(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="too weak"):
        probe_token_source(manifest(tmp_path), "production", {"JWT_SECRET": "changeme"})


def test_unknown_probe_secret_kind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="probe_secret"):
        probe_token_source(manifest(tmp_path, probe_secret="vault:x"), "test", {})


def test_probe_outcome_as_dict() -> None:
    outcome = ProbeOutcome("auth", "http_status", "HTTP 401", 12.345, 401, "websocket")
    assert outcome.as_dict() == {
        "what": "websocket", "category": "auth", "kind": "http_status", "code": 401,
        "detail": "HTTP 401", "ms": 12.3,
    }  # fmt: skip
    assert not outcome.ok and ProbeOutcome("ok").ok
