"""``ClientConnection`` in process: a stand-in socket, a real SQLite store and run manager."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent_service.broker import InProcessBroker
from agent_service.connection import MAX_PENDING, ClientConnection, Services
from agent_service.db import SessionManager
from agent_service.hub import Hub
from agent_service.protocol import Event
from agent_service.registry import AgentRegistry
from agent_service.runs import RunManager
from agent_service.settings import AGENT_MODULES, load_settings
from agent_service.store import EventStore

from safeship.testing import scaled, wait_until_async


class Socket:
    """What ClientConnection uses of starlette's WebSocket."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": code})

    def send(self, message: dict[str, Any]) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(message)})

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("run_id") == run_id and "seq" in m]


class Harness:
    def __init__(self, services: Services, sessions: SessionManager) -> None:
        self.services = services
        self.sessions = sessions
        self.tasks: list[asyncio.Task[None]] = []

    def open(self, user: str) -> Socket:
        socket = Socket()
        connection = ClientConnection(socket, user, self.services)  # type: ignore[arg-type]
        self.tasks.append(asyncio.create_task(connection.serve()))
        return socket

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.services.runs.drain(0)
        await self.sessions.close()


async def harness(tmp_path: Path) -> Harness:
    settings = load_settings({"AGENT_SERVICE_SLOW_DELAY": "0.02"}, env="test", cwd=tmp_path)
    sessions = SessionManager(settings.database_url)
    await sessions.connect(deadline=10)
    store, hub = EventStore(sessions), Hub()
    runs = RunManager(
        store=store,
        registry=AgentRegistry.load(AGENT_MODULES, sessions),
        hub=hub,
        broker=InProcessBroker(),
        settings=settings,
        instance="test",
    )
    return Harness(Services(settings, store, runs, hub, "test"), sessions)


def go(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


def test_runs_reach_every_open_connection_and_later_ones_resume(tmp_path):
    async def scenario() -> None:
        h = await harness(tmp_path)
        try:
            tab1, tab2 = h.open("alice"), h.open("alice")
            await wait_until_async(lambda: tab1.sent and tab2.sent)
            assert tab1.sent[0]["type"] == "connection_established"
            tab1.send(
                {"type": "start_agent", "agent": "slow", "input": {"steps": 10}, "request_id": "s"}
            )
            await wait_until_async(lambda: tab1.sent[-1].get("seq", 0) >= 3, within=10)
            run_id = tab1.sent[1]["run_id"]
            late = h.open("alice")  # opened mid-run: not sent this run until it resumes
            await wait_until_async(
                lambda: tab1.events(run_id)[-1]["type"] == "agent_completed", within=10
            )
            assert late.events(run_id) == []
            late.send({"type": "resume", "run_id": run_id, "last_seq": 2, "request_id": "r"})
            await wait_until_async(lambda: late.sent[-1]["type"] == "resumed", within=10)
            assert [e["seq"] for e in tab1.events(run_id)] == list(range(1, 13))
            assert tab2.events(run_id) == tab1.events(run_id)
            assert late.events(run_id) == tab1.events(run_id)[2:]
            assert late.sent[-1]["status"] == "completed"
        finally:
            await h.close()

    go(scenario())


def test_a_gap_in_live_events_is_filled_from_the_database(tmp_path):
    async def scenario() -> None:
        h = await harness(tmp_path)
        store = h.services.store
        try:
            run_id, _ = await store.create_run(
                user="bob", agent="slow", request_id="x", input=None, instance="elsewhere", now=1.0
            )
            for seq in range(1, 4):
                await store.append(Event(run_id, seq, "agent_thinking", float(seq), {"n": seq}))
            socket = h.open("bob")
            await wait_until_async(lambda: socket.sent)
            socket.send({"type": "resume", "run_id": run_id, "last_seq": 0})
            await wait_until_async(lambda: socket.sent[-1]["type"] == "resumed", within=10)
            assert socket.sent[-1]["status"] == "running"
            # Events 4 and 5 never arrive live (a Redis hiccup); 6 does.
            for seq in range(4, 7):
                await store.append(Event(run_id, seq, "agent_thinking", float(seq), {"n": seq}))
            h.services.hub.dispatch(Event(run_id, 6, "agent_thinking", 6.0, {"n": 6}, user="bob"))
            h.services.hub.dispatch(Event(run_id, 6, "agent_thinking", 6.0, {"n": 6}, user="bob"))
            await wait_until_async(lambda: len(socket.events(run_id)) >= 6, within=10)
            assert [e["seq"] for e in socket.events(run_id)] == [1, 2, 3, 4, 5, 6]
        finally:
            await h.close()

    go(scenario())


def test_a_client_too_far_behind_is_closed_with_1013_to_resume(tmp_path):
    async def scenario() -> None:
        h = await harness(tmp_path)
        try:
            socket = h.open("carol")
            await wait_until_async(lambda: socket.sent)
            for seq in range(1, MAX_PENDING + 2):  # no await: the pump cannot keep up
                h.services.hub.dispatch(Event("run_x", seq, "agent_thinking", 0.0, user="carol"))
            await wait_until_async(lambda: socket.closed is not None, within=10)
            assert socket.closed is not None and socket.closed[0] == 1013
            assert "resume" in socket.closed[1]
        finally:
            await h.close()

    go(scenario())
