from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from safeship.testing import free_port, scaled, wait_until

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SECRET = "e2e-secret-value-0123456789abcdef-XYZ"


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _output: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=scaled(timeout))


def _wait_listening(server: ServerProcess, timeout: float) -> None:
    def up() -> bool:
        if server.proc.poll() is not None:
            return True
        try:
            httpx.get(server.url + "/health/live", timeout=0.5)
        except httpx.HTTPError:
            return False
        return True

    wait_until(up, timeout=timeout, interval=0.05, what=f"server on port {server.port}")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """Start ``svc_app`` (or another app) under real uvicorn in its own process."""
    started: list[ServerProcess] = []

    def start(
        env: dict[str, str] | None = None,
        *,
        app: str = "svc_app:app",
        app_dir: Path = FIXTURES / "svc_app",
        wait: bool = True,
        log_level: str = "info",
    ) -> ServerProcess:
        port = free_port()
        log_path = tmp_path / f"server-{port}.log"
        full_env = {
            **os.environ,
            "SAFESHIP_ENV": "test",
            "JWT_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    app,
                    "--app-dir",
                    str(app_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    log_level,
                ],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        server = ServerProcess(proc, port, log_path)
        started.append(server)
        if wait:
            _wait_listening(server, timeout=15)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=10)
