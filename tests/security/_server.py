"""A guarded service in its own uvicorn process, for the suite's raw-socket and leak tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from safeship.testing import free_port, scaled, wait_until

APPS = Path(__file__).parent / "apps"
SECRET = "suite-secret-Qm9vZ2llLXdvb2dpZS0xMjM0NTY3ODkw"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def guarded_server(
    directory: Path, *, http: str = "H11HeadDeadline", **env: str
) -> Iterator[Server]:
    port = free_port()
    log = directory / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "guarded_app:app", "--app-dir", str(APPS),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "debug",
             "--http", f"safeship.service.deadline:{http}"],
            env={**os.environ, "SAFESHIP_ENV": "test", "JWT_SECRET": SECRET,
                 "SAFESHIP_HEAD_TIMEOUT": "2", "PYTHONUNBUFFERED": "1", **env},
            stdout=out, stderr=subprocess.STDOUT, cwd=directory,
        )  # fmt: skip
    server = Server(proc, port, log)
    try:
        wait_until(lambda: _ready(server), timeout=20, what="the guarded server")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(server: Server) -> bool:
    if server.proc.poll() is not None:
        raise RuntimeError(f"the guarded server exited:\n{server.output()}")
    try:
        return httpx.get(server.url + "/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
