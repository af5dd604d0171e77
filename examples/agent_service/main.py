"""The agent service: FastAPI on safeship, with phased startup, health, the WebSocket guard,
and the ``/ws`` agent protocol (see docs/protocol.md).

    uvicorn agent_service.main:app --app-dir examples

Startup phases, each with a timeout that depends on the environment (``settings.PHASE_TIMEOUTS``):
``config`` (settings) -> ``secrets`` (the JWT secret) -> ``database`` (connect, create and check
the schema) -> ``cache`` (Redis, or the in-process broker) -> ``agents`` (the registry) ->
``websocket`` (the run manager and the route). A failure exits with code 3 and one JSON line
naming the phase.

Test hook: ``AGENT_SERVICE_FAULT=<phase>`` makes that phase fail, ``<phase>:hang`` makes it
hang until its timeout. It exists so that tests and the demo can break each phase on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, WebSocket

from safeship.config import Manifest, load_manifest
from safeship.core.handshake import Limits, MessageRate
from safeship.errors import ConfigError
from safeship.service import DependencyCheck, Safeship

from .broker import Broker, make_broker
from .connection import ClientConnection, Services
from .db import SessionManager, describe_url
from .errors import InjectedFault
from .hub import Hub, RemoteRunTailer
from .metrics import ServiceMetrics
from .registry import AgentRegistry
from .runs import RunManager
from .settings import Settings, import_time_number, load_settings, phase_timeouts
from .store import EventStore

__all__ = ["GUARD_MAX_MESSAGE_BYTES", "INSTANCE", "app", "ship"]

logger = logging.getLogger("agent_service")

GUARD_MAX_MESSAGE_BYTES = 64 * 1024
"""Frames over this are refused by the guard with close code 1009 (the connection ends);
smaller messages over ``Settings.max_message_bytes`` get an ``error`` and the connection stays."""
INSTANCE = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _configure_logging() -> None:
    if logging.getLogger().handlers:
        return
    level = os.environ.get("AGENT_SERVICE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _load_manifest() -> tuple[Manifest, ConfigError | None]:
    # Found from the package's own directory, so the service reads its manifest whatever the
    # working directory; an invalid one is reported by the config phase, not at import.
    try:
        return load_manifest(start=Path(__file__).resolve().parent), None
    except ConfigError as exc:
        return Manifest(), exc


class Runtime:
    """What the phases build, in order; the WebSocket route uses ``services``."""

    settings: Settings
    sessions: SessionManager | None = None
    broker: Broker | None = None
    registry: AgentRegistry | None = None
    runs: RunManager | None = None
    tailer: RemoteRunTailer | None = None
    services: Services | None = None


_configure_logging()
_manifest, _manifest_error = _load_manifest()
runtime = Runtime()
hub = Hub()


async def _database_ok() -> bool:
    if runtime.sessions is not None:
        await runtime.sessions.ping()
    return True


async def _redis_ok() -> bool:
    ping = getattr(runtime.broker, "ping", None)
    return bool(await ping()) if ping is not None else True


ship = Safeship(
    manifest=_manifest,
    secrets_phase=False,
    drain_seconds=import_time_number("AGENT_SERVICE_DRAIN_SECONDS", None),
    checks=[
        DependencyCheck("database", _database_ok, timeout=2.0),
        DependencyCheck("redis", _redis_ok, timeout=1.0, required=False),
    ],
    limits=Limits(
        per_user=int(import_time_number("AGENT_SERVICE_MAX_CONNECTIONS_PER_USER", 20) or 20)
    ),
    max_message_bytes=GUARD_MAX_MESSAGE_BYTES,
    # A client may not flood one connection (20,000 pings were all answered): 1008 past it.
    message_rate=MessageRate(
        per_second=import_time_number("AGENT_SERVICE_MESSAGES_PER_SECOND", 200) or 200,
        burst=400,
    ),
)
metrics = ServiceMetrics(ship.metrics.registry if ship.metrics is not None else None)
timeouts = phase_timeouts(ship.env)


async def _fault(phase: str) -> None:
    spec = os.environ.get("AGENT_SERVICE_FAULT", "").strip()
    name, _, mode = spec.partition(":")
    if name != phase:
        return
    if mode == "hang":
        logger.warning("AGENT_SERVICE_FAULT: phase %s hangs until its timeout", phase)
        await asyncio.Event().wait()
    raise InjectedFault(
        f"fault injected into phase {phase!r} by AGENT_SERVICE_FAULT={spec} (a test hook)",
        hint="unset AGENT_SERVICE_FAULT to start normally",
    )


def _headroom(phase: str) -> float:
    """A deadline inside the phase's own, so our error (naming the host) wins the race
    against the generic phase timeout."""
    return max(0.1, timeouts[phase] * 0.8)


@ship.phase("config", timeout=timeouts["config"])
async def load_config() -> None:
    await _fault("config")
    if _manifest_error is not None:
        raise _manifest_error
    settings = load_settings(os.environ, env=ship.env)
    runtime.settings = settings
    ship.startup.shutdown_timeout = max(ship.startup.shutdown_timeout, settings.run_grace + 5.0)
    logger.info(
        "instance %s, environment %s, database %s, broker %s",
        INSTANCE,
        settings.env,
        describe_url(settings.database_url),
        "redis" if settings.redis_url else "in-process",
    )


@ship.phase("secrets", timeout=timeouts["secrets"])
async def load_secrets() -> None:
    await _fault("secrets")
    await ship.load_secrets()


@ship.phase("database", timeout=timeouts["database"])
async def connect_database() -> None:
    await _fault("database")
    settings = runtime.settings
    sessions = SessionManager(settings.database_url, schema=settings.database_schema)
    await sessions.connect(deadline=_headroom("database"))
    runtime.sessions = sessions


def _on_command(command: dict[str, Any]) -> None:
    if runtime.runs is not None:
        runtime.runs.on_command(command)


@ship.phase("cache", timeout=timeouts["cache"])
async def connect_cache() -> None:
    await _fault("cache")
    settings = runtime.settings
    broker = make_broker(
        settings.redis_url, instance=INSTANCE, channel=settings.redis_channel, metrics=metrics
    )
    await broker.start(hub.dispatch, _on_command, deadline=_headroom("cache"))
    runtime.broker = broker


@ship.phase("agents", timeout=timeouts["agents"])
async def load_agents() -> None:
    await _fault("agents")
    assert runtime.sessions is not None
    runtime.registry = AgentRegistry.load(runtime.settings.agents, runtime.sessions)
    logger.info("agents: %s", ", ".join(runtime.registry))


@ship.phase("websocket", timeout=timeouts["websocket"])
async def open_websocket() -> None:
    await _fault("websocket")
    assert runtime.sessions and runtime.broker and runtime.registry
    ws_path = ship.manifest.service.ws_path
    if not any(getattr(route, "path", None) == ws_path for route in app.routes):
        raise ConfigError(
            f"no WebSocket route at {ws_path!r}",
            file=ship.manifest.display_path,
            key="service.ws_path",
            hint="set [service] ws_path to the path of the agent socket (/ws)",
        )
    store = EventStore(runtime.sessions)
    runs = RunManager(
        store=store,
        registry=runtime.registry,
        hub=hub,
        broker=runtime.broker,
        settings=runtime.settings,
        instance=INSTANCE,
        metrics=metrics,
    )
    tailer = RemoteRunTailer(
        hub, store, local=runs.active, interval=runtime.settings.tail_interval, metrics=metrics
    )
    tailer.start()
    runtime.runs, runtime.tailer = runs, tailer
    runtime.services = Services(runtime.settings, store, runs, hub, INSTANCE, metrics)


# Shutdown hooks run in reverse order: runs finish first, while the broker and the database
# are still open; then the tailer, the broker and the database close.
@ship.on_shutdown
async def close_database() -> None:
    if runtime.sessions is not None:
        await runtime.sessions.close()


@ship.on_shutdown
async def close_broker() -> None:
    if runtime.broker is not None:
        await runtime.broker.close()


@ship.on_shutdown
async def stop_tailer() -> None:
    if runtime.tailer is not None:
        await runtime.tailer.close()


@ship.on_shutdown
async def finish_runs() -> None:
    runtime.services = None
    if runtime.runs is not None:
        await runtime.runs.drain(runtime.settings.run_grace)


app = FastAPI(title="agent-service", lifespan=ship.lifespan)
ship.install(app)


@app.get("/info")
async def info() -> dict[str, Any]:
    """This instance: id, environment, agents and broker (no secrets)."""
    return {
        "instance": INSTANCE,
        "env": ship.env,
        "agents": sorted(runtime.registry.names) if runtime.registry else [],
        "broker": runtime.broker.status() if runtime.broker else None,
        "connections": len(hub),
        "runs_active": len(runtime.runs.active) if runtime.runs else 0,
    }


@app.websocket("/ws")
async def agent_socket(websocket: WebSocket, claims: dict[str, Any] = Depends(ship.claims)) -> None:
    services = runtime.services
    if services is None:
        # The guard admits connections only when ready; this covers the instant of shutdown.
        await websocket.close(code=1013, reason="not ready: retry")
        return
    await ClientConnection(websocket, str(claims["sub"]), services).serve()
