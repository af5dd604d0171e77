from __future__ import annotations

from pathlib import Path

import pytest
from agent_service.settings import (
    AGENT_MODULES,
    PHASE_TIMEOUTS,
    PHASES,
    import_time_number,
    load_settings,
    phase_timeouts,
)

from safeship.errors import ConfigError


def test_defaults(tmp_path: Path):
    settings = load_settings({}, env="test", cwd=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/.safeship/agent_service.db"
    assert settings.redis_url is None
    assert dict(settings.agents) == AGENT_MODULES
    assert settings.fault is None


def test_timeouts_depend_on_the_environment_and_can_be_overridden():
    assert set(PHASE_TIMEOUTS["staging"]) == set(PHASES)
    dev, staging = phase_timeouts("development", {}), phase_timeouts("staging", {})
    assert all(dev[p] >= staging[p] for p in PHASES)
    assert dev["database"] > staging["database"]
    # An environment of the manifest that is not built in gets the tight table.
    assert phase_timeouts("canary", {}) == phase_timeouts("production", {})
    tuned = phase_timeouts("staging", {"AGENT_SERVICE_TIMEOUT_DATABASE": "0.5"})
    assert tuned["database"] == 0.5 and tuned["cache"] == staging["cache"]
    # Lenient at import: a bad value is ignored here and reported by load_settings.
    assert phase_timeouts("staging", {"AGENT_SERVICE_TIMEOUT_DATABASE": "soon"}) == staging
    with pytest.raises(ConfigError, match="AGENT_SERVICE_TIMEOUT_DATABASE: expected a number"):
        load_settings({"AGENT_SERVICE_TIMEOUT_DATABASE": "soon"}, env="staging")


def test_import_time_number():
    assert import_time_number("X", 3.0, {"X": "1.5"}) == 1.5
    assert import_time_number("X", 3.0, {"X": "nope"}) == 3.0
    assert import_time_number("X", None, {}) is None


@pytest.mark.parametrize(
    ("environ", "key", "mentions"),
    [
        (
            {"DATABASE_URL": "mysql://db/x"},
            "DATABASE_URL",
            "unsupported database URL scheme 'mysql'",
        ),
        ({"DATABASE_SCHEMA": "Robert'); DROP"}, "DATABASE_SCHEMA", "plain lowercase schema"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL", "redis://"),
        ({"AGENT_SERVICE_SLOW_DELAY": "-1"}, "AGENT_SERVICE_SLOW_DELAY", ">= 0"),
        ({"AGENT_SERVICE_FAULT": "network"}, "AGENT_SERVICE_FAULT", "unknown phase"),
        ({"AGENT_SERVICE_AGENTS": "research"}, "AGENT_SERVICE_AGENTS", "bad entry 'research'"),
        ({"AGENT_SERVICE_AGENTS": "r=not a module"}, "AGENT_SERVICE_AGENTS", "bad entry"),
    ],
)
def test_bad_values_name_the_variable(environ, key, mentions):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ, env="test")
    assert str(exc.value).startswith(f"{key}: ")
    assert mentions in str(exc.value)
    assert exc.value.hint


def test_extra_agents_and_faults():
    settings = load_settings(
        {
            "AGENT_SERVICE_AGENTS": "research=pkg.research, echo=pkg.echo2",
            "AGENT_SERVICE_FAULT": "cache:hang",
        },
        env="test",
    )
    assert settings.agents["research"] == "pkg.research"
    assert settings.agents["echo"] == "pkg.echo2"
    assert settings.agents["slow"] == AGENT_MODULES["slow"]
    assert settings.fault == "cache:hang"
