"""Prometheus metrics of a service: handshakes by outcome, closes by code, active
connections, startup phase durations, readiness."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Metrics"]


class Metrics:
    """One set of metrics, in its own registry so that several apps (and tests) can coexist."""

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "safeship"):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.handshakes = Counter(
            "websocket_handshakes",
            "WebSocket handshakes by outcome (accepted, or the denial kind).",
            ["outcome"],
            namespace=namespace,
            registry=self.registry,
        )
        self.closes = Counter(
            "websocket_closes",
            "WebSocket closes by close code.",
            ["code"],
            namespace=namespace,
            registry=self.registry,
        )
        self.active = Gauge(
            "websocket_active_connections",
            "Open WebSocket connections.",
            namespace=namespace,
            registry=self.registry,
        )
        self.phase_seconds = Gauge(
            "startup_phase_duration_seconds",
            "Duration of each startup phase.",
            ["phase", "state"],
            namespace=namespace,
            registry=self.registry,
        )
        self.ready = Gauge(
            "ready",
            "1 when the service is ready for traffic.",
            namespace=namespace,
            registry=self.registry,
        )
        self.dependency_failures = Counter(
            "dependency_check_failures",
            "Failed dependency checks by name.",
            ["dependency"],
            namespace=namespace,
            registry=self.registry,
        )

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
