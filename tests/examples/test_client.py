"""The client's bookkeeping, without sockets (its network behaviour is tested end to end)."""

from __future__ import annotations

import asyncio

from agent_service.client import AgentClient, ClientStats
from agent_service.client_stats import failure_category
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response


def event(seq: int, kind: str = "agent_thinking", run_id: str = "run_1", **payload) -> str:
    import json

    return json.dumps(
        {"type": kind, "run_id": run_id, "seq": seq, "timestamp": "t", "payload": payload}
    )


def test_events_are_counted_per_run_with_gaps_and_duplicates():
    async def scenario() -> AgentClient:
        client = AgentClient("ws://unused", lambda: "token")
        for raw in [
            event(1, "agent_started", agent="slow"),
            event(2),
            event(2),  # duplicate
            event(5),  # 3 and 4 lost
            event(6, "agent_completed", output={"steps": 3}),
            event(1, "agent_started", run_id="run_2", agent="failing"),
            event(2, "agent_error", run_id="run_2", code="agent_failed"),
            "not json",
        ]:
            client._on_message(raw)
        return client

    client = asyncio.run(scenario())
    stats = client.stats
    assert (stats.events, stats.duplicates, stats.lost) == (6, 1, 2)
    assert (stats.runs_completed, stats.runs_failed) == (1, 1)
    assert stats.failures["protocol:bad_json"] == 1
    first = client.runs["run_1"].done.result()
    assert first.status == "completed" and first.output == {"steps": 3}
    assert first.types == ["agent_started", "agent_thinking", "agent_thinking", "agent_completed"]
    assert (first.agent, first.last_seq, first.lost, first.duplicates) == ("slow", 6, 2, 1)
    second = client.runs["run_2"].done.result()
    assert second.status == "failed" and second.error == {"code": "agent_failed"}


def test_stats_merge_and_render():
    a, b = ClientStats(events=3), ClientStats(events=4, lost=1)
    a.connects_failed["auth"] += 1
    b.connects_failed["auth"] += 2
    b.closes[1012] += 1
    a.merge(b)
    assert a.events == 7 and a.lost == 1 and a.connects_failed["auth"] == 3
    rendered = a.as_dict()
    assert rendered["connects_failed"] == {"auth": 3} and rendered["closes"] == {"1012": 1}


def test_connection_failures_are_classified_by_verdict_category():
    assert failure_category(InvalidStatus(Response(401, "Unauthorized", []))) == "auth"
    assert failure_category(InvalidStatus(Response(503, "Unavailable", []))) == "not_ready"
    assert failure_category(ConnectionClosedError(Close(4401, "expired"), None)) == "auth"
    assert failure_category(ConnectionClosedError(Close(1013, "not ready"), None)) == "not_ready"
    assert failure_category(ConnectionRefusedError()) == "unreachable"
    assert failure_category(TimeoutError()) == "timeout"
    assert failure_category(ValueError()) == "protocol"
