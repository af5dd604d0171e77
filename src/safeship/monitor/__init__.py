"""After the deploy: synthetic probes of every environment, incidents per class with
hysteresis, SLO burn rates, a Prometheus exporter, the analysis endpoint and notifications.

Every decision is ``core.slo``'s (and ``core.notify``'s); this package gathers samples,
feeds them in, and carries out what comes back.
"""

from __future__ import annotations

from .endpoints import Endpoint, TargetView, read_target
from .probing import EndpointProber, Sample
from .scheduler import IncidentEvent, Monitor, MonitorSettings

__all__ = [
    "Endpoint",
    "EndpointProber",
    "IncidentEvent",
    "Monitor",
    "MonitorSettings",
    "Sample",
    "TargetView",
    "read_target",
]
