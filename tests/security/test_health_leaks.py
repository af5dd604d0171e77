"""Health endpoints never serve a secret: what a phase or a dependency check raised goes out
through the same redaction as the logs, plus the values known to be secret."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from safeship.secrets import register_secret
from safeship.service import DependencyCheck
from safeship.testing import wait_until

from ..service.conftest import SECRET, make_app

DB_PASSWORD = "Pw-of-the-database-81f3"
QUOTED = 'a "quoted" \\ secret-value-0123456789'
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
LEAKS = (SECRET, DB_PASSWORD, QUOTED, "quoted", JWT)


def _raise_everything() -> None:
    register_secret(QUOTED)
    raise RuntimeError(
        f"connect postgresql+asyncpg://app:{DB_PASSWORD}@db:5432/app failed; "
        f"the key was {SECRET} ({QUOTED}), token {JWT}"
    )


async def broken() -> None:
    _raise_everything()


def _assert_clean(text: str) -> None:
    for leaked in LEAKS:
        assert leaked not in text, leaked


@pytest.mark.parametrize("background", [False, True])
def test_serve_mode_and_background_redact_the_phase_error(background: bool) -> None:
    _, app = make_app(phases=[("database", broken, 5.0)], on_failure="serve", background=background)
    with TestClient(app) as client:
        wait_until(lambda: client.get("/health/ready").json()["status"] == "failed", timeout=5)
        for path in ("/health/ready", "/health/startup", "/health/live"):
            response = client.get(path)
            _assert_clean(response.text)
        body = client.get("/health/ready").json()
        assert "postgresql+asyncpg://app:[redacted]@db:5432/app" in body["error"]
        assert "[redacted:" in body["error"]  # the registered secrets, by fingerprint


def test_dependency_check_errors_are_redacted() -> None:
    async def check() -> None:
        _raise_everything()

    ship, app = make_app()
    ship.health.checks.append(DependencyCheck("db", check))
    with TestClient(app) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    _assert_clean(response.text)
    assert "[redacted]" in response.json()["checks"]["db"]["error"]
