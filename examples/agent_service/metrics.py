"""Metrics of the agent service, registered in the service's Prometheus registry
(``ship.metrics.registry``) so that ``/metrics`` shows them next to safeship's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ServiceMetrics"]


class ServiceMetrics:
    """Counters and gauges named ``agent_service_*``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry(auto_describe=True)
        self.registry = registry
        ns = "agent_service"
        self.runs_started = Counter(
            "runs_started",
            "Agent runs started, by agent.",
            ["agent"],
            namespace=ns,
            registry=registry,
        )
        self.runs_finished = Counter(
            "runs_finished",
            "Agent runs finished, by agent and status (completed, failed, interrupted).",
            ["agent", "status"],
            namespace=ns,
            registry=registry,
        )
        self.runs_active = Gauge(
            "runs_active",
            "Agent runs in progress on this instance.",
            namespace=ns,
            registry=registry,
        )
        self.events = Counter(
            "events_emitted",
            "Run events stored and delivered, by type.",
            ["type"],
            namespace=ns,
            registry=registry,
        )
        self.protocol_errors = Counter(
            "protocol_errors",
            "Client messages refused, by error code.",
            ["code"],
            namespace=ns,
            registry=registry,
        )
        self.resumes = Counter(
            "resumes", "Resume requests served.", namespace=ns, registry=registry
        )
        self.backfilled = Counter(
            "events_backfilled",
            "Events sent from the database to fill a gap in a live stream.",
            namespace=ns,
            registry=registry,
        )
        self.remote_events = Counter(
            "remote_events_received",
            "Events of other instances received through the broker.",
            namespace=ns,
            registry=registry,
        )
        self.tail_polls = Counter(
            "remote_run_polls",
            "Database polls for followed runs of other instances that went quiet.",
            namespace=ns,
            registry=registry,
        )
        self.redis_up = Gauge(
            "redis_up",
            "1 while Redis answers (always 0 without REDIS_URL).",
            namespace=ns,
            registry=registry,
        )
        self.redis_outages = Counter(
            "redis_outages", "Times Redis became unreachable.", namespace=ns, registry=registry
        )
        self.redis_dropped = Counter(
            "redis_publish_dropped",
            "Events not published to Redis during an outage (local delivery is unaffected; "
            "other instances fill the gap from the database).",
            namespace=ns,
            registry=registry,
        )
