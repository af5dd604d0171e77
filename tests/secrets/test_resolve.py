"""Secret resolution per environment, strength, fingerprints."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest

from safeship.config import EnvironmentConfig, Manifest
from safeship.errors import SecretError
from safeship.secrets import (
    PLACEHOLDERS,
    DirSource,
    DotEnvSource,
    EnvSource,
    ResolvedSecret,
    candidate_names,
    default_sources,
    fingerprint,
    redact,
    resolve_secret,
    weaknesses,
)

STRONG = "staging-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
GENERIC = "generic-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
SALT = "safeship/test"


def _resolve(sources: list, env: str = "staging", critical: bool = True) -> ResolvedSecret:
    return resolve_secret("JWT_SECRET", env=env, critical=critical, sources=sources, salt=SALT)


def test_candidate_names() -> None:
    assert candidate_names("JWT_SECRET", "staging") == ("JWT_SECRET_STAGING", "JWT_SECRET")
    assert candidate_names("JWT_SECRET", "eu-west.prod") == (
        "JWT_SECRET_EU_WEST_PROD",
        "JWT_SECRET",
    )
    assert candidate_names("JWT_SECRET", "staging", per_environment=False) == ("JWT_SECRET",)


def test_per_environment_name_wins_over_source_order(tmp_path: Path) -> None:
    # Name-major: JWT_SECRET_STAGING in the second source beats JWT_SECRET in the first.
    (tmp_path / ".env.staging").write_text(f"JWT_SECRET_STAGING={STRONG}\n")
    sources = [EnvSource({"JWT_SECRET": GENERIC}), DotEnvSource(tmp_path / ".env.staging")]
    resolved = _resolve(sources)
    assert resolved.value == STRONG
    assert resolved.name == "JWT_SECRET_STAGING"
    assert resolved.source.startswith(".env file")
    assert not resolved.generated and resolved.warnings == ()


def test_same_name_comes_from_the_first_source(tmp_path: Path) -> None:
    (tmp_path / "JWT_SECRET_STAGING").write_text(GENERIC + "\n")
    sources = [EnvSource({"JWT_SECRET_STAGING": STRONG}), DirSource(tmp_path)]
    assert _resolve(sources).value == STRONG
    sources = [EnvSource({}), DirSource(tmp_path)]
    resolved = _resolve(sources)
    assert resolved.value == GENERIC
    assert resolved.source.startswith("mounted secrets directory")


def test_generic_name_is_used_when_no_per_environment_one_exists() -> None:
    resolved = _resolve([EnvSource({"JWT_SECRET": GENERIC, "JWT_SECRET_PRODUCTION": STRONG})])
    assert resolved.name == "JWT_SECRET"
    assert resolved.value == GENERIC


def test_missing_in_staging_names_every_variable_and_source(tmp_path: Path) -> None:
    sources = [EnvSource({}), DotEnvSource(tmp_path / ".env.staging", label=".env.staging")]
    with pytest.raises(SecretError) as caught:
        _resolve(sources)
    error = caught.value
    assert error.message.startswith("JWT secret missing for environment 'staging'")
    assert "JWT_SECRET_STAGING, JWT_SECRET" in error.message
    assert "environment variables, .env file .env.staging (missing)" in error.message
    assert error.tried == ("JWT_SECRET_STAGING", "JWT_SECRET")
    assert "set JWT_SECRET_STAGING" in (error.hint or "")
    assert "token_urlsafe" in (error.hint or "")


def test_empty_assignments_count_as_missing_and_are_reported() -> None:
    with pytest.raises(SecretError) as caught:
        _resolve([EnvSource({"JWT_SECRET_STAGING": "", "JWT_SECRET": "  "})])
    assert "set but empty" in caught.value.message
    # An empty per-environment assignment does not hide the generic variable.
    assert _resolve([EnvSource({"JWT_SECRET_STAGING": "", "JWT_SECRET": GENERIC})]).value == GENERIC


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("changeme", "placeholder"),
        ("CHANGEME-CHANGEME-CHANGEME-CHANGEME!", "placeholder"),
        ("your-secret-here", "placeholder"),
        ("x" * 48, "placeholder"),
        ("<placeholder for the real secret value>", "placeholder"),
        ("Zq9-shortbutrandom", "is 18 bytes; at least 32 are required for HS256"),
    ],
)
def test_weak_secrets_are_rejected_in_critical_environments(value: str, problem: str) -> None:
    with pytest.raises(SecretError) as caught:
        _resolve([EnvSource({"JWT_SECRET_STAGING": value})])
    message = caught.value.message
    assert problem in message
    message = message.replace("('changeme'-like)", "")
    assert "JWT_SECRET_STAGING in environment variables" in message
    assert value not in message and value not in (caught.value.hint or "")
    # No fingerprint of a weak value: it would be an offline oracle for guessing it.
    assert fingerprint(value, SALT) not in message


def test_weak_secrets_are_accepted_with_a_warning_in_development(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="safeship.secrets")
    resolved = _resolve([EnvSource({"JWT_SECRET_DEVELOPMENT": "changeme"})], "development", False)
    assert resolved.value == "changeme"
    assert resolved.name == "JWT_SECRET_DEVELOPMENT"
    assert any("placeholder" in w for w in resolved.warnings)
    assert any("is 8 bytes" in w for w in resolved.warnings)
    records = [r for r in caplog.records if r.name == "safeship.secrets"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "changeme" not in caplog.text.replace("'changeme'-like", "")


@pytest.mark.parametrize("env", ["development", "test"])
def test_missing_secret_is_generated_only_in_development_and_test(
    env: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="safeship.secrets")
    resolved = _resolve([EnvSource({})], env, False)
    assert resolved.generated
    assert resolved.name == "<generated>"
    assert len(resolved.value.encode()) >= 48
    assert weaknesses(resolved.value) == []
    assert resolved.fingerprint == fingerprint(resolved.value, SALT)
    [record] = [r for r in caplog.records if r.name == "safeship.secrets"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert resolved.fingerprint in message
    assert f"JWT_SECRET_{env.upper()}, JWT_SECRET" in message
    assert resolved.value not in caplog.text
    # A new process (call) gets a new secret.
    assert _resolve([EnvSource({})], env, False).value != resolved.value


@pytest.mark.parametrize(("env", "critical"), [("development", True), ("preview", False)])
def test_no_generated_fallback_elsewhere(env: str, critical: bool) -> None:
    with pytest.raises(SecretError, match="missing"):
        _resolve([EnvSource({})], env, critical)


def test_weaknesses_never_quote_the_value() -> None:
    assert weaknesses(STRONG) == []
    assert "changeme" in PLACEHOLDERS and "test" in PLACEHOLDERS
    assert weaknesses(hashlib.sha256(b"seed").digest()) == []
    assert weaknesses(bytes(range(32))) == [
        "is a sequence of consecutive characters (rule: not a sequence)"
    ]
    problems = weaknesses("secret")
    assert problems == [
        "is a placeholder ('changeme'-like)",
        "is 6 bytes; at least 32 are required for HS256 (RFC 7518 §3.2)",
    ]
    assert weaknesses("") == [
        "is empty",
        "is 0 bytes; at least 32 are required for HS256 (RFC 7518 §3.2)",
    ]
    assert weaknesses("a" * 10, min_bytes=64)[-1] == "is 10 bytes; at least 64 are required"


def test_fingerprint_is_deterministic_and_keyed() -> None:
    first = fingerprint(STRONG, SALT)
    assert first == fingerprint(STRONG.encode(), SALT)
    assert len(first) == 12 and int(first, 16) >= 0
    assert fingerprint(STRONG, "another/service") != first
    assert fingerprint(GENERIC, SALT) != first
    # The documented constructions (docs/security.md), so other tools can compute the same:
    # scrypt without a key, HMAC-SHA256 under SAFESHIP_FINGERPRINT_KEY with one.
    slow = hashlib.scrypt(b"abc", salt=b"safeship-fingerprint\x00salt", n=2**14, r=8, p=1, dklen=16)
    assert fingerprint("abc", "salt") == slow.hex()[:12]
    keyed = hmac.new(b"k", b"salt\x00abc", "sha256").hexdigest()[:12]
    assert fingerprint("abc", "salt", key="k") == keyed


def test_resolved_secret_never_shows_its_value() -> None:
    resolved = _resolve([EnvSource({"JWT_SECRET_STAGING": STRONG})])
    assert STRONG not in repr(resolved)
    assert STRONG not in str(resolved)
    assert resolved.fingerprint in repr(resolved)


def test_resolved_values_are_registered_for_redaction() -> None:
    value = "registered-by-resolution-0123456789-abcdefghij"
    _resolve([EnvSource({"JWT_SECRET_STAGING": value})])
    assert value not in redact(f"config dump: key={value!r} and again {value}")


def test_default_sources_follow_the_manifest(tmp_path: Path) -> None:
    (tmp_path / ".env.staging").write_text(f"JWT_SECRET_STAGING={STRONG}\n")
    (tmp_path / "mounted").mkdir()
    manifest = Manifest(
        root=tmp_path,
        environments={"staging": EnvironmentConfig(env_file=".env.staging")},
    )
    environ = {"SAFESHIP_SECRETS_DIR": "mounted"}
    sources = default_sources(manifest, "staging", environ)
    assert [s.spec for s in sources] == ["env", "file:.env.staging", "dir:mounted"]
    assert _resolve(sources).value == STRONG
    # Production has no env_file and no secrets dir here: environment variables only.
    assert [s.spec for s in default_sources(manifest, "production", {})] == ["env"]
