"""The monitor loop against a real service: incidents per class, history, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from safeship.monitor.endpoints import Endpoint
from safeship.monitor.exporter import Exporter
from safeship.monitor.history import History
from safeship.monitor.probing import EndpointProber
from safeship.monitor.scheduler import Monitor, MonitorSettings
from safeship.testing import scaled

from .conftest import write_manifest


def build(manifest, url, tmp_path: Path, events: list) -> Monitor:
    async def on_incident(event):
        events.append(event)

    return Monitor(
        [Endpoint("test", url)],
        {"test": EndpointProber.from_manifest(manifest, "test", {})},
        MonitorSettings.from_manifest(manifest),
        history=History(tmp_path / "monitor.db", max_age=3600),
        exporter=Exporter(),
        on_incident=on_incident,
    )


def test_an_outage_opens_one_incident_and_its_end_resolves_it(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url)
    events: list = []
    monitor = build(manifest, service.url, tmp_path, events)

    async def scenario() -> None:
        await monitor.probe_once()
        service.set("1011")
        for _ in range(3):
            await monitor.probe_once()
        service.set("ok")
        for _ in range(2):
            await monitor.probe_once()

    asyncio.run(scenario())
    assert [(e.kind, str(e.transition.check)) for e in events] == [
        ("incident_opened", "availability"),
        ("incident_resolved", "availability"),
    ]
    assert "1011" in events[0].transition.detail
    assert monitor.history is not None
    rows = monitor.history.incidents("test")
    assert len(rows) == 1 and rows[0]["resolved"] is not None
    recent = monitor.history.recent("test", 100)
    assert len(recent) == 6
    # Failures keep every check's verdict; passing probes only their outcome (size bound).
    assert ["checks" in r for r in recent] == [False, False, True, True, True, False]
    text = monitor.exporter.render().decode()
    assert 'safeship_probe_total{check="websocket",env="test",outcome="internal_error"} 3.0' in text
    assert 'safeship_incident_open{class="availability",env="test"} 0.0' in text
    assert "safeship_probe_duration_seconds_bucket" in text


def test_analysis_fails_while_an_incident_is_open(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url)
    monitor = build(manifest, service.url, tmp_path, [])
    status, doc = monitor.analysis("test")
    assert status == 503 and doc["phase"] == "Inconclusive"
    asyncio.run(monitor.probe_once())
    status, doc = monitor.analysis("test")
    assert (status, doc["phase"], doc["ok"], doc["value"]) == (200, "Successful", True, 1)
    service.set("1011")
    for _ in range(3):
        asyncio.run(monitor.probe_once())
    status, doc = monitor.analysis("test")
    assert (status, doc["phase"], doc["health"]) == (503, "Failed", "down")
    assert "availability" in doc["incidents"] and "1011" in doc["reason"]
    assert monitor.analysis("nowhere")[0] == 404


def test_the_loop_probes_on_schedule_until_stopped(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url)
    monitor = build(manifest, service.url, tmp_path, [])
    monitor.settings = MonitorSettings(interval=0.05)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        deadline = asyncio.get_running_loop().time() + scaled(10)
        while monitor.trackers["test"].probes < 3:
            assert asyncio.get_running_loop().time() < deadline, "no probes"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, scaled(5))

    asyncio.run(scenario())
    assert monitor.trackers["test"].probes >= 3


def test_history_restores_the_windows_and_forgets_old_probes(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url)
    first = build(manifest, service.url, tmp_path, [])
    for _ in range(3):
        asyncio.run(first.probe_once())
    assert first.history is not None
    first.history.close()
    second = build(manifest, service.url, tmp_path, [])
    assert second.restore() == 3 and second.trackers["test"].probes == 3
    assert second.history is not None
    deleted = second.history.prune(second.clock() + 7200)
    assert deleted == 3 and second.history.recent("test") == []


def test_endpoints_follow_the_target_while_running(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url)
    monitor = build(manifest, service.url, tmp_path, [])
    monitor.settings = MonitorSettings(interval=0.05)
    revision = Endpoint("test", service.url, "r2")

    async def until(predicate) -> None:
        deadline = asyncio.get_running_loop().time() + scaled(10)
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        assert monitor.set_endpoints([Endpoint("test", service.url), revision]) == (["test@r2"], [])
        await until(lambda: monitor.trackers["test@r2"].probes >= 2)
        assert monitor.set_endpoints([Endpoint("test", service.url)]) == ([], ["test@r2"])
        assert "test@r2" not in monitor.trackers and monitor.analysis("test", "r2")[0] == 404
        stop.set()
        await asyncio.wait_for(task, scaled(5))

    asyncio.run(scenario())


def test_a_failing_history_does_not_stop_the_probes(service, tmp_path: Path, caplog):
    manifest = write_manifest(tmp_path, service.url)
    monitor = build(manifest, service.url, tmp_path, [])
    monitor.settings = MonitorSettings(interval=0.05)
    assert monitor.history is not None
    monitor.history.close()  # every write now raises

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        deadline = asyncio.get_running_loop().time() + scaled(10)
        while monitor.trackers["test"].probes < 3:
            assert asyncio.get_running_loop().time() < deadline, "the probes stopped"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, scaled(5))

    asyncio.run(scenario())
    assert "judging a probe of test failed" in caplog.text
