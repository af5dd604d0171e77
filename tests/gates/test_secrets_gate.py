from __future__ import annotations

import json
import secrets as random_secrets
import sys
from pathlib import Path

import pytest

from safeship.config import load_manifest
from safeship.gates import GateResult, GateStatus, Tier, build_context
from safeship.gates.secrets_gate import SecretsGate
from safeship.secrets import fingerprint

SALT = "safeship/tests"


def _strong() -> str:
    return random_secrets.token_urlsafe(48)


def _project(tmp_path: Path, manifest: str, files: dict[str, str] | None = None) -> Path:
    (tmp_path / "safeship.toml").write_text(manifest)
    for rel, text in (files or {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def _run(root: Path, env: str, environ: dict[str, str]) -> GateResult:
    manifest = load_manifest(root / "safeship.toml") if (root / "safeship.toml").exists() else None
    if manifest is None:
        manifest = load_manifest(start=root)
    return SecretsGate().run(build_context(root, manifest, env, base_environ=environ))


MANIFEST = f"""
[service]
name = "svc"
fingerprint_salt = "{SALT}"

[secrets.JWT_SECRET]
consumers = ["env", "file:tests/e2e/client.env"]
"""


def _assert_no_value(result: GateResult, *values: str) -> None:
    text = json.dumps(result.as_dict())
    for value in values:
        assert value not in text


def test_same_strong_secret_everywhere_passes(tmp_path: Path) -> None:
    value = _strong()
    root = _project(tmp_path, MANIFEST, {"tests/e2e/client.env": f"JWT_SECRET_STAGING={value}\n"})
    result = _run(root, "staging", {"JWT_SECRET_STAGING": value})
    assert result.status is GateStatus.PASSED, result.findings
    expected = fingerprint(value, SALT)
    assert result.summary["fingerprints"] == {
        "JWT_SECRET": {"env": expected, "file:tests/e2e/client.env": expected}
    }
    _assert_no_value(result, value)


def test_generic_name_is_the_fallback_candidate(tmp_path: Path) -> None:
    value = _strong()
    root = _project(tmp_path, MANIFEST, {"tests/e2e/client.env": f"JWT_SECRET={value}\n"})
    result = _run(root, "staging", {"JWT_SECRET_STAGING": value})
    assert result.status is GateStatus.PASSED, result.findings


def test_mismatch_names_both_consumers_and_fingerprints_never_values(tmp_path: Path) -> None:
    service, client = _strong(), _strong()
    root = _project(tmp_path, MANIFEST, {"tests/e2e/client.env": f"JWT_SECRET={client}\n"})
    result = _run(root, "staging", {"JWT_SECRET_STAGING": service})
    assert result.status is GateStatus.FAILED
    [finding] = result.findings
    assert finding.rule == "secret-mismatch"
    assert finding.blocking and finding.tier is Tier.ERROR
    assert "env (JWT_SECRET_STAGING)" in finding.message
    assert "file:tests/e2e/client.env (JWT_SECRET)" in finding.message
    assert fingerprint(service, SALT) in finding.message
    assert fingerprint(client, SALT) in finding.message
    assert finding.path == "tests/e2e/client.env"
    _assert_no_value(result, service, client)


def test_missing_in_a_critical_environment_blocks_and_lists_names_tried(tmp_path: Path) -> None:
    value = _strong()
    root = _project(tmp_path, MANIFEST)  # the client's env file does not exist
    result = _run(root, "staging", {"JWT_SECRET_STAGING": value})
    assert result.status is GateStatus.FAILED
    [finding] = result.findings
    assert finding.rule == "secret-missing" and finding.blocking
    assert "tried JWT_SECRET_STAGING, JWT_SECRET" in finding.message
    assert ".env file tests/e2e/client.env (missing)" in finding.message
    assert finding.extra["tried"] == ["JWT_SECRET_STAGING", "JWT_SECRET"]
    assert "token_urlsafe" in (finding.hint or "")


def test_missing_in_development_is_a_warning(tmp_path: Path) -> None:
    root = _project(tmp_path, MANIFEST)
    result = _run(root, "development", {})
    assert result.status is GateStatus.PASSED
    assert {f.rule for f in result.findings} == {"secret-missing"}
    assert all(f.tier is Tier.WARNING and not f.blocking for f in result.findings)
    assert "generate a random one" in result.findings[0].message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("your-secret-here", "placeholder"),
        ("x" * 40, "placeholder"),
        ("short-but-random-9f3", "20 bytes"),
    ],
)
def test_weak_secret_blocks_in_critical_and_warns_elsewhere(
    tmp_path: Path, value: str, problem: str
) -> None:
    manifest = MANIFEST.replace('"env", "file:tests/e2e/client.env"', '"env"')
    root = _project(tmp_path, manifest)
    critical = _run(root, "production", {"JWT_SECRET": value})
    assert critical.status is GateStatus.FAILED
    [finding] = critical.findings
    assert finding.rule == "secret-weak" and finding.blocking
    assert problem in finding.message
    assert fingerprint(value, SALT) in finding.message
    _assert_no_value(critical, value)
    lenient = _run(root, "development", {"JWT_SECRET": value})
    assert lenient.status is GateStatus.PASSED
    assert [f.tier for f in lenient.findings] == [Tier.WARNING]


def test_dir_consumer_and_not_per_environment(tmp_path: Path) -> None:
    value = _strong()
    manifest = f"""
[service]
fingerprint_salt = "{SALT}"
[auth]
secret = "SIGNING_KEY"
[secrets.SIGNING_KEY]
per_environment = false
consumers = ["env", "dir:run/secrets"]
"""
    root = _project(tmp_path, manifest, {"run/secrets/SIGNING_KEY": value + "\n"})
    result = _run(root, "staging", {"SIGNING_KEY": value, "SIGNING_KEY_STAGING": "ignored"})
    assert result.status is GateStatus.PASSED, result.findings
    assert set(result.summary["fingerprints"]) == {"SIGNING_KEY"}


def test_optional_secret_may_be_absent(tmp_path: Path) -> None:
    value = _strong()
    manifest = MANIFEST + "\n[secrets.SENTRY_DSN]\nrequired = false\nmin_bytes = 8\n"
    root = _project(tmp_path, manifest, {"tests/e2e/client.env": f"JWT_SECRET={value}\n"})
    result = _run(root, "staging", {"JWT_SECRET": value})
    assert result.status is GateStatus.PASSED, result.findings
    assert result.summary["secrets"] == 2


def test_auth_secret_is_checked_implicitly(tmp_path: Path) -> None:
    root = _project(tmp_path, '[service]\nname = "svc"\n')
    result = _run(root, "staging", {})
    assert result.status is GateStatus.FAILED
    assert [f.symbol for f in result.findings] == ["JWT_SECRET"]
    assert "JWT_SECRET_STAGING, JWT_SECRET" in result.findings[0].message


def test_env_file_of_the_environment_feeds_the_env_consumer(tmp_path: Path) -> None:
    value = _strong()
    manifest = MANIFEST.replace('"env", "file:tests/e2e/client.env"', '"env"')
    manifest += '\n[environments.staging]\nenv_file = ".env.staging"\n'
    root = _project(tmp_path, manifest, {".env.staging": f"JWT_SECRET_STAGING={value}\n"})
    result = _run(root, "staging", {})
    assert result.status is GateStatus.PASSED, result.findings


def test_without_a_manifest_nothing_is_declared(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("")
    result = _run(tmp_path, "staging", {})
    assert result.status is GateStatus.PASSED
    assert result.summary["secrets"] == 0


@pytest.mark.parametrize(
    ("case", "hint"),
    [("extra missing", "safeship[cloudrun]"), ("no credentials", "gcloud auth")],
)
def test_unreadable_consumer_is_a_finding_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, hint: str
) -> None:
    if case == "extra missing":
        # As if the extra were not installed: importing the client fails.
        monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)
        monkeypatch.setitem(sys.modules, "google.api_core", None)
    else:
        pytest.importorskip("google.cloud.secretmanager")
        # Application default credentials that do not exist: no metadata server is asked.
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    value = _strong()
    manifest = MANIFEST.replace(
        '"env", "file:tests/e2e/client.env"', '"env", "gcp:projects/p/secrets/jwt"'
    )
    root = _project(tmp_path, manifest)
    result = _run(root, "staging", {"JWT_SECRET_STAGING": value})
    assert result.status is GateStatus.FAILED
    [finding] = result.findings
    assert finding.rule == "secret-source-error"
    assert "gcp:projects/p/secrets/jwt" in finding.message
    assert hint in (finding.hint or "")
