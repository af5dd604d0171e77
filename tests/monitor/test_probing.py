"""One monitor probe against a real service: health, an authenticated handshake, a round trip."""

from __future__ import annotations

import asyncio
from pathlib import Path

from safeship.monitor.endpoints import Endpoint
from safeship.monitor.probing import EndpointProber
from safeship.testing import free_port

from .conftest import OTHER_SECRET, write_manifest


def probe(manifest, url):
    prober = EndpointProber.from_manifest(manifest, "test", {})
    return asyncio.run(prober.probe(Endpoint("test", url)))


def test_a_healthy_service_passes_every_check(service, tmp_path: Path):
    sample = probe(write_manifest(tmp_path, service.url), service.url)
    assert sample.ok, sample.as_dict()
    assert sample.checks["health"]["verdict"]["ok"] and sample.checks["websocket"]["verdict"]["ok"]
    assert sample.handshake_ms is not None and sample.handshake_ms > 0


def test_a_token_signed_with_another_secret_is_an_auth_failure(service, tmp_path: Path):
    manifest = write_manifest(tmp_path, service.url, secret_file=OTHER_SECRET)
    sample = probe(manifest, service.url)
    assert (sample.category, sample.code, sample.failed_check) == ("auth", 401, "websocket")
    assert OTHER_SECRET not in str(sample.as_dict())


def test_a_1011_is_an_availability_failure_with_its_error_id(service, tmp_path: Path):
    service.set("1011")
    sample = probe(write_manifest(tmp_path, service.url), service.url)
    assert (sample.category, sample.code) == ("internal_error", 1011)
    assert "e-42" in sample.detail


def test_nothing_listening_is_unreachable(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    sample = probe(write_manifest(tmp_path, url), url)
    assert sample.category == "unreachable" and sample.handshake_ms is None
