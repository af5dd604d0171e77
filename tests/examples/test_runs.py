from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agent_service.broker import InProcessBroker
from agent_service.db import SessionManager
from agent_service.hub import Hub
from agent_service.metrics import ServiceMetrics
from agent_service.protocol import ErrorCode, Event, StartAgent, UserMessage
from agent_service.registry import AgentRegistry
from agent_service.runs import RunManager
from agent_service.settings import AGENT_MODULES, load_settings
from agent_service.store import EventStore

from safeship.testing import scaled, wait_until_async


class Inbox:
    """A connection stand-in: records what the hub pushes to one user."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.events: list[Event] = []

    def push(self, event: Event) -> None:
        self.events.append(event)

    def of(self, run_id: str) -> list[Event]:
        return [e for e in self.events if e.run_id == run_id]


async def manager(tmp_path: Path, **settings_env: str) -> tuple[RunManager, SessionManager]:
    settings = load_settings(
        {"AGENT_SERVICE_SLOW_DELAY": "0.05", **settings_env}, env="test", cwd=tmp_path
    )
    sessions = SessionManager(settings.database_url)
    await sessions.connect(deadline=10)
    runs = RunManager(
        store=EventStore(sessions),
        registry=AgentRegistry.load(AGENT_MODULES, sessions),
        hub=Hub(),
        broker=InProcessBroker(),
        settings=settings,
        instance="test-instance",
        metrics=ServiceMetrics(),
    )
    return runs, sessions


async def finished(inbox: Inbox, run_id: str) -> list[Event]:
    await wait_until_async(lambda: any(e.terminal for e in inbox.of(run_id)), within=10)
    return inbox.of(run_id)


def go(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


def test_wordcount_emits_every_event_type_in_order_stored_and_delivered(tmp_path):
    async def scenario() -> None:
        runs, sessions = await manager(tmp_path)
        alice, bob = Inbox("alice"), Inbox("bob")
        runs.hub.add(alice)
        runs.hub.add(bob)
        try:
            run_id, created = await runs.start(
                "alice", StartAgent("wordcount", "r1", "one two two")
            )
            assert created
            events = await finished(alice, run_id)
            assert [e.type for e in events] == [
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "agent_completed",
            ]
            assert [e.seq for e in events] == [1, 2, 3, 4, 5]
            assert events[0].request_id == "r1"
            assert events[3].payload["result"] == {"words": 3, "characters": 11, "unique": 2}
            assert events[-1].payload == {"output": {"words": 3, "characters": 11, "unique": 2}}
            assert bob.events == []  # only the user's own connections
            stored = await runs.store.events_after(run_id, 0)
            assert [(e.seq, e.type) for e in stored] == [(e.seq, e.type) for e in events]
            assert (await runs.store.get_run(run_id)).status == "completed"  # type: ignore[union-attr]
            assert runs.active == {}
            # A retried start (same request id) does not start a second run.
            assert await runs.start("alice", StartAgent("wordcount", "r1", "x")) == (run_id, False)
        finally:
            await sessions.close()

    go(scenario())


def test_failing_and_invalid_input_end_with_agent_error(tmp_path):
    async def scenario() -> None:
        runs, sessions = await manager(tmp_path)
        inbox = Inbox("alice")
        runs.hub.add(inbox)
        try:
            failing, _ = await runs.start("alice", StartAgent("failing", "f"))
            events = await finished(inbox, failing)
            assert [e.type for e in events] == ["agent_started", "agent_thinking", "agent_error"]
            assert events[-1].payload["code"] == "agent_failed"
            assert "RuntimeError" in events[-1].payload["detail"]
            assert (await runs.store.get_run(failing)).status == "failed"  # type: ignore[union-attr]

            bad, _ = await runs.start("alice", StartAgent("wordcount", "w", 42))
            events = await finished(inbox, bad)
            assert events[-1].type == "agent_error"
            assert events[-1].payload["code"] == "invalid_input"
        finally:
            await sessions.close()

    go(scenario())


def test_user_messages_reach_a_running_agent_and_are_part_of_the_stream(tmp_path):
    async def scenario() -> None:
        runs, sessions = await manager(tmp_path)
        inbox = Inbox("alice")
        runs.hub.add(inbox)
        try:
            run_id, _ = await runs.start(
                "alice", StartAgent("echo", "e", {"text": "hi", "turns": 2})
            )
            await wait_until_async(lambda: len(inbox.of(run_id)) >= 2, within=10)
            assert await runs.post_message("alice", UserMessage(run_id, "first")) is None
            await wait_until_async(lambda: len(inbox.of(run_id)) >= 4, within=10)
            assert await runs.post_message("alice", UserMessage(run_id, "second")) is None
            events = await finished(inbox, run_id)
            assert [e.type for e in events] == [
                "agent_started", "agent_thinking",
                "user_message", "agent_thinking", "user_message", "agent_thinking",
                "agent_completed",
            ]  # fmt: skip
            assert events[3].payload["echo"] == "first" and events[5].payload["echo"] == "second"
            assert events[-1].payload == {"output": "hi"}
            assert [e.seq for e in events] == list(range(1, 8))

            refused = await runs.post_message("alice", UserMessage(run_id, "late", "m"))
            assert refused is not None and refused.code is ErrorCode.RUN_FINISHED
            assert refused.request_id == "m"
            other = await runs.post_message("bob", UserMessage(run_id, "x"))
            assert other is not None and other.code is ErrorCode.UNKNOWN_RUN
        finally:
            await sessions.close()

    go(scenario())


@pytest.mark.parametrize("grace", [5.0, 0.0])
def test_drain_lets_runs_finish_within_the_grace_then_interrupts_them(tmp_path, grace):
    async def scenario() -> None:
        runs, sessions = await manager(tmp_path)
        inbox = Inbox("alice")
        runs.hub.add(inbox)
        try:
            run_id, _ = await runs.start(
                "alice", StartAgent("slow", "s", {"steps": 4, "delay": 0.05})
            )
            await wait_until_async(lambda: len(inbox.of(run_id)) >= 2, within=10)
            await runs.drain(grace)
            events = inbox.of(run_id)
            stored = await runs.store.events_after(run_id, 0)
            assert (
                [e.seq for e in stored]
                == [e.seq for e in events]
                == list(range(1, len(events) + 1))
            )
            info = await runs.store.get_run(run_id)
            assert info is not None
            if grace:
                assert events[-1].type == "agent_completed" and info.status == "completed"
            else:
                assert events[-1].type == "agent_error" and info.status == "interrupted"
                assert events[-1].payload["code"] == "interrupted"
                assert events[-1].payload["retryable"] is True
        finally:
            await sessions.close()

    go(scenario())


def test_history_lists_past_runs_without_deprecation_warnings(tmp_path):
    async def scenario() -> None:
        runs, sessions = await manager(tmp_path)
        inbox = Inbox("alice")
        runs.hub.add(inbox)
        try:
            first, _ = await runs.start("alice", StartAgent("echo", "a", "x"))
            await finished(inbox, first)
            history, _ = await runs.start("alice", StartAgent("history", "h", {"limit": 5}))
            events = await finished(inbox, history)
            output = events[-1].payload["output"]
            assert output["count"] == 1 and output["runs"][0]["run_id"] == first
        finally:
            await sessions.close()

    go(scenario())
