"""How strong a secret is, and its keyed fingerprint (which identifies a value without showing it)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import math
import os
import re
from collections import Counter

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


# Example secrets from documentation and tutorials (after removing - _ and spaces, lower case):
# jwt.io's default, and the like.
_KNOWN_EXAMPLES = ("your256bitsecret", "secretkeyforjwt", "mysecretkey", "supersecretkey")
_TEMPLATE = re.compile(r"\$\{[^}]{0,200}+\}|\{\{[^}]{0,200}+\}\}|^\$[A-Za-z_]")
# Below this many bits per character (Shannon, over the value's own characters) a value is
# mostly one or two symbols; random hex has ~4, base64 ~6, a passphrase of words ~4.
_MIN_BITS_PER_CHAR = 2.5
_MIN_DISTINCT = 8


def _period(text: str) -> int:
    """The shortest p such that text[i] == text[i + p] for every i (KMP failure function)."""
    fail = [0] * len(text)
    k = 0
    for i in range(1, len(text)):
        while k and text[i] != text[k]:
            k = fail[k - 1]
        if text[i] == text[k]:
            k += 1
        fail[i] = k
    return len(text) - (fail[-1] if text else 0)


def _bits_per_char(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _sequential(text: str) -> bool:
    """Mostly runs of consecutive characters (0123..., abcd..., 9876...)."""
    if len(text) < 8:
        return False
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(text)]
    return sum(1 for s in steps if s in (1, -1)) >= 0.8 * len(steps)


def weaknesses(value: str | bytes, min_bytes: int = 32) -> list[str]:
    """Human-readable problems with a secret value, each naming the rule it breaks; empty
    when it is acceptable. Length is not strength: a long value made of a repeated word,
    a sequence, few distinct characters, a known example or an unexpanded template fails.

    The problems never quote the value.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    text = raw.decode("utf-8", errors="replace")
    folded = text.strip()
    squashed = re.sub(r"[-_\s]", "", folded.lower())
    problems = []
    if not folded:
        problems.append("is empty")
    elif _TEMPLATE.search(folded):
        problems.append("is an unexpanded template (rule: no ${VAR} or {{ var }})")
    elif _is_placeholder(text):
        problems.append("is a placeholder ('changeme'-like)")
    elif any(example in squashed for example in _KNOWN_EXAMPLES):
        problems.append("is a known example secret (rule: not from documentation)")
    elif _period(folded) <= len(folded) // 2:
        problems.append("repeats a shorter value (rule: not repetitive)")
    elif _sequential(folded):
        problems.append("is a sequence of consecutive characters (rule: not a sequence)")
    elif len(set(folded)) < _MIN_DISTINCT or _bits_per_char(folded) < _MIN_BITS_PER_CHAR:
        problems.append(
            f"has too little entropy (rule: at least {_MIN_DISTINCT} distinct characters "
            f"and {_MIN_BITS_PER_CHAR:g} bits per character)"
        )
    if len(raw) < min_bytes:
        why = " for HS256 (RFC 7518 §3.2)" if min_bytes == 32 else ""
        problems.append(f"is {len(raw)} bytes; at least {min_bytes} are required{why}")
    return problems


FINGERPRINT_KEY_ENV = "SAFESHIP_FINGERPRINT_KEY"
"""A per-project key for fingerprints, shared by the project's consumers, never logged."""

# Without a key, fingerprints come from scrypt (N=2**14, r=8: 16 MiB and tens of ms per
# value), salted with the project's salt: the consumers of one project still get equal
# fingerprints for equal secrets, but each offline guess costs as much.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 16}


def fingerprint(value: str | bytes, salt: str, *, key: str | bytes | None = None) -> str:
    """A keyed fingerprint of the secret: the first 12 hex characters.

    With ``key`` (default: ``$SAFESHIP_FINGERPRINT_KEY``): HMAC-SHA256 under the key and
    ``salt``; a fingerprint is then useless to anyone without the key. Without one: scrypt
    of the value salted with ``salt``, slow enough that a logged fingerprint is no offline
    oracle for guessing (see docs/security.md). Deterministic either way, so the consumers
    of one project can compare secrets without revealing them; a different salt or key
    gives an unrelated fingerprint.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    if key is None:
        key = os.environ.get(FINGERPRINT_KEY_ENV) or None
    if key is not None:
        key_bytes = key if isinstance(key, bytes) else key.encode("utf-8")
        mac = hmac.new(key_bytes, salt.encode("utf-8") + b"\x00" + raw, hashlib.sha256)
        return mac.hexdigest()[:12]
    return _scrypt_fingerprint(raw, salt)


@functools.lru_cache(maxsize=256)
def _scrypt_fingerprint(raw: bytes, salt: str) -> str:
    derived = hashlib.scrypt(raw, salt=b"safeship-fingerprint\x00" + salt.encode(), **_SCRYPT)
    return derived.hex()[:12]
