"""``safeship demo``: a small service built on the library, started for real on loopback, with
its startup phases, an accepted handshake and refused ones shown with their reasons."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import typer
from rich.table import Table
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from ..config import Manifest
from ..service import Safeship
from ..testing import run_server
from ..tokens import mint
from ._output import console, emit_json


def _build_app(secret: str) -> Starlette:
    ship = Safeship(
        manifest=Manifest(),
        env="test",
        environ={"JWT_SECRET": secret},
        on_failure="raise",
    )

    @ship.phase("config", timeout=2)
    async def config() -> None:
        await asyncio.sleep(0.01)

    @ship.phase("database", timeout=5)
    async def database() -> None:
        await asyncio.sleep(0.05)

    @ship.phase("agents", timeout=5)
    async def agents() -> None:
        await asyncio.sleep(0.02)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {"type": "connection_established", "user": websocket.state.subject}
        )
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    app = Starlette(routes=[WebSocketRoute("/ws", echo)], lifespan=ship.lifespan)
    ship.install(app)
    return app


async def _handshakes(base: str, secret: str) -> list[dict[str, Any]]:
    ws = base.replace("http://", "ws://") + "/ws"
    cases = [
        ("valid token (header)", {"Authorization": f"Bearer {mint(secret, 'alice')}"}, None),
        ("no token", {}, None),
        ("expired token", {"Authorization": f"Bearer {mint(secret, 'bob', ttl=-120)}"}, None),
        (
            "token signed with a fallback secret",
            {"Authorization": f"Bearer {mint('fallback-secret-' + '0' * 24, 'carol')}"},
            None,
        ),
        (
            "expired token from a browser",
            {"Authorization": f"Bearer {mint(secret, 'dan', ttl=-120)}"},
            "http://app.example",
        ),
    ]
    results = []
    for label, headers, origin in cases:
        try:
            async with connect(
                ws,
                additional_headers=headers,
                origin=Origin(origin) if origin else None,
                open_timeout=5,
            ) as conn:
                first = json.loads(await asyncio.wait_for(conn.recv(), 5))
                results.append({"case": label, "outcome": "accepted", "detail": first})
        except InvalidStatus as exc:
            body = json.loads(exc.response.body or b"{}")
            results.append(
                {"case": label, "outcome": f"HTTP {exc.response.status_code}", "detail": body}
            )
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            outcome = f"close {rcvd.code}" if rcvd else "dropped"
            results.append(
                {"case": label, "outcome": outcome, "detail": rcvd.reason if rcvd else ""}
            )
    return results


def run_demo(as_json: bool) -> int:
    secret = secrets.token_urlsafe(48)
    with run_server(_build_app(secret)) as base:
        startup = httpx.get(base + "/health/startup", timeout=5).json()
        ready = httpx.get(base + "/health/ready", timeout=5)
        results = asyncio.run(_handshakes(base, secret))
    report = {"startup": startup, "ready": ready.status_code, "handshakes": results}
    if as_json:
        emit_json(report)
        return 0
    phases = Table(title="Startup phases", show_lines=False)
    for column in ("phase", "state", "duration"):
        phases.add_column(column)
    for phase in startup["phases"]:
        phases.add_row(phase["name"], phase["state"], f"{phase['duration_ms']:.1f} ms")
    console.print(phases)
    console.print(f"/health/ready -> {ready.status_code} {ready.json()['status']}\n")
    table = Table(title="WebSocket handshakes")
    for column in ("client", "answer", "reason"):
        table.add_column(column)
    for row in results:
        style = "green" if row["outcome"] == "accepted" else "red"
        detail = row["detail"]
        text = detail.get("detail", json.dumps(detail)) if isinstance(detail, dict) else str(detail)
        table.add_row(row["case"], f"[{style}]{row['outcome']}[/]", text)
    console.print(table)
    return 0


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        json_output: bool = typer.Option(False, "--json", help="Print a JSON report."),
    ) -> None:
        """Start a small service built on safeship and show how it answers handshakes."""
        raise typer.Exit(run_demo(json_output))
