from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from safeship.config import Manifest
from safeship.service import Safeship

SECRET = "s3cr3t-value-for-tests-0123456789abcdef"


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"type": "hello", "sub": websocket.state.subject})
    try:
        while True:
            text = await websocket.receive_text()
            if text == "boom":
                raise RuntimeError("handler exploded")
            await websocket.send_text(text)
    except WebSocketDisconnect:
        pass


def make_app(*, phases=(), environ=None, **options):
    ship = Safeship(
        manifest=Manifest(),
        environ=environ or {"SAFESHIP_ENV": "test", "JWT_SECRET": SECRET},
        on_failure=options.pop("on_failure", "raise"),
        **options,
    )
    for name, fn, timeout in phases:
        ship.phase(name, timeout=timeout)(fn)
    app = Starlette(routes=[WebSocketRoute("/ws", echo)], lifespan=ship.lifespan)
    ship.install(app)
    return ship, app


@pytest.fixture
def service():
    return make_app()


async def never() -> None:
    await asyncio.Event().wait()
