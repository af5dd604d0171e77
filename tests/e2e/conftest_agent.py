"""Fixtures for the end-to-end tests of the reference service ``examples/agent_service``: start
it under real uvicorn in its own process, with SQLite or PostgreSQL, with or without Redis.

Import what you use: ``from .conftest_agent import agent_spawn, ...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from safeship.testing import free_port, wait_until
from safeship.tokens import mint

from ..examples.dbs import POSTGRES_URL, drop_schema, unique_schema
from .conftest import SECRET, ServerProcess, _wait_listening

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from agent_service.client import AgentClient  # noqa: E402

SHARED_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
APP = "agent_service.main:app"


def token(user: str = "alice", **claims: Any) -> str:
    return mint(SECRET, user, **claims)


def auth(user: str = "alice", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, **claims)}"}


def client(
    server: ServerProcess | Callable[[], str], user: str = "alice", **options: Any
) -> AgentClient:
    url = server if callable(server) else server.ws_url + "/ws"
    return AgentClient(url, lambda: token(user), **options)


def failure_line(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith('{"event": "startup_failed"')]
    assert len(lines) == 1, output
    return json.loads(lines[0])


def metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class AgentServices:
    """Starts agent service processes; all are killed at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ServerProcess] = []
        self.schemas: list[str] = []
        self.sqlite_url = f"sqlite+aiosqlite:///{directory}/agent_service.db"

    def postgres(self) -> dict[str, str]:
        """Settings for a fresh PostgreSQL schema, dropped at teardown."""
        schema = unique_schema()
        self.schemas.append(schema)
        return {"DATABASE_URL": POSTGRES_URL, "DATABASE_SCHEMA": schema}

    def start(
        self,
        env: dict[str, str] | None = None,
        *,
        wait: bool = True,
        args: tuple[str, ...] = (),
        extra_path: Path | None = None,
    ) -> ServerProcess:
        port = free_port()
        log_path = self.directory / f"agent-{port}.log"
        full_env = {
            **os.environ,
            "SAFESHIP_ENV": "test",
            "JWT_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": self.sqlite_url,
            "AGENT_SERVICE_DRAIN_SECONDS": "0.5",
            "AGENT_SERVICE_SLOW_DELAY": "0.05",
            "AGENT_SERVICE_TAIL_INTERVAL": "0.2",
            **(env or {}),
        }
        if extra_path is not None:
            full_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(extra_path), full_env.get("PYTHONPATH", "")) if p
            )
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", APP, "--app-dir", str(EXAMPLES),
                 "--host", "127.0.0.1", "--port", str(port), *args],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )  # fmt: skip
        server = ServerProcess(proc, port, log_path)
        self.started.append(server)
        if wait:
            _wait_listening(server, timeout=20)
            if server.proc.poll() is not None:
                raise RuntimeError(f"the agent service exited during startup:\n{server.output()}")
        return server

    def stop(self, server: ServerProcess, *, graceful: bool = True) -> int:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        return server.wait_exit(20)

    def close(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=10)
        for schema in self.schemas:
            drop_schema(schema)


@pytest.fixture
def agent_services(tmp_path: Path) -> Iterator[AgentServices]:
    services = AgentServices(tmp_path)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One instance on SQLite, shared by a module's tests (each test uses its own user)."""
    services = AgentServices(tmp_path_factory.mktemp("agent"))
    try:
        yield services.start()
    finally:
        services.close()


def wait_ready(server: ServerProcess, timeout: float = 10) -> None:
    wait_until(
        lambda: httpx.get(server.url + "/health/ready", timeout=2).status_code == 200,
        timeout=timeout,
        what="readiness",
    )
