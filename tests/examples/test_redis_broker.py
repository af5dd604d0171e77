"""The Redis broker against real Redis: the shared one on 6379 (own channel per test), and a
throwaway ``redis-server`` for outages."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from agent_service.errors import CacheUnavailable
from agent_service.metrics import ServiceMetrics
from agent_service.protocol import Event
from agent_service.redis_broker import RedisBroker

from safeship.testing import free_port, scaled, wait_until_async

from .redis_server import redis_server

pytestmark = pytest.mark.e2e

SHARED_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Receiver:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.commands: list[dict] = []

    async def start(self, broker: RedisBroker) -> RedisBroker:
        await broker.start(self.events.append, self.commands.append, deadline=5)
        return broker


def event(seq: int, run_id: str = "run_1") -> Event:
    return Event(run_id, seq, "agent_thinking", float(seq), {"step": seq}, user="alice")


def go(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


def test_events_reach_the_other_instance_in_order_and_never_come_back():
    channel = "agent_service_test_" + os.urandom(4).hex()

    async def scenario() -> None:
        got_a, got_b = Receiver(), Receiver()
        a = await got_a.start(RedisBroker(url=SHARED_REDIS, instance="A", channel=channel))
        b = await got_b.start(RedisBroker(url=SHARED_REDIS, instance="B", channel=channel))
        try:
            for seq in range(1, 51):
                a.publish(event(seq))
            await wait_until_async(lambda: len(got_b.events) == 50, within=10)
            assert [e.seq for e in got_b.events] == list(range(1, 51))
            assert got_b.events[0] == event(1)
            assert got_a.events == []
            command = {"type": "user_message", "run_id": "run_1", "user": "alice", "text": "hi"}
            assert b.forward(command) is True
            await wait_until_async(lambda: got_a.commands == [command], within=10)
            assert got_b.commands == []
            assert a.status() == {"broker": "redis", "redis": "127.0.0.1:6379", "up": True}
        finally:
            await a.close()
            await b.close()

    go(scenario())


def test_an_unreachable_redis_at_startup_names_the_host():
    port = free_port()

    async def scenario() -> None:
        await RedisBroker(url=f"redis://127.0.0.1:{port}/0", instance="A").start(
            lambda e: None, lambda c: None, deadline=2
        )

    with pytest.raises(CacheUnavailable) as exc:
        go(scenario())
    assert f"127.0.0.1:{port}" in str(exc.value)
    assert "REDIS_URL" in (exc.value.hint or "")


def test_an_outage_is_logged_once_counted_and_publishing_resumes(caplog):
    caplog.set_level(logging.WARNING, logger="agent_service.redis")
    metrics = ServiceMetrics()

    samples = {
        "up": "agent_service_redis_up",
        "outages": "agent_service_redis_outages_total",
        "dropped": "agent_service_redis_publish_dropped_total",
    }

    def value(name: str) -> float:
        return metrics.registry.get_sample_value(samples[name]) or 0.0

    with redis_server() as server:

        async def scenario() -> None:
            got_b = Receiver()
            a = await Receiver().start(
                RedisBroker(
                    url=server.url, instance="A", metrics=metrics, timeout=0.5, max_backoff=0.2
                )
            )
            b = await got_b.start(
                RedisBroker(url=server.url, instance="B", timeout=0.5, max_backoff=0.2)
            )
            try:
                a.publish(event(1))
                await wait_until_async(lambda: len(got_b.events) == 1, within=10)
                assert value("up") == 1

                await asyncio.to_thread(server.stop)
                for seq in range(2, 22):
                    a.publish(event(seq))
                    await asyncio.sleep(0.01)
                await wait_until_async(lambda: value("dropped") >= 20, within=10)
                assert value("outages") == 1 and value("up") == 0
                assert a.forward({"type": "user_message"}) is False

                await asyncio.to_thread(server.start)
                await wait_until_async(lambda: a.status()["up"] and value("up") == 1, within=10)
                # B resubscribes on its own; publish until it hears again.
                seq = 100

                async def heard() -> bool:
                    nonlocal seq
                    seq += 1
                    a.publish(event(seq))
                    await asyncio.sleep(0.05)
                    return any(e.seq > 100 for e in got_b.events)

                await wait_until_async(heard, within=10)
                assert value("outages") == 1
            finally:
                await a.close()
                await b.close()

        go(scenario())

    unreachable = [r for r in caplog.records if "is unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "is back after" in r.getMessage()]
    # One outage, one line each way per broker (A publishes, B only subscribes): never per event.
    assert 1 <= len(unreachable) <= 2 and 1 <= len(back) <= 2, [
        r.getMessage() for r in caplog.records
    ]
