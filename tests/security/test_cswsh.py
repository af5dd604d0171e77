"""Cross-site WebSocket hijacking: a page on another origin opening a handshake that the
browser authenticates with the user's cookie (or a ticket) is refused."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse

from safeship.config import AuthConfig, Manifest
from safeship.errors import StartupError
from safeship.service import Safeship
from safeship.tokens import mint

from ..service.conftest import SECRET, echo

GOOD = "https://app.example.com"


def _app(env: str = "test", **auth: object) -> Starlette:
    ship = Safeship(
        manifest=Manifest(auth=AuthConfig(cookie="session", **auth)),
        environ={"SAFESHIP_ENV": env, "JWT_SECRET": SECRET, f"JWT_SECRET_{env.upper()}": SECRET},
        on_failure="raise",
        mode="http",
    )
    app = Starlette(routes=[WebSocketRoute("/ws", echo)], lifespan=ship.lifespan)
    ship.install(app)
    return app


def _connect(client: TestClient, origin: str | None, *, ticket: str | None = None) -> int:
    headers = {"cookie": f"session={mint(SECRET, 'victim')}"} if ticket is None else {}
    if origin is not None:
        headers["origin"] = origin
    path = "/ws" if ticket is None else f"/ws?ticket={ticket}"
    try:
        with client.websocket_connect(path, headers=headers) as ws:
            assert ws.receive_json()["sub"] == "victim"
            return 101
    except WebSocketDenialResponse as denied:
        return denied.status_code


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://evil.example", 403),
        ("null", 403),
        ("https://app.example.com.evil.example", 403),
        ("http://app.example.com", 403),
        (GOOD, 101),
        ("HTTPS://APP.EXAMPLE.COM/", 101),
        (None, 101),  # not a browser: nothing ambient to hijack
    ],
)
def test_cookie_and_ticket_auth_check_the_origin(origin: str | None, status: int) -> None:
    with TestClient(_app(allowed_origins=[GOOD])) as client:
        assert _connect(client, origin) == status
        ticket = client.post(
            "/auth/ticket", headers={"authorization": f"Bearer {mint(SECRET, 'victim')}"}
        ).json()["ticket"]
        assert _connect(client, origin, ticket=ticket) == status


def test_bearer_header_auth_is_not_subject_to_the_origin_list() -> None:
    with TestClient(_app(allowed_origins=[GOOD])) as client:
        headers = {"authorization": f"Bearer {mint(SECRET, 'a')}", "origin": "https://x.example"}
        with client.websocket_connect("/ws", headers=headers) as ws:
            assert ws.receive_json()["sub"] == "a"


def test_cookie_auth_without_allowed_origins_fails_the_secrets_phase_when_critical() -> None:
    with pytest.raises(StartupError) as failed, TestClient(_app("staging")):
        pass
    assert failed.value.phase == "secrets"
    assert "allowed_origins" in failed.value.error


def test_allowed_origins_must_be_origins() -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        AuthConfig(allowed_origins=["*"])
