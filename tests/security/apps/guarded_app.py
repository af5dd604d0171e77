"""A guarded service for tests/security: Safeship with its guard, health, metrics and tickets,
a WebSocket echo on /ws, and DEBUG logging (the leak scans read everything it writes)."""

from __future__ import annotations

import logging
import sys

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from safeship.config import Manifest
from safeship.service import Safeship

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

ship = Safeship(manifest=Manifest())


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws", echo)], lifespan=ship.lifespan)
ship.install(app)
