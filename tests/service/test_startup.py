"""Startup and health, in process."""

from __future__ import annotations

import asyncio

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from safeship.errors import StartupError
from safeship.service import DependencyCheck
from safeship.tokens import mint

from .conftest import SECRET, make_app, never


def test_health_endpoints_when_ready(service):
    _, app = service
    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "alive"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        startup = client.get("/health/startup").json()
        assert [p["name"] for p in startup["phases"]] == ["secrets"]
        assert startup["phases"][0]["state"] == "ok"
        assert startup["phases"][0]["duration_ms"] >= 0


def test_critical_failure_raises_with_phase_and_hint():
    async def broken() -> None:
        raise NameError("name 'DatabaseSessionManager' is not defined")

    _, app = make_app(phases=[("agents", broken, 1.0)])
    with pytest.raises(StartupError) as failed, TestClient(app):
        pass
    assert failed.value.phase == "agents"
    assert "DatabaseSessionManager" in failed.value.error
    assert "import" in failed.value.hint


def test_phase_timeout():
    _, app = make_app(phases=[("database", never, 0.05)])
    with pytest.raises(StartupError) as failed, TestClient(app):
        pass
    assert failed.value.phase == "database"
    assert "0.05s" in failed.value.error


def test_missing_secret_in_staging_fails_phase_secrets():
    _, app = make_app(environ={"SAFESHIP_ENV": "staging"})
    with pytest.raises(StartupError) as failed, TestClient(app):
        pass
    assert failed.value.phase == "secrets"
    assert "JWT_SECRET_STAGING" in failed.value.error and "JWT_SECRET" in failed.value.error


def test_serve_mode_keeps_serving_the_diagnosis():
    async def broken() -> None:
        raise RuntimeError("cache exploded")

    _, app = make_app(phases=[("cache", broken, 1.0)], on_failure="serve")
    with TestClient(app) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "failed" and body["phase"] == "cache"
        assert "cache exploded" in body["error"]
        with pytest.raises(WebSocketDenialResponse) as denied:
            client.websocket_connect(
                "/ws", headers={"authorization": f"Bearer {mint(SECRET, 'a')}"}
            ).__enter__()
        assert denied.value.status_code == 503
        assert denied.value.headers["retry-after"] == "1"


def test_background_mode_answers_503_while_starting():
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    _ship, app = make_app(phases=[("database", slow, 30.0)], background=True)
    with TestClient(app) as client:
        body = client.get("/health/ready").json()
        assert body["status"] == "starting" and body["phase"] in ("secrets", "database")
        assert client.get("/health/startup").status_code == 503
        with pytest.raises(WebSocketDenialResponse) as denied:
            client.websocket_connect(
                "/ws", headers={"authorization": f"Bearer {mint(SECRET, 'a')}"}
            ).__enter__()
        assert denied.value.status_code == 503
        client.portal.call(gate.set)
        from safeship.testing import wait_until

        wait_until(lambda: client.get("/health/ready").status_code == 200, timeout=5)


def test_optional_phase_failure_is_degraded_but_ready():
    ship, app = make_app()

    @ship.phase("cache", critical=False, timeout=1)
    async def cache() -> None:
        raise ConnectionRefusedError("redis at 127.0.0.1:1 refused")

    with TestClient(app) as client:
        body = client.get("/health/ready").json()
        assert body["status"] == "ready" and body["degraded"] == ["cache"]


def test_dependency_check_feeds_readiness():
    healthy = {"db": True}

    async def db() -> bool:
        return healthy["db"]

    _, app = make_app(checks=[DependencyCheck("db", db, cache_seconds=0)])
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 200
        healthy["db"] = False
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["db"]["ok"] is False
        assert "db" in ready.json()["error"]


def test_dependency_check_timeout():
    _, app = make_app(checks=[DependencyCheck("slow", never, timeout=0.05, cache_seconds=0)])
    with TestClient(app) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert "0.05s" in ready.json()["checks"]["slow"]["error"]


def test_metrics_route(service):
    _, app = service
    with TestClient(app) as client:
        text = client.get("/metrics").text
    assert "safeship_ready 1.0" in text
    assert 'safeship_startup_phase_duration_seconds{phase="secrets",state="ok"}' in text
