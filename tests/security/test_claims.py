"""Any claim value gives a clean 401/4401 answer, never an exception (a validly signed token
with exp, iat or nbf of +-10**400 raised OverflowError)."""

from __future__ import annotations

import json

import jwt
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from safeship.errors import TokenError
from safeship.tokens import TokenVerifier, mint

from ..service.conftest import SECRET, make_app

HUGE = 10**400
VALUES = [HUGE, -HUGE, 2**63, 1e308, -1e308, 2**53 + 1]


def _token(**claims: object) -> str:
    base: dict[str, object] = {"sub": "alice", "iat": 1_700_000_000, "exp": 4_000_000_000}
    base.update(claims)
    # PyJWT serializes with json.dumps, which writes 10**400 as its digits.
    return jwt.encode(base, SECRET, algorithm="HS256")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    VALUES,
    ids=lambda v: f"{float(v) if abs(v) < 1e300 else (1 if v > 0 else -1) * 1e300:.3g}",
)
def test_out_of_range_numeric_claims_are_refused(claim: str, value: int) -> None:
    verifier = TokenVerifier(SECRET)
    with pytest.raises(TokenError) as refused:
        verifier.verify(_token(**{claim: value}), now=1_700_000_100)
    assert refused.value.kind == "malformed"


@pytest.mark.parametrize("sub", ["", "x" * 257])
def test_empty_or_oversized_subjects_are_refused(sub: str) -> None:
    with pytest.raises(TokenError):
        TokenVerifier(SECRET).verify(_token(sub=sub), now=1_700_000_100)


@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["+1e400", "-1e400"])
def test_handshake_and_refresh_answer_401_and_refresh_failed(value: int) -> None:
    _, app = make_app()
    with TestClient(app) as client:
        bad = _token(exp=value)
        with pytest.raises(WebSocketDenialResponse) as denied:
            client.websocket_connect("/ws", headers={"authorization": f"Bearer {bad}"}).__enter__()
        assert denied.value.status_code == 401
        headers = {"authorization": f"Bearer {mint(SECRET, 'alice')}"}
        with client.websocket_connect("/ws", headers=headers) as ws:
            assert ws.receive_json()["sub"] == "alice"
            ws.send_text(json.dumps({"type": "auth.refresh", "token": bad}))
            reply = ws.receive_json()
            assert reply["type"] == "auth.refresh_failed" and reply["error"] == "malformed"
            ws.send_text("still here")
            assert ws.receive_text() == "still here"
