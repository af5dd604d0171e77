"""The secrets gate and ``[deploy.cloudrun] secrets``: the Secret Manager version the Cloud Run
service reads is compared with the clients' consumers (real Secret Manager client, REST, on a
loopback stand-in)."""

from __future__ import annotations

import secrets as random_secrets
from pathlib import Path
from typing import Any

import pytest

from safeship.config import load_manifest
from safeship.gates import GateStatus, build_context
from safeship.gates.secrets_gate import SecretsGate, referenced_versions
from safeship.secrets import GcpSecretManagerSource, fingerprint, sources

from ..secrets.test_gcp import _client, _SecretManager, secret_manager  # noqa: F401

SALT = "safeship/tests"
MANIFEST = f"""
[service]
name = "svc"
fingerprint_salt = "{SALT}"

[secrets.JWT_SECRET]
consumers = ["file:clients.env"]

[deploy.cloudrun]
project = "proj"
region = "europe-west1"
service = "api"
secrets = {{ JWT_SECRET_STAGING = "jwt-staging:latest", JWT_SECRET_PRODUCTION = "projects/other/secrets/jwt-prod:3" }}
"""


def _context(tmp_path: Path, env: str, clients: str) -> Any:
    (tmp_path / "safeship.toml").write_text(MANIFEST)
    (tmp_path / "clients.env").write_text(clients)
    manifest = load_manifest(tmp_path / "safeship.toml")
    return build_context(tmp_path, manifest, env, base_environ={})


def test_the_referenced_version_is_a_consumer_of_its_secret(tmp_path: Path) -> None:
    staging = _context(tmp_path, "staging", "")
    config = staging.manifest.secret_config("JWT_SECRET")
    assert referenced_versions(staging, "JWT_SECRET", config) == [
        "gcp:projects/proj/secrets/jwt-staging"
    ]
    production = _context(tmp_path, "production", "")
    assert referenced_versions(production, "JWT_SECRET", config) == [
        "gcp:projects/other/secrets/jwt-prod/versions/3"
    ]
    assert referenced_versions(_context(tmp_path, "test", ""), "JWT_SECRET", config) == []


@pytest.fixture
def gcp_on_loopback(
    secret_manager: tuple[_SecretManager, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> _SecretManager:
    backend, host = secret_manager

    def factory(arg: str, *, root: Path, environ: Any = None) -> GcpSecretManagerSource:
        return GcpSecretManagerSource(arg, client=_client(host), timeout=5)

    monkeypatch.setitem(sources.SOURCE_KINDS, "gcp", factory)
    return backend


def test_a_service_secret_that_differs_from_the_clients_blocks(
    tmp_path: Path, gcp_on_loopback: _SecretManager
) -> None:
    service_value, client_value = random_secrets.token_urlsafe(48), random_secrets.token_urlsafe(48)
    gcp_on_loopback.secrets["projects/proj/secrets/jwt-staging"] = [(1, "ENABLED", service_value)]
    ctx = _context(tmp_path, "staging", f"JWT_SECRET_STAGING={client_value}\n")
    result = SecretsGate().run(ctx)
    assert result.status is GateStatus.FAILED
    [mismatch] = [f for f in result.findings if f.rule == "secret-mismatch"]
    assert "gcp:projects/proj/secrets/jwt-staging" in mismatch.message
    assert fingerprint(service_value, SALT) in mismatch.message
    assert service_value not in mismatch.message and client_value not in mismatch.message


def test_the_same_secret_in_the_service_and_the_clients_passes(
    tmp_path: Path, gcp_on_loopback: _SecretManager
) -> None:
    value = random_secrets.token_urlsafe(48)
    gcp_on_loopback.secrets["projects/proj/secrets/jwt-staging"] = [(4, "ENABLED", value)]
    result = SecretsGate().run(_context(tmp_path, "staging", f"JWT_SECRET_STAGING={value}\n"))
    assert result.status is GateStatus.PASSED, result.findings
    assert result.summary["consumers"] == 2
    expected = fingerprint(value, SALT)
    assert result.summary["fingerprints"]["JWT_SECRET"] == {
        "file:clients.env": expected,
        "gcp:projects/proj/secrets/jwt-staging": expected,
    }
