"""Startup failures of the reference service: exit code 3 and one JSON line naming the phase."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeship.testing import free_port

from .conftest_agent import agent_services, failure_line  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

PHASES = ["config", "secrets", "database", "cache", "agents", "websocket"]
BROKEN_AGENTS = Path(__file__).resolve().parents[1] / "examples" / "broken_agents"


def test_every_way_to_fail_startup_exits_3_naming_the_phase(agent_services):  # noqa: F811
    closed = free_port()  # nothing listens there
    cases: dict[str, dict] = {f"fault-{phase}": {"AGENT_SERVICE_FAULT": phase} for phase in PHASES}
    cases |= {
        "hang": {"AGENT_SERVICE_FAULT": "cache:hang", "AGENT_SERVICE_TIMEOUT_CACHE": "0.5"},
        "database-down": {
            "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{closed}/test",
            "AGENT_SERVICE_TIMEOUT_DATABASE": "3",
        },
        "redis-down": {"REDIS_URL": f"redis://127.0.0.1:{closed}/0"},
        "staging-without-secret": {"SAFESHIP_ENV": "staging", "JWT_SECRET": ""},
        "bad-setting": {"AGENT_SERVICE_SLOW_DELAY": "-1"},
        "broken-agent": {"AGENT_SERVICE_AGENTS": "research=nameerror_agent"},
    }
    # Started together, then checked one by one: the whole table costs one startup. A dozen
    # services starting at once on two cores are slow, so the phases a case does not break get
    # generous timeouts: each case must fail where it breaks, not where the machine is busy.
    generous = {f"AGENT_SERVICE_TIMEOUT_{phase.upper()}": "30" for phase in PHASES}
    servers = {
        name: agent_services.start(
            generous | env, wait=False, extra_path=BROKEN_AGENTS if name == "broken-agent" else None
        )
        for name, env in cases.items()
    }
    failures = {}
    for name, server in servers.items():
        assert server.wait_exit(60) == 3, f"{name}: {server.output()}"
        output = server.output()
        assert "Traceback" not in output, f"{name}: {output}"
        failures[name] = failure_line(output)

    for phase in PHASES:
        failure = failures[f"fault-{phase}"]
        assert failure["phase"] == phase, failure
        assert (
            "InjectedFault" in failure["error"]
            and f"AGENT_SERVICE_FAULT={phase}" in failure["error"]
        )
        assert "unset AGENT_SERVICE_FAULT" in failure["hint"]

    hang = failures["hang"]
    assert hang["phase"] == "cache" and hang["timed_out"] is True and "0.5s" in hang["error"], hang

    database = failures["database-down"]
    assert database["phase"] == "database" and database["timed_out"] is False, database
    assert "DatabaseUnavailable" in database["error"] and f"127.0.0.1:{closed}" in database["error"]
    assert "DATABASE_URL" in database["hint"]

    redis = failures["redis-down"]
    assert redis["phase"] == "cache" and f"127.0.0.1:{closed}" in redis["error"]
    assert "REDIS_URL" in redis["hint"]

    secrets = failures["staging-without-secret"]
    assert secrets["phase"] == "secrets" and "JWT_SECRET_STAGING" in secrets["error"]

    config = failures["bad-setting"]
    assert config["phase"] == "config" and "AGENT_SERVICE_SLOW_DELAY" in config["error"]

    agent = failures["broken-agent"]
    assert agent["phase"] == "agents"
    assert "agent 'research' (module nameerror_agent)" in agent["error"]
    assert "NameError" in agent["error"] and "DatabaseSessionManager" in agent["error"]
    assert any(cause.startswith("NameError") for cause in agent["causes"])
    assert agent["where"].endswith("nameerror_agent.py:10")
    # The manifest's [legacy] table turns the NameError into the fix.
    assert "import SessionManager from agent_service.db" in agent["hint"]
