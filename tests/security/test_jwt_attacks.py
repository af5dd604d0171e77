"""The JWT attack classes of ticarpi/jwt_tool, against the verifier and through the guard:
alg none in every casing, algorithm confusion, kid injection, jku/x5u/jwk, stripped and null
signatures, signature swaps, the "psychic signature" and claim tampering. Each must be a
clean 401/4401 (a TokenError), never an acceptance or an exception."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.testclient import TestClient, WebSocketDenialResponse

from safeship.errors import TokenError
from safeship.tokens import TokenSettings, TokenVerifier, mint

from ..service.conftest import SECRET, make_app

NOW = int(time.time())
CLAIMS = {"sub": "admin", "iat": NOW, "exp": NOW + 600}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUBLIC_PEM = EC_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment(obj: object) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _hs(header: dict[str, object], claims: dict[str, object], key: bytes) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unsigned(alg: str, signature: str = "") -> str:
    return f"{_segment({'alg': alg, 'typ': 'JWT'})}.{_segment(CLAIMS)}.{signature}"


def _casings(word: str) -> list[str]:
    return sorted(
        {"".join(c) for c in itertools.product(*((ch.lower(), ch.upper()) for ch in word))}
    )


def _refused(verifier: TokenVerifier, token: str) -> TokenError:
    with pytest.raises(TokenError) as refused:
        verifier.verify(token, now=NOW)
    return refused.value


HS = TokenVerifier(SECRET)
RS = TokenVerifier(RSA_PUBLIC_PEM, TokenSettings(algorithms=("RS256",)))
ES = TokenVerifier(EC_PUBLIC_PEM, TokenSettings(algorithms=("ES256",)))


def test_the_valid_tokens_pass() -> None:
    assert HS.verify(jwt.encode(CLAIMS, SECRET, algorithm="HS256"), now=NOW)["sub"] == "admin"
    assert RS.verify(jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256"), now=NOW)["sub"] == "admin"
    assert ES.verify(jwt.encode(CLAIMS, EC_KEY, algorithm="ES256"), now=NOW)["sub"] == "admin"


@pytest.mark.parametrize("alg", _casings("none"))
@pytest.mark.parametrize("signature", ["", "AA", _b64(b"x" * 32)])
def test_alg_none_in_every_casing(alg: str, signature: str) -> None:
    for verifier in (HS, RS, ES):
        assert _refused(verifier, _unsigned(alg, signature)).kind in ("bad_algorithm", "malformed")


def test_algorithm_confusion_public_key_as_hmac_secret() -> None:
    # RS256 pinned: a token "signed" HS256 with the public key PEM as the secret.
    forged = _hs({"alg": "HS256", "typ": "JWT"}, CLAIMS, RSA_PUBLIC_PEM)
    assert _refused(RS, forged).kind == "bad_algorithm"
    # A verifier cannot be built that reads one key both ways.
    with pytest.raises(Exception, match="mix HMAC"):
        TokenVerifier(RSA_PUBLIC_PEM, TokenSettings(algorithms=("RS256", "HS256")))
    # HS256 pinned: an RS256 token signed by whoever.
    assert _refused(HS, jwt.encode(CLAIMS, ATTACKER_RSA, algorithm="RS256")).kind == "bad_algorithm"


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/dev/null",
        "' UNION SELECT 'secret' --",
        "key|/usr/bin/id",
        "\x00",
        "a" * 5000,
        {"nested": "object"},
    ],
)
def test_kid_injection_changes_nothing(kid: object) -> None:
    # Signed with what each injection would make a naive server use as the key.
    for key in (b"", b"secret", b"\x00"):
        forged = _hs({"alg": "HS256", "typ": "JWT", "kid": kid}, CLAIMS, key)
        assert _refused(HS, forged).kind in ("bad_signature", "malformed", "oversized")


def test_jku_x5u_and_embedded_jwk_are_not_trusted() -> None:
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ATTACKER_RSA.public_key()))
    for extra in (
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": attacker_jwk},
        {"x5c": ["MIIB..."]},
    ):
        forged = jwt.encode(CLAIMS, ATTACKER_RSA, algorithm="RS256", headers=extra)
        assert _refused(RS, forged).kind in ("bad_signature", "bad_algorithm", "malformed")


def test_stripped_null_and_swapped_signatures() -> None:
    good = jwt.encode(CLAIMS, SECRET, algorithm="HS256")
    head, payload, signature = good.split(".")
    tampered = _segment({**CLAIMS, "sub": "root"})
    for forged in (
        f"{head}.{payload}.",
        f"{head}.{payload}",
        f"{head}.{payload}.{_b64(bytes(32))}",
        f"{head}.{tampered}.{signature}",
        f"{head}.{payload}.{signature[:-2]}",
        f"{head}.{payload}.{signature}x",
        f"{head}..{signature}",
        good + ".extra",
    ):
        assert _refused(HS, forged).kind in ("bad_signature", "malformed")


def test_psychic_signature_is_refused() -> None:
    # CVE-2022-21449: r = s = 0 verifies on broken ECDSA implementations.
    signing_input = f"{_segment({'alg': 'ES256', 'typ': 'JWT'})}.{_segment(CLAIMS)}"
    assert _refused(ES, f"{signing_input}.{_b64(bytes(64))}").kind in ("bad_signature", "malformed")


def test_claim_tampering_and_missing_claims() -> None:
    for claims in (
        {k: v for k, v in CLAIMS.items() if k != "exp"},
        {k: v for k, v in CLAIMS.items() if k != "sub"},
        {**CLAIMS, "exp": NOW - 3600},
        {**CLAIMS, "nbf": NOW + 3600},
        {**CLAIMS, "exp": "never"},
        {**CLAIMS, "sub": ["admin"]},
        {**CLAIMS, "exp": True},
    ):
        assert isinstance(_refused(HS, jwt.encode(claims, SECRET, algorithm="HS256")), TokenError)


@pytest.mark.parametrize(
    "token",
    [
        _unsigned("none"),
        _unsigned("NoNe"),
        _hs({"alg": "HS256", "kid": "../../dev/null"}, CLAIMS, b""),
        jwt.encode(CLAIMS, ATTACKER_RSA, algorithm="RS256"),
        mint("another-secret-0123456789-abcdefghijklmnop", "admin"),
    ],
)
def test_through_the_guard_every_forgery_is_a_401(token: str) -> None:
    _, app = make_app()
    with TestClient(app) as client, pytest.raises(WebSocketDenialResponse) as denied:
        client.websocket_connect("/ws", headers={"authorization": f"Bearer {token}"}).__enter__()
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == 'Bearer error="invalid_token"'
