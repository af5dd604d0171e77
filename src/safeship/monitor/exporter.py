"""The monitor's Prometheus metrics, on a registry of their own (never the process default, so
a monitor embedded in another process exports only what it owns).

- ``safeship_probe_total{env,check,outcome}``: probes by check (``health``, ``websocket``)
  and outcome (the verdict category: ``ok``, ``auth``, ``timeout``, ...).
- ``safeship_probe_duration_seconds{env,check}``: how long each check took.
- ``safeship_incident_open{env,class}``: 1 while an incident of that class is open.
- ``safeship_slo_burn_rate{env,window}``: error ratio over the window divided by the error
  budget; absent until the window is covered.

``env`` is the endpoint's key: ``staging``, or ``staging@r3`` for a revision's own URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..core.slo import CheckClass, format_window
from .probing import Sample

__all__ = ["CONTENT_TYPE", "Exporter"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Exporter:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.probes = Counter(
            "safeship_probe",
            "Monitor probes by check and outcome (the verdict category).",
            ["env", "check", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "safeship_probe_duration_seconds",
            "Duration of each monitor check.",
            ["env", "check"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.incident = Gauge(
            "safeship_incident_open",
            "1 while an incident of this class is open for the environment.",
            ["env", "class"],
            registry=self.registry,
        )
        self.burn = Gauge(
            "safeship_slo_burn_rate",
            "Error ratio over the window divided by the SLO's error budget.",
            ["env", "window"],
            registry=self.registry,
        )

    def observe(self, sample: Sample) -> None:
        env = sample.endpoint.key
        for check, data in sample.checks.items():
            self.probes.labels(env, check, data["verdict"]["category"]).inc()
            total = data["timings"].get("total")
            if total is not None:
                self.duration.labels(env, check).observe(total / 1000.0)

    def set_state(
        self, env: str, open_classes: set[CheckClass], rates: Mapping[float, float | None]
    ) -> None:
        for check in CheckClass:
            self.incident.labels(env, str(check)).set(1 if check in open_classes else 0)
        for window, rate in rates.items():
            label = format_window(window)
            if rate is None:
                with contextlib.suppress(KeyError):
                    self.burn.remove(env, label)
            else:
                self.burn.labels(env, label).set(rate)

    def render(self) -> bytes:
        return generate_latest(self.registry)
