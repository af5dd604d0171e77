"""Weak secrets are refused in critical environments, naming the rule; fingerprints are keyed,
so a logged one is no offline oracle."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from safeship.errors import SecretError
from safeship.secrets import EnvSource, fingerprint, redact, resolve_secret, weaknesses

SALT = "safeship/acme"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("password" * 4, "not repetitive"),
        ("secret" * 6, "not repetitive"),
        ("${JWT_SECRET_STAGING}-padding-to-be-long-enough", "unexpanded template"),
        ("{{ jwt_secret }}-padding-to-be-long-enough-xx", "unexpanded template"),
        ("your-256-bit-secret" * 2, "known example"),
        ("0123456789abcdefghijklmnopqrstuvwxyz", "not a sequence"),
        ("abababababababababababababababab1", "not a sequence"),
        ("abcabcabcabcabcabcabcabcabcabcab", "not repetitive"),
        ("aaaabbbbaaaabbbbccccaaaabbbbaaaacc", "entropy"),
    ],
)
def test_weak_values_fail_in_staging_naming_the_rule(value: str, rule: str) -> None:
    with pytest.raises(SecretError) as refused:
        resolve_secret(
            "JWT_SECRET", env="staging", critical=True,
            sources=[EnvSource({"JWT_SECRET_STAGING": value})], salt=SALT,
        )  # fmt: skip
    message = refused.value.message
    assert rule in message
    assert value not in message
    assert fingerprint(value, SALT) not in message  # no oracle for a guessable value
    # The rejected value was not registered for redaction: a placeholder is no secret.
    assert redact(value) == value or "[redacted]" in redact(value)
    assert "[redacted:" not in redact(value)


def test_strong_values_pass() -> None:
    assert weaknesses(hashlib.sha256(b"x").hexdigest()) == []
    assert weaknesses("Tr0ub4dor-correct-horse-battery-staple-9") == []


def test_fingerprints_are_keyed_when_a_project_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    value = "abc123def456-and-more-characters-to-32"
    unkeyed = fingerprint(value, SALT)
    monkeypatch.setenv("SAFESHIP_FINGERPRINT_KEY", "project-key-0123456789")
    keyed = fingerprint(value, SALT)
    assert keyed != unkeyed
    assert keyed == fingerprint(value, SALT)  # comparable across the project's consumers
    assert keyed != fingerprint(value, SALT, key="another-project-key")
    # What an attacker with the log but not the key could try: the old public-salt HMAC.
    public = hmac.new(SALT.encode(), value.encode(), "sha256").hexdigest()[:12]
    assert public not in (keyed, unkeyed)


def test_without_a_key_each_guess_costs_a_slow_kdf() -> None:
    """Structural, not timed: the unkeyed fingerprint is scrypt with N=2**14, r=8 (16 MiB per
    guess), not a fast hash of a public salt."""
    value = "guess-me-if-you-can-0123456789-abcd"
    expected = hashlib.scrypt(
        value.encode(), salt=b"safeship-fingerprint\x00" + SALT.encode(), n=2**14, r=8, p=1,
        dklen=16,
    )  # fmt: skip
    assert fingerprint(value, SALT) == expected.hex()[:12]
