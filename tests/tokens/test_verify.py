"""TokenVerifier, TokenSettings and mint: every rejection kind, with an explicit ``now``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from safeship.config import AuthConfig
from safeship.errors import ConfigError, TokenError
from safeship.tokens import TokenSettings, TokenVerifier, mint

SECRET = "tokens-test-secret-0123456789-abcdefghijklmnop"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _b64(data: bytes | dict[str, Any]) -> str:
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {"sub": "alice", "iat": NOW, "exp": NOW + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(payload: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """Sign by hand, for tokens PyJWT refuses to make (e.g. a PEM key as HMAC secret)."""
    signing_input = f"{_b64(header or {'alg': 'HS256', 'typ': 'JWT'})}.{_b64(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _reject(verifier: TokenVerifier, token: str, kind: str, now: float = NOW) -> TokenError:
    with pytest.raises(TokenError) as caught:
        verifier.verify(token, now=now)
    error = caught.value
    assert error.kind == kind, error.message
    # Messages name claims and expected values, never the token or its parts.
    for part in [p for p in (token, *token.split(".")) if len(p) > 8]:
        assert part not in error.message
    return error


def test_mint_round_trip() -> None:
    token = mint(SECRET, "alice", ttl=60, now=NOW, issuer="iss", audience="svc", role="admin")
    claims = TokenVerifier(SECRET, TokenSettings(issuer="iss", audience="svc")).verify(
        token, now=NOW + 1
    )
    assert claims["sub"] == "alice"
    assert claims["iat"] == NOW and claims["exp"] == NOW + 60
    assert claims["iss"] == "iss" and claims["aud"] == "svc" and claims["role"] == "admin"
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert mint(SECRET, "alice", now=NOW) != mint(SECRET, "alice", now=NOW)  # fresh jti
    assert "exp" not in jwt.decode(mint(SECRET, "a", exp=None), options={"verify_signature": False})


def test_mint_uses_the_current_time_by_default() -> None:
    claims = TokenVerifier(SECRET).verify(mint(SECRET, "alice", ttl=120))
    assert claims["exp"] - claims["iat"] == 120


def test_settings_from_config() -> None:
    auth = AuthConfig(
        algorithms=["RS256"], issuer="i", audience="a", leeway_seconds=5, max_token_bytes=100
    )
    settings = TokenSettings.from_config(auth)
    assert settings == TokenSettings(
        algorithms=("RS256",), issuer="i", audience="a", leeway=5, max_bytes=100
    )
    assert TokenSettings.from_config(AuthConfig()) == TokenSettings()


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a b.c.d", "é.é.é"])
def test_malformed_shapes(token: str) -> None:
    _reject(TokenVerifier(SECRET), token, "malformed")


def test_malformed_contents() -> None:
    verifier = TokenVerifier(SECRET)
    _reject(verifier, f"{_b64(b'not json')}.{_b64(_claims())}.sig", "malformed")
    _reject(verifier, _hs256(_claims(), SECRET.encode(), header={"typ": "JWT"}), "malformed")
    not_an_object = f"{_b64({'alg': 'HS256'})}.{_b64(b'[1, 2]')}"
    signature = hmac.new(SECRET.encode(), not_an_object.encode(), hashlib.sha256).digest()
    _reject(verifier, f"{not_an_object}.{_b64(signature)}", "malformed")
    _reject(verifier, _hs256(_claims(exp="tomorrow"), SECRET.encode()), "malformed")
    _reject(verifier, _hs256(_claims(sub=42), SECRET.encode()), "malformed")
    _reject(verifier, _hs256(_claims(iat=True), SECRET.encode()), "malformed")


def test_oversized_is_rejected_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(SECRET)
    big = mint(SECRET, "alice", now=NOW, padding="x" * 9 * 1024)
    assert len(big) > 8192

    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed an oversized token")

    monkeypatch.setattr(jwt, "decode", must_not_parse)
    monkeypatch.setattr(jwt, "get_unverified_header", must_not_parse)
    _reject(verifier, big, "oversized")
    _reject(verifier, "!" * (9 * 1024), "oversized")  # not even JWT-shaped: size comes first
    small = TokenVerifier(SECRET, TokenSettings(max_bytes=64))
    _reject(small, mint(SECRET, "alice", now=NOW), "oversized")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_never_accepted(alg: str) -> None:
    token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims())}."
    error = _reject(TokenVerifier(SECRET), token, "bad_algorithm")
    assert "none" in error.message


def test_algorithm_outside_the_pinned_list() -> None:
    token = jwt.encode(_claims(), SECRET * 2, algorithm="HS512")
    error = _reject(TokenVerifier(SECRET), token, "bad_algorithm")
    assert "'HS512'" in error.message and "HS256" in error.message


def test_hs256_token_against_rs256_pinned_verifier(rsa_keys: tuple[bytes, bytes]) -> None:
    private, public = rsa_keys
    verifier = TokenVerifier(public, TokenSettings(algorithms=("RS256",)))
    assert (
        verifier.verify(mint(private, "alice", algorithm="RS256", now=NOW), now=NOW)["sub"]
        == "alice"
    )
    # A verifier given the private key verifies with its public half.
    from_private = TokenVerifier(private, TokenSettings(algorithms=("RS256",)))
    assert from_private.verify(mint(private, "bob", algorithm="RS256", now=NOW), now=NOW)
    # The classic confusion: HMAC-sign with the (public) PEM key the server verifies with.
    forged = _hs256(_claims(), public)
    _reject(verifier, forged, "bad_algorithm")


def test_rs256_public_key_cannot_be_an_hmac_secret(rsa_keys: tuple[bytes, bytes]) -> None:
    _, public = rsa_keys
    with pytest.raises(ConfigError) as caught:
        TokenVerifier(public, TokenSettings(algorithms=("HS256",)))
    assert caught.value.key == "auth.algorithms"
    with pytest.raises(ConfigError, match="mix HMAC and public-key"):
        TokenVerifier(public, TokenSettings(algorithms=("HS256", "RS256")))
    with pytest.raises(ConfigError):
        TokenVerifier(SECRET, TokenSettings(algorithms=("RS256",)))  # not a public key
    with pytest.raises(ConfigError):
        TokenVerifier(SECRET, TokenSettings(algorithms=("none",)))


def test_bad_signature() -> None:
    token = mint("another-secret-0123456789-abcdefghijklmnop", "alice", now=NOW)
    _reject(TokenVerifier(SECRET), token, "bad_signature")
    header, _, signature = mint(SECRET, "alice", now=NOW).split(".")
    tampered = f"{header}.{_b64(_claims(sub='mallory'))}.{signature}"
    _reject(TokenVerifier(SECRET), tampered, "bad_signature")


def test_expiry_honours_now_and_leeway() -> None:
    verifier = TokenVerifier(SECRET, TokenSettings(leeway=30))
    token = mint(SECRET, "alice", ttl=300, now=NOW)
    exp = NOW + 300
    assert verifier.verify(token, now=exp + 29.9)["sub"] == "alice"
    error = _reject(verifier, token, "expired", now=exp + 30)
    assert "'exp'" in error.message
    strict = TokenVerifier(SECRET, TokenSettings(leeway=0))
    assert strict.verify(token, now=exp - 0.001)
    _reject(strict, token, "expired", now=exp)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_immature_honours_now_and_leeway(claim: str) -> None:
    verifier = TokenVerifier(SECRET, TokenSettings(leeway=30))
    token = _hs256(_claims(**{claim: NOW + 30, "exp": NOW + 600}), SECRET.encode())
    assert verifier.verify(token, now=NOW)
    error = _reject(verifier, token, "immature", now=NOW - 0.5)
    assert repr(claim) in error.message


def test_issuer() -> None:
    verifier = TokenVerifier(SECRET, TokenSettings(issuer="https://auth.example"))
    assert verifier.verify(mint(SECRET, "a", issuer="https://auth.example", now=NOW), now=NOW)
    error = _reject(verifier, mint(SECRET, "a", issuer="https://evil", now=NOW), "bad_issuer")
    assert "'https://auth.example'" in error.message
    error = _reject(verifier, mint(SECRET, "a", now=NOW), "missing_claim")
    assert "'iss'" in error.message


def test_audience() -> None:
    verifier = TokenVerifier(SECRET, TokenSettings(audience="agents"))
    assert verifier.verify(mint(SECRET, "a", audience="agents", now=NOW), now=NOW)
    assert verifier.verify(mint(SECRET, "a", now=NOW, aud=["other", "agents"]), now=NOW)
    _reject(verifier, mint(SECRET, "a", audience="billing", now=NOW), "bad_audience")
    _reject(verifier, mint(SECRET, "a", now=NOW), "missing_claim")
    _reject(verifier, mint(SECRET, "a", now=NOW, aud=[1]), "malformed")
    # RFC 7519 §4.1.3: a token meant for an audience is not for a service that has none.
    _reject(TokenVerifier(SECRET), mint(SECRET, "a", audience="agents", now=NOW), "bad_audience")


@pytest.mark.parametrize("claim", ["sub", "iat", "exp"])
def test_missing_required_claims(claim: str) -> None:
    token = _hs256(_claims(**{claim: None}), SECRET.encode())
    error = _reject(TokenVerifier(SECRET), token, "missing_claim")
    assert repr(claim) in error.message
    relaxed = TokenVerifier(SECRET, TokenSettings(required_claims=()))
    assert relaxed.verify(token, now=NOW) is not None


class TestVerifiedTokenCache:
    SECRET = "cache-secret-0123456789abcdef0123456789"

    def test_a_reused_token_skips_the_signature_work(self, monkeypatch):
        verifier = TokenVerifier(self.SECRET)
        token = mint(self.SECRET, "alice")
        assert verifier.verify(token)["sub"] == "alice"
        calls = []
        monkeypatch.setattr(verifier, "_decode", lambda t: calls.append(t) or {})
        assert verifier.verify(token)["sub"] == "alice"
        assert calls == []

    def test_time_claims_are_judged_on_every_use(self):
        verifier = TokenVerifier(self.SECRET, TokenSettings(leeway=0))
        now = time.time()
        token = mint(self.SECRET, "bob", ttl=60, now=now)
        verifier.verify(token, now=now)
        with pytest.raises(TokenError) as exc:
            verifier.verify(token, now=now + 120)
        assert exc.value.kind == "expired"

    def test_bounded_and_never_caches_failures(self):
        verifier = TokenVerifier(self.SECRET, cache_size=2)
        tokens = [mint(self.SECRET, f"u{i}") for i in range(5)]
        for token in tokens:
            verifier.verify(token)
        assert len(verifier._verified) == 2
        bad = mint("another-secret-0123456789abcdef0123456", "eve")
        for _ in range(2):
            with pytest.raises(TokenError):
                verifier.verify(bad)
        assert bad not in verifier._verified

    def test_callers_cannot_poison_the_cache(self):
        verifier = TokenVerifier(self.SECRET)
        token = mint(self.SECRET, "carol")
        verifier.verify(token)["sub"] = "mallory"
        assert verifier.verify(token)["sub"] == "carol"


# --- the HS* fast path agrees with jwt.decode() ---------------------------------------


def _signed(header: dict[str, Any] | str, payload: dict[str, Any] | str | bytes) -> str:
    """A token over arbitrary header and payload segments, signed with SECRET."""
    head = header if isinstance(header, str) else _b64(header)
    body = payload if isinstance(payload, str) else _b64(payload)
    signature = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _variants() -> dict[str, str]:
    good = mint(SECRET, "user-1", now=NOW)
    head, body, sig = good.split(".")
    claims = {"sub": "user-1", "iat": int(NOW), "exp": int(NOW) + 60}
    last = sig[-1]
    # The last character of a 43-character HS256 signature carries 2 stray bits: flipping
    # one of them spells the same bytes differently (non-canonical base64url).
    stray = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bumped = stray[stray.index(last) ^ 1]
    return {
        "good": good,
        "padded signature": f"{head}.{body}.{sig}=",
        "padded twice": f"{head}.{body}.{sig}==",
        "non-canonical signature": f"{head}.{body}.{sig[:-1]}{bumped}",
        "truncated signature": f"{head}.{body}.{sig[:-2]}",
        "one char signature": f"{head}.{body}.A",
        "empty signature": f"{head}.{body}.",
        "tampered payload": f"{head}.{_b64({**claims, 'sub': 'admin'})}.{sig}",
        "other key": mint("another-secret-of-sufficient-length-0123456789", "user-1", now=NOW),
        "kid": _signed({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims),
        "numeric kid": _signed({"alg": "HS256", "kid": 7}, claims),
        "crit b64": _signed({"alg": "HS256", "crit": ["b64"], "b64": False}, ""),
        "crit unknown": _signed({"alg": "HS256", "crit": ["exp"], "exp": 1}, claims),
        "extra header": _signed({"alg": "HS256", "cty": "JWT"}, claims),
        "payload list": _signed({"alg": "HS256"}, _b64(b"[1, 2]")),
        "payload not json": _signed({"alg": "HS256"}, _b64(b"{not json")),
        "payload not utf-8": _signed({"alg": "HS256"}, _b64(b"\xff\xfe{}")),
        "payload padded": _signed({"alg": "HS256"}, _b64(json.dumps(claims).encode()) + "="),
        "deep payload": _signed({"alg": "HS256"}, _b64(b"[" * 100_000 + b"]" * 100_000)),
    }


# The reference is jwt.decode() as PyJWT 2.15.1 answers; earlier releases accept some
# malformed encodings that the fast path refuses (padding, non-canonical base64url) and let a
# RecursionError out. The fast path itself does not depend on PyJWT's version.
_PYJWT = tuple(int(part) for part in jwt.__version__.split(".")[:3])


@pytest.mark.skipif(_PYJWT < (2, 15, 1), reason="jwt.decode() is the reference from 2.15.1")
@pytest.mark.parametrize("name", list(_variants()))
def test_hmac_fast_path_agrees_with_pyjwt_decode(name: str) -> None:
    token = _variants()[name]
    settings = TokenSettings(required_claims=(), max_bytes=1_000_000)
    try:
        expected: dict[str, Any] | None = jwt.decode(
            token, SECRET, algorithms=["HS256"], options={"verify_signature": True,
                "verify_exp": False, "verify_iat": False, "verify_nbf": False}
        )  # fmt: skip
    except jwt.PyJWTError:
        expected = None
    try:
        got: dict[str, Any] | None = TokenVerifier(SECRET, settings).verify(token, now=NOW)
    except TokenError:
        got = None
    assert got == expected, name


def test_the_fast_path_is_the_one_taken_for_plain_hmac_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("jwt.decode() was called")

    monkeypatch.setattr(jwt, "decode", refuse)
    verifier = TokenVerifier(SECRET)
    assert verifier.verify(mint(SECRET, "user-1", now=NOW), now=NOW)["sub"] == "user-1"
    with pytest.raises(TokenError) as caught:
        verifier.verify(_variants()["tampered payload"], now=NOW)
    assert caught.value.kind == "bad_signature"
    # An unusual header goes through PyJWT's full decode.
    with pytest.raises(AssertionError, match=r"jwt\.decode"):
        verifier.verify(_variants()["extra header"], now=NOW)


def test_a_deep_payload_on_the_decode_path_is_a_bad_payload() -> None:
    # An extra header field sends the token through jwt.decode() rather than the fast path.
    token = _signed({"alg": "HS256", "cty": "JWT"}, _b64(b"[" * 100_000 + b"]" * 100_000))
    verifier = TokenVerifier(SECRET, TokenSettings(required_claims=(), max_bytes=1_000_000))
    with pytest.raises(TokenError):
        verifier.verify(token, now=NOW)
