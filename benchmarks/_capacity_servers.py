"""Processes for ``service_capacity``: instances of the reference service under uvicorn, with
their resident memory read from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SECRET = "bench-secret-" + "0123456789abcdef" * 3
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Instance:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def metric(self, name: str) -> float:
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def start_instance(
    workdir: Path, env: dict[str, str], *, args: tuple[str, ...] = (), timeout: float = 30.0
) -> Instance:
    port = free_port()
    log = workdir / f"instance-{port}.log"
    full_env = {
        **os.environ,
        "SAFESHIP_ENV": "test",
        "JWT_SECRET": SECRET,
        "AGENT_SERVICE_LOG_LEVEL": "WARNING",
        "AGENT_SERVICE_MAX_CONNECTIONS_PER_USER": "100",
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench.db",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "agent_service.main:app", "--app-dir", str(EXAMPLES),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--backlog", "4096", *args],
            env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    instance = Instance(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited during startup:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(instance.url + "/health/ready", timeout=1).status_code == 200:
                return instance
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop(instance)
    raise RuntimeError(f"the service was not ready within {timeout:g}s:\n{log.read_text()[-2000:]}")


def stop(instance: Instance) -> None:
    if instance.proc.poll() is None:
        instance.proc.send_signal(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        instance.proc.wait(timeout=10)


@contextlib.contextmanager
def postgres_schema() -> Iterator[dict[str, str] | None]:
    """Settings for a fresh PostgreSQL schema (dropped afterwards), or None without PostgreSQL."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    schema = "bench_" + os.urandom(5).hex()

    async def run(sql: str) -> None:
        engine = create_async_engine(POSTGRES_URL, connect_args={"timeout": 3})
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    try:
        asyncio.run(asyncio.wait_for(run("SELECT 1"), 10))
    except Exception:
        yield None
        return
    try:
        yield {"DATABASE_URL": POSTGRES_URL, "DATABASE_SCHEMA": schema}
    finally:
        asyncio.run(asyncio.wait_for(run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'), 30))
