"""The monitor's HTTP server: ``/metrics`` (Prometheus text format), ``/analysis/<env>`` and
``/analysis/<env>/<revision>`` (the verdict JSON, see ``analysis.py``), ``/health/live``.

A Starlette app served by uvicorn in the monitor's own event loop, so the endpoints read the
trackers the probes update without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import UsageError
from .exporter import CONTENT_TYPE

if TYPE_CHECKING:
    from .scheduler import Monitor

__all__ = ["MonitorServer", "build_app"]

_NO_STORE = {"cache-control": "no-store"}
_START_TIMEOUT = 10.0


def build_app(monitor: Monitor) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(monitor.exporter.render(), media_type=CONTENT_TYPE, headers=_NO_STORE)

    async def env_analysis(request: Request) -> JSONResponse:
        params = request.path_params
        status, doc = monitor.analysis(params["env"], params.get("revision"))
        return JSONResponse(doc, status_code=status, headers=_NO_STORE)

    async def index(request: Request) -> JSONResponse:
        return JSONResponse(monitor.snapshot(), headers=_NO_STORE)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"}, headers=_NO_STORE)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/analysis", index, methods=["GET"]),
            # Argo Rollouts' Web metric GETs; Flagger's webhooks POST (their body is ignored).
            Route("/analysis/{env}", env_analysis, methods=["GET", "POST"]),
            Route("/analysis/{env}/{revision}", env_analysis, methods=["GET", "POST"]),
            Route("/health/live", live, methods=["GET"]),
        ]
    )


class MonitorServer:
    """uvicorn serving :func:`build_app` on ``HOST:PORT`` (port 0: any free port)."""

    def __init__(self, monitor: Monitor, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.monitor = monitor
        self._server: Any = None
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start serving; returns the base URL.

        Raises:
            UsageError: the address cannot be bound (in use, not local).
        """
        import uvicorn

        # Bound here, not by uvicorn, which would sys.exit() out of the event loop.
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family = infos[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(infos[0][4])
                sock.listen(128)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise UsageError(
                f"the monitor cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                hint="free the port, or set [monitor] listen (or --listen) to another HOST:PORT, "
                "or '' for no server",
            ) from None
        config = uvicorn.Config(
            build_app(self.monitor), log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        # Signals are the CLI's to handle (Ctrl-C stops the whole monitor, not just this).
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._server = server
        self._socket = sock
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT
        while not server.started:
            if self._task.done() or loop.time() > deadline:
                await self.stop()
                raise UsageError(
                    f"the monitor's HTTP server did not start on {self.host}:{self.port}"
                )
            await asyncio.sleep(0.01)
        self.port = sock.getsockname()[1]
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (TimeoutError, Exception):
                self._task.cancel()
        if self._socket is not None:
            self._socket.close()
