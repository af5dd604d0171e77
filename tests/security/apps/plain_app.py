"""A plain app for tests/security: an HTTP route and a WebSocket echo, no auth."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[Route("/", hello), WebSocketRoute("/ws", echo)])
