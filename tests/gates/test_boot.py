"""The boot gate against a real service (tests/fixtures/svc_app) under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safeship.config import BootConfig, GatesConfig, Manifest, ServiceConfig
from safeship.gates.boot import BootGate
from safeship.gates.model import GateStatus
from safeship.gates.runner import CheckContext

pytestmark = pytest.mark.e2e

APP_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "svc_app"
SECRET = "boot-gate-secret-0123456789abcdef-XYZ"


def context(
    env: dict[str, str],
    *,
    ready_timeout: float = 15.0,
    send: str | None = None,
    expect: dict | None = None,
    name: str = "test",
) -> CheckContext:
    manifest = Manifest(
        service=ServiceConfig(app="svc_app:app", app_dir=str(APP_DIR)),
        gates=GatesConfig(
            boot=BootConfig(ready_timeout=ready_timeout, send=send, expect=expect or {})
        ),
        root=APP_DIR,
    )
    environ = {**os.environ, "SAFESHIP_ENV": name, "JWT_SECRET": SECRET, **env}
    return CheckContext(
        root=APP_DIR,
        manifest=manifest,
        env=name,
        critical=manifest.is_critical(name),
        entries=("svc_app",),
        environ=environ,
        block_tiers=frozenset(),
    )


def test_success_with_websocket_round_trip():
    result = BootGate().run(context({}))
    assert result.status is GateStatus.PASSED, result.findings
    assert result.summary["ready"] is True
    assert [p["name"] for p in result.summary["phases"]] == ["secrets", "config", "agents"]
    assert result.summary["websocket"]["verdict"]["kind"] == "ok"


def test_failure_in_a_phase_names_phase_error_and_exit_code():
    result = BootGate().run(context({"AGENTS": "nameerror"}))
    assert result.status is GateStatus.FAILED
    (finding,) = result.findings
    assert finding.rule == "boot-failed" and finding.blocking
    assert "phase 'agents'" in finding.message and "exit code 3" in finding.message
    assert "NameError" in finding.message and "DatabaseSessionManager" in finding.message
    assert finding.path is not None and finding.path.endswith("svc_broken_agent.py")
    assert finding.line == 6
    assert finding.extra["exit_code"] == 3


def test_hang_is_killed_at_the_deadline_and_names_the_phase():
    result = BootGate().run(
        context({"AGENTS": "slow", "SLOW_SECONDS": "120", "AGENTS_TIMEOUT": "300"}, ready_timeout=2)
    )
    (finding,) = result.findings
    assert finding.rule == "boot-hung"
    assert "hung in phase 'agents'" in finding.message and "2s" in finding.message


def test_missing_secret_in_staging():
    result = BootGate().run(context({"JWT_SECRET": ""}, name="staging"))
    (finding,) = result.findings
    assert finding.rule == "boot-failed"
    assert "phase 'secrets'" in finding.message and "JWT_SECRET_STAGING" in finding.message


def test_denied_websocket():
    result = BootGate().run(context({"DENY_ALL": "1"}))
    assert result.status is GateStatus.FAILED
    (finding,) = result.findings
    assert finding.rule == "boot-websocket"
    assert "403" in finding.message or "4403" in finding.message


def test_round_trip_expectation_mismatch():
    result = BootGate().run(context({}, send='{"type": "ping"}', expect={"type": "nope"}))
    assert result.status is GateStatus.FAILED
    assert result.findings[0].rule == "boot-websocket"
