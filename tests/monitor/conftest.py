"""A real service built on safeship, served by uvicorn in a thread, whose WebSocket route can be
switched between behaviours while the monitor probes it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from safeship.config import Manifest, load_manifest
from safeship.service import Safeship
from safeship.testing import run_server

SECRET = "monitor-tests-secret-0123456789abcdef-XYZ"
OTHER_SECRET = "monitor-tests-other-secret-9876543210-ABC"


@dataclass
class Service:
    url: str
    behaviour: dict[str, str] = field(default_factory=lambda: {"ws": "ok"})

    def set(self, ws: str) -> None:
        self.behaviour["ws"] = ws


def make_app(behaviour: dict[str, str]) -> Starlette:
    ship = Safeship(manifest=Manifest(), environ={"SAFESHIP_ENV": "test", "JWT_SECRET": SECRET})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        if behaviour["ws"] == "1011":
            await websocket.close(1011, "internal error, id e-42")
            return
        try:
            while True:
                message = await websocket.receive_json()
                if message.get("type") == "ping":
                    await websocket.send_json(
                        {"type": "pong", "request_id": message.get("request_id")}
                    )
        except WebSocketDisconnect:
            pass

    app = Starlette(routes=[WebSocketRoute("/ws", ws)], lifespan=ship.lifespan)
    ship.install(app)
    return app


@pytest.fixture
def service() -> Iterator[Service]:
    behaviour = {"ws": "ok"}
    with run_server(make_app(behaviour)) as url:
        yield Service(url, behaviour)


def write_manifest(root: Path, url: str, *extra: str, secret_file: str | None = None) -> Manifest:
    """A project whose ``test`` environment is ``url``; probes mint from ``clients.env``."""
    (root / "clients.env").write_text(f"JWT_SECRET_TEST={secret_file or SECRET}\n")
    lines = [
        "[service]",
        'name = "monitor-tests"',
        "[environments.test]",
        f'url = "{url}"',
        "[deploy]",
        'probe_secret = "file:clients.env"',
        'probe_send = \'{"type": "ping"}\'',
        'probe_expect = { type = "pong" }',
        "[monitor]",
        "interval = 1",
        "timeout = 2",
        'listen = "127.0.0.1:0"',
        *extra,
    ]
    (root / "safeship.toml").write_text("\n".join(lines) + "\n")
    return load_manifest(root / "safeship.toml")
