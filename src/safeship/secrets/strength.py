"""How strong a secret is, and its keyed fingerprint (which identifies a value without showing it)."""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["PLACEHOLDERS", "fingerprint", "weaknesses"]


PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "changeme", "change-me", "change_me", "changeit", "change-it", "replaceme",
        "replace-me", "replace_me", "secret", "secretkey", "secret-key", "secret_key",
        "mysecret", "my-secret", "my_secret", "jwt-secret", "jwt_secret", "jwtsecret",
        "supersecret", "super-secret", "super_secret", "topsecret", "s3cr3t", "test",
        "testing", "test-secret", "test_secret", "xxx", "password", "passw0rd", "default",
        "dummy", "example", "sample", "todo", "tbd", "fixme", "your-secret-here",
        "your_secret_here", "your-secret", "yoursecret", "your-jwt-secret", "none", "null",
        "undefined", "foo", "bar", "foobar", "abc", "abc123", "123456", "12345678",
        "1234567890", "qwerty", "admin", "letmein", "key", "token", "dev", "development",
        "staging", "prod", "production", "local", "insecure", "fallback", "fallback-secret",
        "fallback_secret", "not-a-secret", "notsecret",
    }
)  # fmt: skip
"""Well-known placeholder values, compared case-insensitively."""

# Fragments that mark a value as a placeholder wherever they appear (after removing - _ and
# spaces): "please-change-me-in-prod", "<placeholder>", "django-insecure-...".
_PLACEHOLDER_FRAGMENTS = ("changeme", "placeholder", "replaceme", "yoursecret", "insecure")


def _is_placeholder(text: str) -> bool:
    folded = text.strip().strip("'\"<>").lower()
    if folded in PLACEHOLDERS or (folded and len(set(folded)) == 1):
        return True
    squashed = re.sub(r"[-_\s]", "", folded)
    return any(fragment in squashed for fragment in _PLACEHOLDER_FRAGMENTS)


def weaknesses(value: str | bytes, min_bytes: int = 32) -> list[str]:
    """Human-readable problems with a secret value; empty when it is acceptable.

    The problems never quote the value.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    text = raw.decode("utf-8", errors="replace")
    problems = []
    if not text.strip():
        problems.append("is empty")
    elif _is_placeholder(text):
        problems.append("is a placeholder ('changeme'-like)")
    if len(raw) < min_bytes:
        why = " for HS256 (RFC 7518 §3.2)" if min_bytes == 32 else ""
        problems.append(f"is {len(raw)} bytes; at least {min_bytes} are required{why}")
    return problems


def fingerprint(value: str | bytes, salt: str) -> str:
    """HMAC-SHA256 of the secret keyed by ``salt``: the first 12 hex characters.

    Deterministic, so two services (or a service and a gate) can compare secrets without
    revealing them; a different salt gives an unrelated fingerprint.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    return hmac.new(salt.encode("utf-8"), raw, hashlib.sha256).hexdigest()[:12]
