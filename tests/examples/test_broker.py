from __future__ import annotations

import asyncio
import json

from agent_service.broker import (
    BROKERS,
    InProcessBroker,
    decode_message,
    encode_command,
    encode_event,
    make_broker,
)
from agent_service.db import SessionManager
from agent_service.hub import Hub, RemoteRunTailer
from agent_service.protocol import Event
from agent_service.redis_broker import RedisBroker, redis_where
from agent_service.store import EventStore

from safeship.testing import scaled


class Inbox:
    def __init__(self, user: str) -> None:
        self.user = user
        self.events: list[Event] = []

    def push(self, event: Event) -> None:
        self.events.append(event)


def test_events_and_commands_round_trip_and_own_messages_are_ignored():
    event = Event(
        "run_1", 4, "tool_completed", 12.5, {"result": [1]}, user="alice", request_id=None
    )
    wire = encode_event(event, origin="A")
    assert decode_message(wire, own="B") == ("event", event)
    assert decode_message(wire.encode(), own="B") == ("event", event)
    assert decode_message(wire, own="A") is None  # our own message, come back from Redis
    command = {"type": "user_message", "run_id": "run_1", "user": "alice", "text": "hi"}
    assert decode_message(encode_command(command, "A"), own="B") == ("command", command)


def test_malformed_broker_messages_are_dropped():
    for data in ("not json", "[]", json.dumps({"origin": "X", "kind": "event"}), json.dumps({"origin": "X"}),
                 json.dumps({"origin": "X", "kind": "event", "run_id": "r", "seq": "x", "type": "t",
                             "ts": 1, "user": "u"})):  # fmt: skip
        assert decode_message(data, own="B") is None


def test_the_broker_registry_and_the_in_process_broker():
    assert set(BROKERS) == {"memory", "redis"}
    memory = make_broker(None, instance="i", channel="c", metrics=None)
    assert isinstance(memory, InProcessBroker)
    assert isinstance(
        make_broker("redis://127.0.0.1:1/0", instance="i", channel="c", metrics=None), RedisBroker
    )
    assert memory.forward({"type": "user_message"}) is False
    assert memory.status() == {"broker": "memory"}
    assert redis_where("redis://:pw@cache.internal:6380/2") == "cache.internal:6380"
    assert redis_where("redis://localhost") == "localhost:6379"


def test_hub_delivers_to_every_connection_of_the_user_and_tracks_followed_runs():
    now = [100.0]
    hub = Hub(clock=lambda: now[0])
    a1, a2, b = Inbox("alice"), Inbox("alice"), Inbox("bob")
    for sink in (a1, a2, b):
        hub.add(sink)
    assert len(hub) == 3
    event = Event("run_1", 1, "agent_started", 0.0, user="alice")
    hub.dispatch(event)
    assert a1.events == a2.events == [event] and b.events == []
    hub.remove(a2)
    hub.dispatch(Event("run_1", 2, "agent_thinking", 0.0, user="alice"))
    assert len(a1.events) == 2 and len(a2.events) == 1

    hub.follow("run_remote", "alice", 3)
    hub.follow("run_remote", "alice", 4)
    hub.advance("run_remote", 5)  # replayed from the database by a resume
    hub.advance("run_unknown", 9)
    hub.follow("run_local", "alice", 0)
    assert hub.quiet_runs(local={"run_local"}, quiet_for=1.0) == []
    now[0] += 2
    assert hub.quiet_runs(local={"run_local"}, quiet_for=1.0) == [("run_remote", "alice", 5)]
    hub.dispatch(Event("run_remote", 6, "agent_thinking", 0.0, user="alice"))
    assert hub.quiet_runs(local={"run_local"}, quiet_for=1.0) == []
    now[0] += 2
    assert hub.quiet_runs(local=set(), quiet_for=1.0) == [
        ("run_remote", "alice", 6),
        ("run_local", "alice", 0),
    ]
    hub.unfollow("run_remote")
    assert [r for r, _, _ in hub.quiet_runs(local=set(), quiet_for=1.0)] == [
        "run_remote",
        "run_local",
    ]
    hub.unfollow("run_remote")
    assert [r for r, _, _ in hub.quiet_runs(local=set(), quiet_for=1.0)] == ["run_local"]


def test_the_tailer_fetches_new_events_of_quiet_remote_runs(tmp_path):
    async def scenario() -> None:
        sessions = SessionManager(f"sqlite+aiosqlite:///{tmp_path}/t.db")
        await sessions.connect(deadline=10)
        store = EventStore(sessions)
        try:
            run_id, _ = await store.create_run(
                user="alice", agent="slow", request_id="r", input=None, instance="other", now=1.0
            )
            for seq in (1, 2, 3):
                await store.append(Event(run_id, seq, "agent_thinking", float(seq), {}))
            now = [0.0]
            hub = Hub(clock=lambda: now[0])
            inbox = Inbox("alice")
            hub.add(inbox)
            hub.follow(run_id, "alice", 1)
            tailer = RemoteRunTailer(hub, store, local=set(), interval=0.5)
            assert await tailer.poll_once() == 0  # not quiet yet
            now[0] = 1.0
            assert await tailer.poll_once() == 2
            assert [(e.seq, e.user) for e in inbox.events] == [(2, "alice"), (3, "alice")]
            now[0] = 2.0
            assert await tailer.poll_once() == 0  # nothing new
            # A local run is never polled: its events come from the run itself.
            local = RemoteRunTailer(hub, store, local={run_id}, interval=0.5)
            now[0] = 3.0
            await store.append(Event(run_id, 4, "agent_completed", 4.0, {}))
            assert await local.poll_once() == 0
            assert await tailer.poll_once() == 1
        finally:
            await sessions.close()

    asyncio.run(asyncio.wait_for(scenario(), scaled(20)))
