"""Two instances of the reference service with real Redis and PostgreSQL: fan-out, commands
through another instance, and a Redis outage in the middle of a run."""

from __future__ import annotations

import asyncio
import os

import pytest

from safeship.testing import scaled, wait_until, wait_until_async

from ..examples.redis_server import redis_server
from .conftest_agent import SHARED_REDIS, agent_services, client, metric  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(40)))


def test_a_run_on_instance_a_reaches_the_users_connection_on_instance_b(agent_services):  # noqa: F811
    env = {
        **agent_services.postgres(),
        "REDIS_URL": SHARED_REDIS,
        "AGENT_SERVICE_REDIS_CHANNEL": "agent_service_test_" + os.urandom(4).hex(),
        # No database tailing within the test: what B gets, it gets through Redis.
        "AGENT_SERVICE_TAIL_INTERVAL": "60",
    }
    a = agent_services.start(env)
    b = agent_services.start(env)

    async def scenario() -> None:
        async with client(b, "fan") as on_b, client(a, "fan") as on_a:
            assert on_a.instance != on_b.instance
            run_id = await on_a.start("slow", {"steps": 20, "delay": 0.01})
            mine = await on_a.wait(run_id)
            await wait_until_async(
                lambda: run_id in on_b.runs and on_b.runs[run_id].done.done(), within=10
            )
            theirs = on_b.runs[run_id].done.result()
            assert (
                [e["seq"] for e in theirs.events]
                == [e["seq"] for e in mine.events]
                == list(range(1, 23))
            )
            assert theirs.events == mine.events
            assert (on_b.stats.lost, on_b.stats.duplicates) == (0, 0)

            # A user_message sent through B reaches the run on A (a command over Redis).
            chat = await on_a.start("echo", {"text": "hi", "turns": 1})
            await wait_until_async(lambda: chat in on_b.runs, within=10)
            await on_b.send_message(chat, "from b")
            result = await on_a.wait(chat)
            assert result.types[2:] == ["user_message", "agent_thinking", "agent_completed"]
            assert result.events[3]["payload"]["echo"] == "from b"

    run(scenario())
    assert metric(b, "agent_service_remote_events_received_total") >= 22
    assert metric(b, "agent_service_remote_run_polls_total") == 0


def test_redis_going_away_mid_run_loses_nothing_and_is_logged_once(agent_services):  # noqa: F811
    with redis_server() as redis:
        env = {
            **agent_services.postgres(),
            "REDIS_URL": redis.url,
            "AGENT_SERVICE_TAIL_INTERVAL": "0.2",
        }
        a = agent_services.start(env)
        b = agent_services.start(env)

        async def scenario() -> None:
            async with client(a, "outage") as on_a, client(b, "outage") as on_b:
                run_id = await on_a.start("slow", {"steps": 40, "delay": 0.03})
                await wait_until_async(
                    lambda: on_b.runs.get(run_id) and on_b.runs[run_id].result.last_seq >= 3,
                    within=10,
                )
                await asyncio.to_thread(redis.stop)
                local = await on_a.wait(run_id, within=scaled(15))
                assert [e["seq"] for e in local.events] == list(range(1, 43))
                assert (on_a.stats.lost, on_a.stats.duplicates) == (0, 0)
                # B follows the run too: it fills the gap from the database.
                remote = await on_b.wait(run_id, within=scaled(15))
                assert remote.events == local.events
                assert (on_b.stats.lost, on_b.stats.duplicates) == (0, 0)

        run(scenario())
        assert metric(a, "agent_service_redis_outages_total") == 1
        assert metric(a, "agent_service_redis_up") == 0
        assert metric(a, "agent_service_redis_publish_dropped_total") >= 1
        # Readiness does not depend on Redis: local delivery still works.
        assert metric(a, "safeship_ready") == 1

        redis.start()
        wait_until(lambda: metric(a, "agent_service_redis_up") == 1, timeout=15, interval=0.1)
        wait_until(lambda: "publishing resumed" in a.output(), timeout=5)
        assert a.output().count("is unreachable") == 1
        assert metric(a, "agent_service_redis_outages_total") == 1
