"""The front listener of the local target: a TCP forwarder on the stable port.

It forwards bytes, not HTTP, so WebSockets pass through untouched. A switch changes only where
NEW connections go; open ones keep their backend until it drains them. With no backend, or a
backend that refuses, the front answers at once with ``503`` and ``Retry-After: 1`` and closes:
it never holds an accepted connection that no one serves.

A canary step splits new connections by weight: ``percent`` % go to the canary port, the rest
to the backend, chosen per accepted connection by smooth weighted round-robin (exact shares
even over a handful of connections). A switch ends the split.

Controlled through a unix socket (one JSON line in, one out):
``{"op": "switch", "port": N | null}``, ``{"op": "split", "port": N, "percent": 1..99}`` and
``{"op": "status"}``.

Run as ``python -m safeship.deploy.front --port 8700 --control PATH [--backend PORT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import procs
from ..core.canary import WeightedChoice
from ..errors import TargetError

__all__ = ["Front", "control_path", "launch", "main", "request"]

CONNECT_TIMEOUT = 2.0
HALF_CLOSE_TIMEOUT = 30.0
"""How long one direction may stay open after the other has finished."""
CONTROL_TIMEOUT = 5.0
FIRST_BYTES_TIMEOUT = 10.0
"""How long a new client connection may stay silent before the front closes it."""
_CHUNK = 64 * 1024
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def control_path(state_dir: Path) -> Path:
    """The control socket of the front of ``state_dir``. Unix socket paths are short, so a
    deep state directory gets a socket in the temp dir, named by a hash of the state dir."""
    path = state_dir / "front.sock"
    if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(state_dir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"safeship-front-{digest}.sock"


def _unavailable(detail: str) -> bytes:
    body = json.dumps({"error": "unavailable", "detail": detail}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Retry-After: 1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class Front:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        control: Path,
        backend: int | None = None,
        backend_host: str = "127.0.0.1",
        first_bytes_timeout: float = FIRST_BYTES_TIMEOUT,
    ) -> None:
        self.host, self.port, self.control = host, port, control
        self.first_bytes_timeout = first_bytes_timeout
        self.backend, self.backend_host = backend, backend_host
        self.canary: dict[str, int] | None = None
        """``{"port": N, "percent": P}`` during a canary step."""
        self._choice: WeightedChoice[int] | None = None
        self.served = 0
        self.refused = 0
        self.served_by: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.Server] = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Bind the listener, then the control socket. Raises ``OSError`` (e.g. port in use)."""
        server = await asyncio.start_server(self._on_client, self.host, self.port)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        # A socket file left by a front that died would block the bind.
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
        control = await asyncio.start_unix_server(self._on_control, str(self.control))
        os.chmod(self.control, 0o600)  # whoever can write here can move traffic
        self._servers.append(control)

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when run as a program)."""
        await self._stopped.wait()
        await self.close()

    def stop(self) -> None:
        self._stopped.set()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CONTROL_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "backend": self.backend,
            "canary": self.canary,
            "served_by": {str(port): n for port, n in self.served_by.items()},
            "connections": sum(1 for t in self._tasks if t.get_name() == "conn"),
            "served": self.served,
            "refused": self.refused,
        }

    # -- data path ------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.set_name("conn")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self._client(reader, writer)
        except Exception as exc:  # one broken connection must never take the front down
            _event(sys.stderr, "front_connection_error", error=repr(exc))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # A half-open socket that never sends its request holds no backend connection,
            # and is closed after first_bytes_timeout.
            first = await asyncio.wait_for(reader.read(_CHUNK), self.first_bytes_timeout)
        except (OSError, TimeoutError):
            first = b""
        if not first:
            writer.close()
            return
        backend = self._pick()  # once: a switch during the connect must not split it
        try:
            if backend is None:
                await self._refuse(reader, writer, "no revision is serving", first)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.backend_host, backend), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                await self._refuse(reader, writer, f"the revision on port {backend} refused", first)
                return
            self.served += 1
            self.served_by[backend] = self.served_by.get(backend, 0) + 1
            up_writer.write(first)
            await self._splice(reader, writer, up_reader, up_writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _pick(self) -> int | None:
        if self._choice is None:
            return self.backend
        return self._choice.pick()

    async def _refuse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        detail: str,
        first: bytes = b"",
    ) -> None:
        self.refused += 1
        # Read the request head first: closing with unread input sends a RST, and the client
        # could lose the 503 we just wrote.
        if b"\r\n\r\n" not in first:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1.0)
        with contextlib.suppress(OSError):
            writer.write(_unavailable(detail))
            await asyncio.wait_for(writer.drain(), 1.0)
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(reader.read(), 1.0)

    async def _splice(
        self,
        down_reader: asyncio.StreamReader,
        down_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        pipes = {
            asyncio.ensure_future(_pipe(down_reader, up_writer)),
            asyncio.ensure_future(_pipe(up_reader, down_writer)),
        }
        try:
            done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            # One side finished (EOF was forwarded as a half-close); the other may still
            # have bytes to deliver, for a bounded time.
            failed = any(t.cancelled() or t.exception() or t.result() for t in done)
            if pending and not failed:
                await asyncio.wait(pending, timeout=HALF_CLOSE_TIMEOUT)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            up_writer.close()

    # -- control --------------------------------------------------------------------------

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), CONTROL_TIMEOUT)
            reply = self._dispatch(line)
        except (TimeoutError, OSError, ValueError) as exc:
            reply = {"ok": False, "error": f"bad control request: {exc}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), CONTROL_TIMEOUT)
        writer.close()

    def _dispatch(self, line: bytes) -> dict[str, Any]:
        message = json.loads(line)
        op = message.get("op") if isinstance(message, dict) else None
        if op == "status":
            return self.status()
        if op == "switch":
            port = message.get("port")
            valid = port is None or (type(port) is int and 0 < port < 65536)
            if not valid:
                return {"ok": False, "error": f"port must be 1-65535 or null, got {port!r}"}
            previous, self.backend = self.backend, port
            self.canary = self._choice = None
            return {"ok": True, "backend": port, "previous": previous}
        if op == "split":
            return self._split(message)
        return {
            "ok": False,
            "error": f"unknown op {op!r}; expected 'switch', 'split' or 'status'",
        }

    def _split(self, message: dict[str, Any]) -> dict[str, Any]:
        port, percent = message.get("port"), message.get("percent")
        if not (type(port) is int and 0 < port < 65536):
            return {"ok": False, "error": f"port must be 1-65535, got {port!r}"}
        if not (type(percent) is int and 1 <= percent <= 99):
            return {
                "ok": False,
                "error": f"percent must be 1-99 (100 is a switch), got {percent!r}",
            }
        if self.backend is None or self.backend == port:
            return {
                "ok": False,
                "error": "a split needs a serving backend other than the canary; switch first",
            }
        self.canary = {"port": port, "percent": percent}
        self._choice = WeightedChoice({self.backend: 100 - percent, port: percent})
        return {"ok": True, "backend": self.backend, "canary": self.canary}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF, then half-close. Returns True when the copy ended with an error."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        return True
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    return False


async def request(
    path: Path, message: dict[str, Any], within: float = CONTROL_TIMEOUT
) -> dict[str, Any]:
    """Send one control message to a front and return its reply.

    Raises:
        OSError: no front listens on ``path``; TimeoutError: it did not answer in time.
    """
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    if not line:
        raise OSError(f"the front at {path} closed the control connection without answering")
    reply: dict[str, Any] = json.loads(line)
    return reply


async def launch(
    state_dir: Path, *, host: str, port: int, backend: int | None, within: float
) -> tuple[procs.ProcessRef, dict[str, Any]]:
    """Start the front of ``state_dir`` as a detached process; return it and its status once
    its control socket answers.

    Raises:
        TargetError: it could not listen (the port in use, named) or did not come up in time.
    """
    control = control_path(state_dir)
    argv = [sys.executable, "-m", "safeship.deploy.front", "--host", host, "--port", str(port)]
    argv += ["--control", str(control)]
    if backend is not None:
        argv += ["--backend", str(backend)]
    log = state_dir / "front.log"
    ref = procs.spawn(argv, log_path=log, env=os.environ, cwd=state_dir)
    deadline = time.monotonic() + within
    while procs.is_alive(ref):
        try:
            status = await request(control, {"op": "status"}, 1.0)
        except (OSError, TimeoutError, ValueError):
            status = {}
        if status.get("pid") == ref.pid:  # not a stale front still bound to the socket
            return ref, status
        if time.monotonic() >= deadline:
            await procs.terminate(ref, within=1.0)
            raise TargetError(f"the front did not come up within {within:g}s; see {log}")
        await asyncio.sleep(0.05)
    raise _failure(host, port, procs.tail(log, 5))


def _failure(host: str, port: int, lines: list[str]) -> TargetError:
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "front_failed":
            if event.get("errno") in (98, 48):  # EADDRINUSE on Linux, macOS
                return TargetError(
                    f"port {port} on {host} is already in use by another process, so the "
                    "front of the local target cannot listen there",
                    hint=f"stop what listens on {host}:{port} (`lsof -i :{port}`), or set "
                    "[deploy] port to a free port in safeship.toml",
                )
            return TargetError(f"the front could not listen on {host}:{port}: {event.get('error')}")
    return TargetError(f"the front exited during startup: {' | '.join(lines) or 'no output'}")


def _event(stream: Any, event: str, **data: Any) -> None:
    stream.write(json.dumps({"event": event, **data}) + "\n")
    stream.flush()


async def _run(args: argparse.Namespace) -> int:
    front = Front(host=args.host, port=args.port, control=Path(args.control), backend=args.backend)
    try:
        await front.start()
    except OSError as exc:
        _event(
            sys.stderr,
            "front_failed",
            host=args.host,
            port=args.port,
            errno=exc.errno,
            error=str(exc),
        )
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, front.stop)
    _event(sys.stdout, "front_ready", **front.status())
    await front.serve()
    _event(sys.stdout, "front_stopped", served=front.served, refused=front.refused)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safeship.deploy.front")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", required=True, help="unix socket path for control")
    parser.add_argument("--backend", type=int, default=None, help="initial backend port")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
