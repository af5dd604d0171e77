"""Two instances of the reference service on one SQLite database, no Redis: resume on another
instance, and a drain (SIGTERM) in the middle of a run."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from safeship.testing import scaled, wait_until_async

from .conftest_agent import agent_services, auth, client  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(40)))


async def recv_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))


def test_resume_on_another_instance_after_the_run_finished_and_while_it_runs(agent_services):  # noqa: F811
    a = agent_services.start()
    b = agent_services.start()

    async def scenario() -> None:
        # Finished meanwhile: B replays it from the database.
        async with connect(a.ws_url + "/ws", additional_headers=auth("mover")) as ws:
            hello = await recv_json(ws)
            await ws.send(
                json.dumps(
                    {"type": "start_agent", "agent": "wordcount", "input": "a b", "request_id": "w"}
                )
            )
            run_id = (await recv_json(ws))["run_id"]
        async with client(a, "mover") as watcher:
            await watcher.resume(run_id, 1)
            await watcher.wait(run_id)
        async with client(b, "mover") as on_b:
            assert on_b.instance != hello["instance"]
            reply = await on_b.resume(run_id, 1)
            assert (reply["status"], reply["replayed"], reply["latest_seq"]) == ("completed", 4, 5)
            result = await on_b.wait(run_id)
            assert [e["seq"] for e in result.events] == [2, 3, 4, 5]
            assert result.types[-1] == "agent_completed"

        # Still running on A: B replays what is stored, then tails the rest as A writes it.
        async with client(a, "mover") as on_a:
            slow = await on_a.start("slow", {"steps": 15, "delay": 0.05})
            await wait_until_async(lambda: on_a.runs[slow].result.last_seq >= 3, within=10)
            last_seen = on_a.runs[slow].result.last_seq
        async with client(b, "mover") as on_b:
            reply = await on_b.resume(slow, last_seen)
            assert reply["status"] == "running"
            result = await on_b.wait(slow, within=scaled(15))
            assert [e["seq"] for e in result.events] == list(range(last_seen + 1, 18))
            assert (on_b.stats.lost, on_b.stats.duplicates) == (0, 0)

    run(scenario())


def test_a_drain_mid_run_loses_nothing_for_a_client_that_moves_to_another_instance(agent_services):  # noqa: F811
    env = {"AGENT_SERVICE_RUN_GRACE": "10"}
    a = agent_services.start(env)
    b = agent_services.start(env)
    target = [a]

    async def scenario() -> None:
        # A load balancer stand-in: new connections go to whichever instance is current.
        c = client(lambda: target[0].ws_url + "/ws", "drained", max_attempts=20)
        async with c:
            run_id = await c.start("slow", {"steps": 30, "delay": 0.05})
            await wait_until_async(lambda: c.runs[run_id].result.last_seq >= 5, within=10)
            target[0] = b
            a.proc.terminate()  # SIGTERM: 1012 to every WebSocket, then runs get their grace
            result = await c.wait(run_id, within=scaled(20))
        assert result.status == "completed"
        assert [e["seq"] for e in result.events] == list(range(1, 33))
        assert c.stats.closes[1012] == 1 and c.stats.reconnects == 1
        assert (c.stats.lost, c.stats.duplicates) == (0, 0)
        assert c.instance is not None and c.instance.split("-")[-2] == str(b.proc.pid)

    run(scenario())
    a.wait_exit(20)  # uvicorn re-raises SIGTERM once shut down: exit status -15
    output = a.output()
    assert "draining 1 connection(s) with close code 1012" in output
    # The run finished on A during its grace, after the client had left for B.
    assert "interrupting" not in output
