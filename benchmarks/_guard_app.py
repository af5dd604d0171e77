"""The app measured by guard_overhead.py: one uvicorn process serving the same echo endpoint
bare (``/bare``) and behind WebSocketGuard with JWT auth (``/guarded``); ``/notready`` is guarded
by a service whose startup never finishes."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from safeship.config import Manifest
from safeship.service import Safeship

SECRET = os.environ["BENCH_SECRET"]


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


def _ship(**options: object) -> Safeship:
    return Safeship(
        manifest=Manifest(),
        env="test",
        environ={"JWT_SECRET": SECRET},
        on_failure="raise",
        **options,
    )


ready = _ship()
starting = _ship(background=True)


@starting.phase("database", timeout=3600)
async def never() -> None:
    await asyncio.Event().wait()


echo_app = Starlette(routes=[WebSocketRoute("/", echo)])


async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
    async with ready.lifespan(app), starting.lifespan(app):
        yield


app = Starlette(
    routes=[
        Mount("/bare", app=echo_app),
        Mount("/guarded", app=ready.guard(echo_app)),
        Mount("/notready", app=starting.guard(echo_app)),
    ],
    lifespan=lambda app: _cm(app),
)


def _cm(app: Starlette):  # type: ignore[no-untyped-def]
    import contextlib

    return contextlib.asynccontextmanager(lifespan)(app)
