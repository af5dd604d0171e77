"""The reference service on real uvicorn, SQLite: the protocol, refusals, resume."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from safeship.testing import scaled, wait_until, wait_until_async

from .conftest_agent import agent_server, auth, client, metric  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

FIVE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


async def recv_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))


def test_connect_and_wordcount_emits_the_five_event_types_in_order(agent_server):  # noqa: F811
    async def scenario() -> None:
        async with connect(agent_server.ws_url + "/ws", additional_headers=auth("wc")) as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "connection_established" and hello["user"] == "wc"
            assert "wordcount" in hello["agents"]
            await ws.send(
                json.dumps(
                    {
                        "type": "start_agent",
                        "agent": "wordcount",
                        "input": "to be or not to be",
                        "request_id": "r-1",
                    }
                )
            )
            events = [await recv_json(ws) for _ in range(5)]
        assert [e["type"] for e in events] == FIVE
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
        assert len({e["run_id"] for e in events}) == 1
        assert all(set(e) >= {"run_id", "seq", "type", "timestamp", "payload"} for e in events)
        assert events[0]["request_id"] == "r-1"
        assert events[2]["payload"]["tool"] == "count_words"
        assert events[4]["payload"]["output"] == {"words": 6, "characters": 18, "unique": 4}

    run(scenario())


BAD_INPUTS = [
    ("{oops", "invalid_json", None),
    ("[]", "invalid_message", None),
    (json.dumps({"type": "fly", "request_id": "q1"}), "unknown_type", "q1"),
    (json.dumps({"type": "start_agent", "request_id": "q2"}), "missing_field", "q2"),
    (
        json.dumps({"type": "start_agent", "agent": "nope", "request_id": "q3"}),
        "unknown_agent",
        "q3",
    ),
    (
        json.dumps({"type": "resume", "run_id": "run_unknown", "last_seq": 0, "request_id": "q4"}),
        "unknown_run",
        "q4",
    ),
    (json.dumps({"type": "resume", "run_id": "r", "last_seq": -2}), "invalid_field", None),
    (json.dumps({"type": "ping", "pad": "x" * 20_000}), "message_too_large", None),
]


def test_bad_inputs_get_an_error_code_and_the_connection_stays_open(agent_server):  # noqa: F811
    async def scenario() -> None:
        async with connect(agent_server.ws_url + "/ws", additional_headers=auth("bad")) as ws:
            await recv_json(ws)
            for text, code, request_id in BAD_INPUTS:
                await ws.send(text)
                reply = await recv_json(ws)
                assert reply["type"] == "error", (text[:40], reply)
                assert reply["code"] == code, (text[:40], reply)
                assert reply.get("request_id") == request_id
                assert reply["detail"]
            await ws.send(b"\x00binary")
            assert (await recv_json(ws))["code"] == "invalid_message"

            # A resume with a seq from the future, for a run that exists.
            await ws.send(
                json.dumps(
                    {"type": "start_agent", "agent": "echo", "input": "x", "request_id": "e"}
                )
            )
            events = [await recv_json(ws) for _ in range(3)]
            run_id = events[0]["run_id"]
            await ws.send(
                json.dumps({"type": "resume", "run_id": run_id, "last_seq": 99, "request_id": "f"})
            )
            reply = await recv_json(ws)
            assert (reply["code"], reply["request_id"]) == ("seq_from_future", "f")
            assert "seq 3" in reply["detail"]

            await ws.send(json.dumps({"type": "ping", "request_id": "still-here"}))
            assert (await recv_json(ws))["type"] == "pong"

        # Another user cannot see, let alone resume, that run.
        async with connect(agent_server.ws_url + "/ws", additional_headers=auth("mallory")) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "resume", "run_id": run_id, "last_seq": 0}))
            assert (await recv_json(ws))["code"] == "unknown_run"

    run(scenario())
    assert metric(agent_server, 'agent_service_protocol_errors_total{code="invalid_json"}') >= 1


def test_a_frame_over_the_guard_limit_closes_with_1009_and_the_service_survives(agent_server):  # noqa: F811
    async def scenario() -> None:
        async with connect(
            agent_server.ws_url + "/ws", additional_headers=auth("big"), max_size=None
        ) as ws:
            await recv_json(ws)
            await ws.send("x" * 200_000)
            with pytest.raises(ConnectionClosed) as exc:
                await recv_json(ws)
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1009
        async with client(agent_server, "big") as again:
            assert (await again.run("echo", "fine")).output == "fine"

    run(scenario())


def test_a_failing_agent_ends_its_run_and_the_connection_stays_healthy(agent_server):  # noqa: F811
    async def scenario() -> str:
        async with client(agent_server, "fails") as c:
            result = await c.run("failing")
            assert result.status == "failed"
            assert result.types == ["agent_started", "agent_thinking", "agent_error"]
            assert result.error and result.error["code"] == "agent_failed"
            await c.ping()
            assert (await c.run("wordcount", "still works")).status == "completed"
            return result.error["error_id"]

    error_id = run(scenario())
    # The traceback is in the server log under the id the client was given.
    wait_until(lambda: f"(error id {error_id})" in agent_server.output(), timeout=5)


def test_resume_after_a_drop_mid_run_gets_every_event_once_in_order(agent_server):  # noqa: F811
    async def scenario() -> None:
        async with client(agent_server, "dropper") as c:
            run_id = await c.start("slow", {"steps": 20, "delay": 0.05})
            await wait_until_async(lambda: c.runs[run_id].result.last_seq >= 4, within=10)
            c.drop()  # no close frame: the client sees 1006, reconnects, resumes
            result = await c.wait(run_id, within=scaled(20))
            assert result.status == "completed"
            assert [e["seq"] for e in result.events] == list(range(1, 23))
            assert (c.stats.lost, c.stats.duplicates) == (0, 0)
            assert c.stats.reconnects == 1 and c.stats.resumes == 1 and c.stats.closes[1006] == 1

    run(scenario())


def test_resume_after_the_run_finished_replays_what_was_missed(agent_server):  # noqa: F811
    async def scenario() -> None:
        url = agent_server.ws_url + "/ws"
        async with connect(url, additional_headers=auth("late")) as ws:
            await recv_json(ws)
            await ws.send(
                json.dumps(
                    {
                        "type": "start_agent",
                        "agent": "slow",
                        "input": {"steps": 6, "delay": 0.05},
                        "request_id": "s",
                    }
                )
            )
            first = [await recv_json(ws) for _ in range(2)]
        run_id = first[0]["run_id"]
        # Gone while the run finishes; a second connection of the user shows when it is done.
        async with client(agent_server, "late") as watcher:
            await watcher.resume(run_id, 0)
            await watcher.wait(run_id, within=scaled(10))
        async with connect(url, additional_headers=auth("late")) as ws:
            await recv_json(ws)
            await ws.send(
                json.dumps({"type": "resume", "run_id": run_id, "last_seq": 2, "request_id": "r"})
            )
            rest = [await recv_json(ws) for _ in range(6)]
            resumed = await recv_json(ws)
        assert [e["seq"] for e in rest] == [3, 4, 5, 6, 7, 8]
        assert rest[-1]["type"] == "agent_completed"
        assert resumed == {
            "type": "resumed", "run_id": run_id, "from_seq": 2, "replayed": 6, "latest_seq": 8,
            "status": "completed", "request_id": "r",
        }  # fmt: skip

    run(scenario())


def test_every_connection_of_a_user_receives_a_new_run(agent_server):  # noqa: F811
    async def scenario() -> None:
        async with client(agent_server, "twotabs") as tab1, client(agent_server, "twotabs") as tab2:
            run_id = await tab1.start("wordcount", "a b c")
            result1 = await tab1.wait(run_id)
            await wait_until_async(
                lambda: run_id in tab2.runs and tab2.runs[run_id].done.done(), within=10
            )
            result2 = tab2.runs[run_id].done.result()
            assert result1.types == result2.types == FIVE

    run(scenario())


def test_user_messages_and_idempotent_starts(agent_server):  # noqa: F811
    async def scenario() -> None:
        async with client(agent_server, "chat") as c:
            run_id = await c.start("echo", {"text": "hello", "turns": 1})
            await c.send_message(run_id, "how are you?")
            result = await c.wait(run_id)
            assert result.types == [
                "agent_started",
                "agent_thinking",
                "user_message",
                "agent_thinking",
                "agent_completed",
            ]
            assert result.events[3]["payload"]["echo"] == "how are you?"
            with pytest.raises(Exception, match="run_finished"):
                await c.send_message(run_id, "too late")

        url = agent_server.ws_url + "/ws"
        start = json.dumps(
            {"type": "start_agent", "agent": "echo", "input": "once", "request_id": "same"}
        )
        async with connect(url, additional_headers=auth("idem")) as ws:
            await recv_json(ws)
            await ws.send(start)
            first = [await recv_json(ws) for _ in range(3)]
            await ws.send(start)  # a retry: the same run is replayed, none started
            again = [await recv_json(ws) for _ in range(4)]
        assert [e["run_id"] for e in again[:3]] == [first[0]["run_id"]] * 3
        assert again[0]["request_id"] == "same" and again[3]["type"] == "resumed"

    run(scenario())


def test_history_info_and_metrics(agent_server):  # noqa: F811
    async def scenario() -> dict:
        async with client(agent_server, "historian") as c:
            await c.run("echo", "one")
            return (await c.run("history", {"limit": 5})).output

    output = run(scenario())
    assert output["count"] == 1 and output["runs"][0]["agent"] == "echo"
    info = httpx.get(agent_server.url + "/info").json()
    assert info["broker"] == {"broker": "memory"} and "history" in info["agents"]
    assert metric(agent_server, 'agent_service_runs_started_total{agent="history"}') >= 1
    assert metric(agent_server, 'agent_service_events_emitted_total{type="agent_completed"}') >= 2
    ready = httpx.get(agent_server.url + "/health/ready").json()
    assert ready["status"] == "ready" and ready["checks"]["database"]["ok"] is True
