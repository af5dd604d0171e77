"""Process helpers for detached services: spawn with logs, identify, wait, terminate.

Detached processes outlive the command that started them, so a pid alone is not an identity:
pids get recycled. A :class:`ProcessRef` pairs the pid with the kernel's start time of the
process (``/proc/<pid>/stat``), and every check and signal goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcessRef",
    "exit_code",
    "free_port",
    "is_alive",
    "port_open",
    "spawn",
    "tail",
    "terminate",
    "wait_exit",
    "wait_port",
]

# Children spawned by this process: polled (and so reaped) by is_alive, never left as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_time: int | None
    """Start time in clock ticks since boot; ``None`` where ``/proc`` is unavailable."""

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(pid, _start_time(pid))

    @classmethod
    def current(cls) -> ProcessRef:
        return cls.of(os.getpid())


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_alive(ref: ProcessRef) -> bool:
    """True when the process exists, is the same process (start time), and is not a zombie."""
    child = _CHILDREN.get(ref.pid)
    if child is not None and child.poll() is not None:
        return False
    if Path("/proc").is_dir():
        fields = _stat(ref.pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return ref.start_time is None or int(fields[19]) == ref.start_time
    try:
        os.kill(ref.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_code(pid: int) -> int | None:
    """The exit code of a child spawned by this process, once it has exited."""
    child = _CHILDREN.get(pid)
    return None if child is None else child.poll()


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    banner: str | None = None,
) -> ProcessRef:
    """Start ``argv`` detached (its own session, so it survives the caller and can be
    signalled as a group), stdin closed, stdout and stderr appended to ``log_path`` after
    an optional ``banner`` line."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        if banner:
            log.write(banner.encode() + b"\n")
            log.flush()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    # Not yet polled, so even an instant exit leaves a zombie whose start time is readable.
    return ProcessRef.of(child.pid)


def _signal_group(ref: ProcessRef, sig: signal.Signals) -> None:
    if not is_alive(ref):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            os.killpg(ref.pid, sig)  # a process we spawned leads its own group
        except ProcessLookupError:
            os.kill(ref.pid, sig)


async def wait_exit(ref: ProcessRef, within: float, interval: float = 0.05) -> bool:
    """Wait until the process is gone; False when still alive after ``within`` seconds."""
    deadline = time.monotonic() + within
    while is_alive(ref):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def terminate(ref: ProcessRef, *, within: float, grace: float = 5.0) -> bool:
    """SIGTERM the process group, wait up to ``within`` s, then SIGKILL and wait up to ``grace``.

    Returns:
        True when the process is gone; False if it survived even SIGKILL (stuck in the kernel).
    """
    _signal_group(ref, signal.SIGTERM)
    if await wait_exit(ref, within):
        return True
    _signal_group(ref, signal.SIGKILL)
    return await wait_exit(ref, grace)


def port_open(host: str, port: int, timeout: float = 0.25) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def wait_port(
    ref: ProcessRef, host: str, port: int, within: float, interval: float = 0.05
) -> str:
    """Wait for ``port`` to accept connections while the process lives.

    Returns:
        ``"listening"``, ``"exited"`` or ``"timeout"``.
    """
    deadline = time.monotonic() + within
    while True:
        if not is_alive(ref):
            return "exited"
        if await asyncio.to_thread(port_open, host, port):
            return "listening"
        if time.monotonic() >= deadline:
            return "timeout"
        await asyncio.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller retries if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]
