"""The analysis endpoint's document: the current verdict of one environment or revision, for
Argo Rollouts' Web metric (``jsonPath``) and Flagger's webhooks (HTTP 200 passes, anything
else fails). The shape is documented in docs/monitor.md; ``schema`` versions it.

``phase`` follows Argo's measurement phases: ``Successful`` (HTTP 200), ``Failed`` (503: an
availability or auth incident is open, or an SLO burn alert fires) and ``Inconclusive``
(503: no probe has been judged yet, or the last probes could not run).
"""

from __future__ import annotations

from typing import Any

from ..core.slo import Health, ProbeTracker
from .probing import Sample

__all__ = ["SCHEMA", "analysis"]

SCHEMA = "safeship.analysis/1"


def analysis(
    env: str,
    revision: str | None,
    tracker: ProbeTracker | None,
    last: Sample | None,
    now: float,
) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, document)``."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "env": env,
        "revision": revision,
        "checked_at": round(now, 3),
    }
    if tracker is None or tracker.probes == 0:
        reason = "no probe of it has been judged yet" if last is None else last.detail
        doc.update(
            phase="Inconclusive",
            ok=False,
            value=0,
            health=None,
            reason=reason,
            incidents={},
            burn_rates={},
            burn_alerts=[],
            latency_p95_ms=None,
            probes=0,
            last_probe=None if last is None else last.as_dict(),
        )
        return 503, doc
    summary = dict(tracker.summary(now))
    health = Health(str(summary["health"]))
    failed = health is Health.DOWN or bool(summary["burn_alerts"])
    reasons = [f"{c} incident: {i['detail']}" for c, i in summary["incidents"].items()]
    reasons += list(summary["burn_alerts"])
    doc.update(
        phase="Failed" if failed else "Successful",
        ok=not failed,
        value=0 if failed else 1,
        health=str(health),
        reason="; ".join(reasons) or f"{health}: the last probes pass",
        incidents=summary["incidents"],
        burn_rates=summary["burn_rates"],
        burn_alerts=summary["burn_alerts"],
        latency_p95_ms=summary["latency_p95_ms"],
        probes=summary["probes"],
        last_probe=None if last is None else last.as_dict(),
    )
    return (503 if failed else 200), doc
