"""JWTs: verify and mint (PyJWT).

Verification pins the algorithms, checks the size before parsing, and compares the time
claims against an explicit ``now``, so the guard and the tests decide what "now" is. Every
rejection is a ``TokenError`` with a machine-readable ``kind``; no message quotes a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

from ..config import AuthConfig
from ..errors import ConfigError, TokenError

__all__ = ["TokenSettings", "TokenVerifier", "mint"]

_SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
_NUMERIC_CLAIMS = ("exp", "nbf", "iat")
# Three base64url segments (padding tolerated); the signature may be empty only for alg
# "none", which is then rejected by name rather than as "malformed".
_COMPACT = re.compile(r"[A-Za-z0-9_-]++=*+\.[A-Za-z0-9_-]*+=*+\.[A-Za-z0-9_-]*+=*+")
# Headers whose meaning the HMAC fast path knows; any other parameter (crit, b64, jku...)
# goes through PyJWT's full decode.
_PLAIN_HEADER = frozenset({"alg", "typ", "kid"})


@dataclass(frozen=True)
class TokenSettings:
    algorithms: tuple[str, ...] = ("HS256",)
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    max_bytes: int = 8192
    required_claims: tuple[str, ...] = ("exp", "iat", "sub")

    @classmethod
    def from_config(cls, auth: AuthConfig) -> TokenSettings:
        return cls(
            algorithms=tuple(auth.algorithms),
            issuer=auth.issuer,
            audience=auth.audience,
            leeway=auth.leeway_seconds,
            max_bytes=auth.max_token_bytes,
        )


class TokenVerifier:
    """Verifies JWTs against one key and pinned algorithms.

    Raises:
        ConfigError: at construction, when the algorithms mix symmetric (HS*) and asymmetric
            families, name 'none' or an unknown algorithm, or do not fit the key (e.g. an RSA
            public key given as an HMAC secret).
    """

    def __init__(
        self, key: str | bytes, settings: TokenSettings | None = None, *, cache_size: int = 1024
    ) -> None:
        self.settings = settings or TokenSettings()
        self.cache_size = cache_size
        self._verified: dict[str, dict[str, Any]] = {}
        algorithms = self.settings.algorithms
        known = get_default_algorithms()
        for name in algorithms:
            if name.lower() == "none" or name not in known:
                raise ConfigError(
                    f"algorithm {name!r} cannot verify tokens",
                    key="auth.algorithms",
                    hint=f"use algorithms such as HS256 or RS256 (known: {', '.join(known)})",
                )
        if not algorithms:
            raise ConfigError("no algorithm is pinned", key="auth.algorithms", hint="use HS256")
        symmetric = {name in _SYMMETRIC for name in algorithms}
        if len(symmetric) > 1:
            # One key read as an HMAC secret by HS* and as a public key by RS*/ES* is the
            # algorithm-confusion attack (RFC 8725 §2.1).
            raise ConfigError(
                f"algorithms {list(algorithms)} mix HMAC and public-key algorithms",
                key="auth.algorithms",
                hint="pin either HS* algorithms with a shared secret, or RS*/ES*/PS*/EdDSA "
                "algorithms with a public key",
            )
        try:
            self._key: Any = known[algorithms[0]].prepare_key(key)
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"the key does not fit algorithm {algorithms[0]}: {exc}",
                key="auth.algorithms",
                hint="HS* takes a random secret; RS*/ES*/PS* take a PEM public key",
            ) from None
        if hasattr(self._key, "public_key"):
            # A private key verifies through its public half (PyJWT would fail on it).
            self._key = self._key.public_key()
        # HS* tokens are checked with PyJWT's own HMAC algorithms on the key prepared once:
        # jwt.decode() would prepare the key again and validate the token character by
        # character in Python, three times the cost of the HMAC itself (see _decode).
        self._hmac = {name: known[name] for name in algorithms if name in _SYMMETRIC}

    def verify(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """The verified claims of ``token``.

        Args:
            now: seconds since the epoch to judge ``exp``/``nbf``/``iat`` against; the
                current time when None.

        Raises:
            TokenError: with ``kind`` one of malformed, oversized, bad_algorithm,
                bad_signature, expired, immature, bad_issuer, bad_audience, missing_claim.
        """
        settings = self.settings
        if not isinstance(token, str):
            raise TokenError("malformed", "the token is not text")
        # Before any parsing: a huge token must not cost base64 and JSON work.
        if len(token) > settings.max_bytes or len(token.encode("utf-8")) > settings.max_bytes:
            raise TokenError(
                "oversized",
                f"the token is longer than the {settings.max_bytes}-byte limit",
                hint="raise [auth] max_token_bytes if such tokens are expected",
            )
        cached = self._verified.get(token)
        if cached is None:
            if not _COMPACT.fullmatch(token):
                raise TokenError(
                    "malformed",
                    "the token is not a compact JWT (three base64url parts joined by '.')",
                )
            cached = self._decode(token, self._check_header(token))
        # Time-based claims are judged on every use, cached or not.
        self._check_claims(cached, time.time() if now is None else now)
        self._remember(token, cached)
        return dict(cached)

    def _remember(self, token: str, claims: dict[str, Any]) -> None:
        """Keep the signature-verified claims of recent tokens: a client reconnecting with the
        same token (after a drain, say) skips the signature work. Bounded, least recently
        used first out; the key never changes for one verifier, so an entry never goes stale."""
        verified = self._verified
        verified.pop(token, None)
        verified[token] = claims
        if len(verified) > self.cache_size:
            del verified[next(iter(verified))]

    def _check_header(self, token: str) -> dict[str, Any]:
        # Only the header segment, decoded here: PyJWT's get_unverified_header() would parse
        # (and validate character by character) the whole token a second time before decode().
        segment = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, binascii.Error):
            raise TokenError("malformed", "the token header is not valid base64url JSON") from None
        if not isinstance(header, dict):
            raise TokenError("malformed", "the token header is not a JSON object")
        alg = header.get("alg")
        pinned = self.settings.algorithms
        if not isinstance(alg, str) or not alg:
            raise TokenError("malformed", "the token header has no 'alg'")
        if alg.lower() == "none":
            raise TokenError("bad_algorithm", "unsigned tokens (alg 'none') are never accepted")
        if alg not in pinned:
            raise TokenError(
                "bad_algorithm",
                f"token algorithm {alg[:20]!r} is not accepted; this service pins "
                f"{', '.join(pinned)}",
                hint="sign tokens with the algorithm in [auth] algorithms",
            )
        return header

    def _decode(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        algorithm = self._hmac.get(header["alg"])
        plain = header.keys() <= _PLAIN_HEADER and isinstance(header.get("kid", ""), str)
        if algorithm is not None and plain:
            return self._decode_hmac(token, algorithm)
        return self._decode_full(token)

    def _decode_hmac(self, token: str, algorithm: Any) -> dict[str, Any]:
        """The claims of an HS* token whose header holds only alg, typ and kid: the same
        checks as jwt.decode(), in C where it can (tests/tokens/test_verify.py compares the two)."""
        signing_input, _, signature_segment = token.rpartition(".")
        payload_segment = signing_input.partition(".")[2]
        try:
            signature = _base64url(signature_segment)
            payload = _base64url(payload_segment)
        except ValueError:
            raise TokenError("malformed", "the token is not valid base64url") from None
        if not algorithm.verify(signing_input.encode("ascii"), self._key, signature):
            raise _bad_signature()
        try:
            claims = json.loads(payload)
        except (ValueError, RecursionError):
            claims = None
        if not isinstance(claims, dict):
            raise _bad_payload()
        return claims

    def _decode_full(self, token: str) -> dict[str, Any]:
        # Signature only: every claim is checked below against the caller's `now`.
        options: Any = {
            "verify_signature": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_iss": False,
            "verify_sub": False,
            "verify_jti": False,
            "require": [],
        }
        try:
            return jwt.decode(
                token, self._key, algorithms=list(self.settings.algorithms), options=options
            )
        except jwt.InvalidSignatureError:
            raise _bad_signature() from None
        except (jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
            raise TokenError(
                "bad_algorithm", "the token algorithm does not fit this service's key"
            ) from None
        except (jwt.PyJWTError, RecursionError):
            # PyJWT before 2.15 lets json's RecursionError out for a deeply nested payload.
            raise _bad_payload() from None

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        settings = self.settings
        for name in settings.required_claims:
            if name not in claims:
                raise TokenError(
                    "missing_claim",
                    f"the token has no {name!r} claim "
                    f"(required: {', '.join(settings.required_claims)})",
                    hint="mint tokens with sub, iat and exp (safeship.tokens.mint does)",
                )
        for name in _NUMERIC_CLAIMS:
            value = claims.get(name)
            if name in claims and not _is_number(value):
                raise TokenError(
                    "malformed",
                    f"claim {name!r} must be a number of seconds since the epoch "
                    f"(finite, at most 2**53 in size)",
                )
        if "sub" in claims:
            sub = claims["sub"]
            # An empty subject would share no per-user limit with anyone (it bypassed it);
            # a huge one would be kept per connection and logged.
            if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUBJECT_CHARS:
                raise TokenError(
                    "malformed",
                    f"claim 'sub' must be a string of 1 to {MAX_SUBJECT_CHARS} characters",
                )
        leeway = settings.leeway
        if "exp" in claims and now >= claims["exp"] + leeway:
            raise TokenError(
                "expired",
                f"the token expired {now - claims['exp']:.0f} s ago "
                f"(claim 'exp', leeway {leeway:g} s)",
                hint="get a new token, then reconnect",
            )
        for name in ("nbf", "iat"):
            if name in claims and claims[name] > now + leeway:
                raise TokenError(
                    "immature",
                    f"the token is not valid yet: claim {name!r} is "
                    f"{claims[name] - now:.0f} s in the future (leeway {leeway:g} s)",
                    hint="check the clocks of the token issuer and this service",
                )
        if settings.issuer is not None:
            if "iss" not in claims:
                raise TokenError(
                    "missing_claim", f"the token has no 'iss' claim (expected {settings.issuer!r})"
                )
            if claims["iss"] != settings.issuer:
                raise TokenError(
                    "bad_issuer",
                    f"claim 'iss' is {_short(claims['iss'])}, expected {settings.issuer!r}",
                )
        self._check_audience(claims)

    def _check_audience(self, claims: dict[str, Any]) -> None:
        expected = self.settings.audience
        if "aud" not in claims:
            if expected is not None:
                raise TokenError(
                    "missing_claim", f"the token has no 'aud' claim (expected {expected!r})"
                )
            return
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise TokenError("malformed", "claim 'aud' must be a string or a list of strings")
        if expected is None:
            # RFC 7519 §4.1.3: a service that is not among the audiences must reject the token.
            raise TokenError(
                "bad_audience",
                f"the token is meant for audience {_short(aud)}, and this service has none",
                hint="set [auth] audience, or mint tokens without 'aud'",
            )
        if expected not in audiences:
            raise TokenError("bad_audience", f"claim 'aud' is {_short(aud)}, expected {expected!r}")


def _bad_signature() -> TokenError:
    return TokenError(
        "bad_signature",
        "the token signature does not match this service's key",
        hint="sign tokens with the secret this environment resolves "
        "(compare fingerprints with `safeship check --only secrets`)",
    )


def _bad_payload() -> TokenError:
    return TokenError("malformed", "the token payload is not a valid JSON object")


def _base64url(segment: str) -> bytes:
    """Strict base64url, as PyJWT reads a segment: up to two '=' of padding, and only the
    canonical encoding of the bytes (no stray bits), so one token has one spelling.

    Raises:
        ValueError: anything else.
    """
    stripped = segment.rstrip("=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1:
        raise ValueError("invalid base64url padding")
    raw = stripped.encode("ascii")
    decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != raw:
        raise ValueError("non-canonical base64url")
    return decoded


# NumericDate bound: 2**53 s is far past any real expiry, and keeps every comparison and
# subtraction with a float ``now`` exact and free of OverflowError (int 10**400 cannot be
# converted to float; math.isfinite() raises on it).
_MAX_NUMERIC_DATE = 2**53
MAX_SUBJECT_CHARS = 256


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE
    return math.isfinite(value) and abs(value) <= _MAX_NUMERIC_DATE


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numeric_date(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def mint(
    secret: str | bytes,
    sub: str,
    *,
    ttl: float = 300.0,
    algorithm: str = "HS256",
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
    **claims: Any,
) -> str:
    """A signed JWT with ``sub``, ``iat`` (= now), ``exp`` (= now + ttl) and a random ``jti``,
    for tests and probes.

    Extra ``claims`` are added or override those; a claim given as None is left out (to
    build tokens that lack one).
    """
    issued = int(time.time()) if now is None else now
    payload: dict[str, Any] = {
        "sub": sub,
        "iat": _numeric_date(issued),
        "exp": _numeric_date(issued + ttl),
        "jti": secrets.token_urlsafe(16),
    }
    if issuer is not None:
        payload["iss"] = issuer
    if audience is not None:
        payload["aud"] = audience
    payload.update(claims)
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)
