"""The monitor's HTTP server: /metrics and the analysis endpoint Argo Rollouts and Flagger read."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from safeship.errors import UsageError
from safeship.monitor.endpoints import Endpoint
from safeship.monitor.probing import EndpointProber
from safeship.monitor.scheduler import Monitor, MonitorSettings
from safeship.monitor.server import MonitorServer

from .conftest import write_manifest


def test_metrics_and_analysis_over_http(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url)
    monitor = Monitor(
        [Endpoint("test", service.url), Endpoint("test", service.url, "r1")],
        {"test": EndpointProber.from_manifest(manifest, "test", {})},
        MonitorSettings.from_manifest(manifest),
    )

    async def scenario() -> dict:
        server = MonitorServer(monitor, "127.0.0.1:0")
        base = await server.start()
        try:
            await monitor.probe_once()
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                replies = {
                    path: await client.get(path)
                    for path in (
                        "/metrics", "/analysis/test", "/analysis/test/r1", "/analysis/test/r9",
                        "/analysis",
                    )
                }  # fmt: skip
        finally:
            await server.stop()
        return replies

    replies = asyncio.run(scenario())
    metrics = replies["/metrics"]
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'safeship_probe_total{check="health",env="test@r1",outcome="ok"} 1.0' in metrics.text
    env = replies["/analysis/test"]
    assert env.status_code == 200
    assert env.json()["phase"] == "Successful" and env.json()["schema"] == "safeship.analysis/1"
    assert replies["/analysis/test/r1"].json()["revision"] == "r1"
    assert replies["/analysis/test/r9"].status_code == 404
    assert set(replies["/analysis"].json()) == {"test", "test@r1"}


def test_a_port_in_use_is_a_clear_error(tmp_path: Path):
    monitor = Monitor([], {}, MonitorSettings())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
            asyncio.run(MonitorServer(monitor, f"127.0.0.1:{port}").start())
