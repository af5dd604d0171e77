"""Settings of the agent service, read from the environment.

Two layers, so that a bad value is reported by the ``config`` phase (exit code 3, phase named)
and never as a traceback at import:

- :func:`phase_timeouts` is lenient and runs at import, because phases are declared then;
- :func:`load_settings` is strict and runs in the ``config`` phase.

Variables: ``DATABASE_URL``, ``DATABASE_SCHEMA`` (PostgreSQL only), ``REDIS_URL``, and the
``AGENT_SERVICE_*`` knobs listed in :data:`VARIABLES`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safeship.errors import ConfigError

__all__ = [
    "AGENT_MODULES",
    "PHASES",
    "PHASE_TIMEOUTS",
    "VARIABLES",
    "Settings",
    "default_database_url",
    "import_time_number",
    "load_settings",
    "phase_timeouts",
]

PHASES = ("config", "secrets", "database", "cache", "agents", "websocket")

# Development is generous (a laptop, a cold database); critical environments are tight so a
# broken dependency fails the rollout in seconds instead of holding it open.
PHASE_TIMEOUTS: dict[str, dict[str, float]] = {
    "development": {
        "config": 5, "secrets": 10, "database": 30, "cache": 10, "agents": 30, "websocket": 5,
    },
    "test": {"config": 2, "secrets": 5, "database": 10, "cache": 5, "agents": 10, "websocket": 2},
    "staging": {"config": 2, "secrets": 5, "database": 8, "cache": 3, "agents": 5, "websocket": 2},
    "production": {
        "config": 2, "secrets": 5, "database": 8, "cache": 3, "agents": 5, "websocket": 2,
    },
}  # fmt: skip

# The agent registry: each module path is its own string literal so that import-graph tools
# (``ruff analyze graph --detect-string-imports``) see these lazy imports. Each module defines
# ``AGENT``, an ``Agent`` subclass.
AGENT_MODULES: dict[str, str] = {
    "echo": "agent_service.agents.echo",
    "wordcount": "agent_service.agents.wordcount",
    "slow": "agent_service.agents.slow",
    "failing": "agent_service.agents.failing",
    "history": "agent_service.agents.history",
}

VARIABLES: dict[str, str] = {
    "DATABASE_URL": "SQLAlchemy async URL; default sqlite+aiosqlite:///.safeship/agent_service.db",
    "DATABASE_SCHEMA": "PostgreSQL schema to use (created if missing); default: search_path",
    "REDIS_URL": "redis://host:port/db for multi-instance fan-out; unset: in-process broker",
    "AGENT_SERVICE_REDIS_CHANNEL": "Redis channel prefix; default agent_service",
    "AGENT_SERVICE_AGENTS": "extra or replacement agents, name=module[,name=module...]",
    "AGENT_SERVICE_SLOW_DELAY": "seconds between the steps of the slow agent; default 0.2",
    "AGENT_SERVICE_MAX_RUNS_PER_USER": "concurrent runs per user; default 20",
    "AGENT_SERVICE_RUN_GRACE": "seconds a stopping instance lets runs finish; default 8",
    "AGENT_SERVICE_TAIL_INTERVAL": "seconds between database polls for remote runs; default 0.5",
    "AGENT_SERVICE_DRAIN_SECONDS": "window over which a stopping instance closes its "
    "WebSockets with 1012; default: [deploy] drain_seconds of the manifest",
    "AGENT_SERVICE_MAX_CONNECTIONS_PER_USER": "open WebSockets per user; default 20",
    "AGENT_SERVICE_TIMEOUT_<PHASE>": "override one startup phase timeout, in seconds",
    "AGENT_SERVICE_FAULT": "test hook: <phase> fails that startup phase, <phase>:hang hangs it",
    "AGENT_SERVICE_LOG_LEVEL": "root log level; default INFO",
}

_AGENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,39}")


def _url_problem(url: str, name: str, kind: str) -> str:
    """What is wrong with a URL setting, without quoting it (only a plain scheme is shown)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return f"{name} is not a URL: expected scheme://..."
    if _URL_SCHEME.fullmatch(scheme):
        return f"unsupported {kind} URL scheme {scheme!r}"
    return f"{name} has a malformed scheme"


_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    database_schema: str | None = None
    redis_url: str | None = None
    redis_channel: str = "agent_service"
    agents: Mapping[str, str] = field(default_factory=lambda: dict(AGENT_MODULES))
    slow_delay: float = 0.2
    max_runs_per_user: int = 20
    run_grace: float = 8.0
    tail_interval: float = 0.5
    fault: str | None = None
    """``<phase>`` or ``<phase>:hang`` (test hook)."""
    max_message_bytes: int = 16 * 1024
    """Client messages over this get an ``error`` (code ``message_too_large``); the connection
    stays. Frames over the guard's limit (``GUARD_MAX_MESSAGE_BYTES``) close it with 1009."""


def default_database_url(cwd: Path | None = None) -> str:
    path = (cwd or Path.cwd()) / ".safeship" / "agent_service.db"
    return f"sqlite+aiosqlite:///{path}"


def phase_timeouts(env: str, environ: Mapping[str, str] | None = None) -> dict[str, float]:
    """Timeout of each startup phase for ``env`` (unknown environments get the production
    table), with ``AGENT_SERVICE_TIMEOUT_<PHASE>`` overrides. Lenient: an unreadable override
    is ignored here and reported by :func:`load_settings` in the ``config`` phase."""
    source = os.environ if environ is None else environ
    table = dict(PHASE_TIMEOUTS.get(env, PHASE_TIMEOUTS["production"]))
    for phase in PHASES:
        raw = source.get(f"AGENT_SERVICE_TIMEOUT_{phase.upper()}", "").strip()
        try:
            value = float(raw) if raw else None
        except ValueError:
            value = None
        if value is not None and 0 < value < math.inf:
            table[phase] = value
    return table


def import_time_number(
    name: str, default: float | None, environ: Mapping[str, str] | None = None
) -> float | None:
    """A positive number read at import (for what must be fixed before startup, such as the
    drain window); unreadable values fall back to ``default`` and are reported by
    :func:`load_settings`."""
    source = os.environ if environ is None else environ
    try:
        value = float(source.get(name, "").strip() or "nan")
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def load_settings(environ: Mapping[str, str], *, env: str, cwd: Path | None = None) -> Settings:
    """Read and validate every setting.

    Raises:
        ConfigError: naming the variable, the value expected and what to do.
    """
    get = _Reader(environ)
    # Read at import (leniently); checked here so that a bad value fails the config phase.
    for phase in PHASES:
        get.number(f"AGENT_SERVICE_TIMEOUT_{phase.upper()}", 1.0, minimum=0.001)
    get.number("AGENT_SERVICE_DRAIN_SECONDS", 0.0, minimum=0.0)
    get.number("AGENT_SERVICE_MAX_CONNECTIONS_PER_USER", 1, minimum=1)
    database_url = get.text("DATABASE_URL") or default_database_url(cwd)
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        # The value is never echoed: it may hold a password, also when it is malformed.
        raise ConfigError(
            _url_problem(database_url, "DATABASE_URL", "database"),
            key="DATABASE_URL",
            hint="use sqlite+aiosqlite:///path/to.db or postgresql+asyncpg://user@host:5432/db",
        )
    schema = get.text("DATABASE_SCHEMA")
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise ConfigError(
            f"{schema!r} is not a plain lowercase schema name",
            key="DATABASE_SCHEMA",
            hint="use letters, digits and underscores, starting with a letter",
        )
    redis_url = get.text("REDIS_URL")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            _url_problem(redis_url, "REDIS_URL", "Redis")
            + ": expected a redis:// or rediss:// URL",
            key="REDIS_URL",
            hint="e.g. redis://127.0.0.1:6379/0, or unset it to use the in-process broker",
        )
    fault = get.text("AGENT_SERVICE_FAULT")
    if fault is not None and fault.split(":")[0] not in PHASES:
        raise ConfigError(
            f"unknown phase in {fault!r}",
            key="AGENT_SERVICE_FAULT",
            hint=f"use one of {', '.join(PHASES)}, optionally with ':hang'",
        )
    return Settings(
        env=env,
        database_url=database_url,
        database_schema=schema,
        redis_url=redis_url,
        redis_channel=get.text("AGENT_SERVICE_REDIS_CHANNEL") or "agent_service",
        agents=_agents(get.text("AGENT_SERVICE_AGENTS")),
        slow_delay=get.number("AGENT_SERVICE_SLOW_DELAY", 0.2, minimum=0.0),
        max_runs_per_user=int(get.number("AGENT_SERVICE_MAX_RUNS_PER_USER", 20, minimum=1)),
        run_grace=get.number("AGENT_SERVICE_RUN_GRACE", 8.0, minimum=0.0),
        tail_interval=get.number("AGENT_SERVICE_TAIL_INTERVAL", 0.5, minimum=0.01),
        fault=fault,
    )


def _agents(spec: str | None) -> dict[str, str]:
    """``AGENT_MODULES`` plus the ``name=module`` entries of ``AGENT_SERVICE_AGENTS``."""
    agents = dict(AGENT_MODULES)
    if not spec:
        return agents
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, module = (s.strip() for s in item.partition("="))
        if not sep or not _AGENT_NAME.fullmatch(name) or not _MODULE_PATH.fullmatch(module):
            raise ConfigError(
                f"bad entry {item!r}",
                key="AGENT_SERVICE_AGENTS",
                hint="use name=dotted.module.path entries separated by commas, "
                "e.g. research=myagents.research",
            )
        agents[name] = module
    return agents


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < minimum:
            raise ConfigError(
                f"expected a number >= {minimum:g} (finite), got {raw[:40]!r}",
                key=name,
                hint=f"fix or unset {name}",
            )
        return value
