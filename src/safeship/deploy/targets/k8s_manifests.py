"""Kubernetes objects for a revision, and what the API's answers mean: pure functions on dicts.

Building a request is kept apart from sending it (``kubernetes.py`` sends these thinly), so
every field that matters for WebSockets is tested without a socket:

- probes on ``/health/startup``, ``/health/ready`` and ``/health/live``;
- a ``preStop`` sleep, so the endpoints controller and the proxies take the pod out of
  rotation before the service gets SIGTERM and starts closing WebSockets with 1012;
- ``terminationGracePeriodSeconds`` covering that sleep, the drain window and a grace
  (the preStop hook runs inside the grace period, not before it);
- ``maxUnavailable: 0`` in the rollout strategy and the PodDisruptionBudget;
- secrets only by reference (``envFrom: secretRef``), never as literal values;
- ``terminationMessagePolicy: FallbackToLogsOnError``, so a crash's termination message is
  the service's ``startup_failed`` line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...core.startup import startup_failed_event
from .base import RevisionStatus, StartFailure

__all__ = [
    "LABEL_APP",
    "LABEL_REVISION",
    "MANAGED_BY",
    "Workload",
    "backend_refs",
    "deployment",
    "endpoints_only",
    "grace_period",
    "pod_disruption_budget",
    "revision_number",
    "revision_status",
    "service",
    "standalone",
    "start_failure",
]

LABEL_APP = "app"
LABEL_REVISION = "revision"
MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_CREATED = "safeship.dev/created"
ANNOTATION_TRAFFIC = "safeship.dev/traffic"
ANNOTATION_LAST = "safeship.dev/last-revision"
ANNOTATION_OWNER = "safeship.dev/started-by"
"""``HOST/PID/START``: the process that started the revision, so a later command on the same
host can tell a revision left behind by a killed deploy from one a running deploy verifies."""
# Reasons a container waits with that mean it will not start without a change.
_STUCK = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Workload:
    """What every revision of the service runs with (from ``[deploy.kubernetes]``)."""

    service: str
    namespace: str
    image: str
    port: int = 8000
    replicas: int = 1
    secret: str | None = None
    """The Secret every key of which becomes an environment variable (``envFrom``)."""
    drain_seconds: float = 10.0
    grace_seconds: float = 10.0
    pre_stop_seconds: int = 5
    health_prefix: str = "/health"
    service_type: str = "ClusterIP"
    env: Mapping[str, str] = field(default_factory=dict)
    """Plain, non-secret variables (``SAFESHIP_ENV``...)."""
    args: tuple[str, ...] = ()


def grace_period(workload: Workload) -> int:
    """``terminationGracePeriodSeconds``: the preStop sleep, the drain window and a grace.

    The kubelet starts the grace period when the pod is deleted, and the preStop hook runs
    inside it, so the sleep must be counted or it would eat the drain window."""
    return math.ceil(workload.pre_stop_seconds + workload.drain_seconds + workload.grace_seconds)


def _labels(workload: Workload, revision: str | None) -> dict[str, str]:
    labels = {LABEL_APP: workload.service, MANAGED_BY: "safeship"}
    if revision is not None:
        labels[LABEL_REVISION] = revision
    return labels


def _probe(workload: Workload, path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": f"{workload.health_prefix}/{path}", "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def deployment(
    workload: Workload,
    revision: str | None,
    *,
    created: float | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """The Deployment ``SVC-rN`` (labels ``app=SVC, revision=rN``), one container; with no
    revision, the Deployment ``SVC`` for teams that roll out with their own tools."""
    name = f"{workload.service}-{revision}" if revision else workload.service
    labels = _labels(workload, revision)
    env = [{"name": k, "value": v} for k, v in sorted(workload.env.items())]
    if revision:
        env.append({"name": "SAFESHIP_REVISION", "value": revision})
    container: dict[str, Any] = {
        "name": "service",
        "image": workload.image,
        "ports": [{"name": "http", "containerPort": workload.port}],
        "env": env,
        # Startup may take a while (migrations, warm-up): 60 x 2 s before liveness counts.
        "startupProbe": _probe(workload, "startup", 2, 60),
        "readinessProbe": _probe(workload, "ready", 2, 1),
        "livenessProbe": _probe(workload, "live", 10, 3),
        "lifecycle": {"preStop": {"sleep": {"seconds": workload.pre_stop_seconds}}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if workload.args:
        container["args"] = list(workload.args)
    if workload.secret:
        container["envFrom"] = [{"secretRef": {"name": workload.secret}}]
    annotations = {} if created is None else {ANNOTATION_CREATED: f"{created:.3f}"}
    if owner is not None:
        annotations[ANNOTATION_OWNER] = owner
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": workload.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": {k: v for k, v in labels.items() if k != MANAGED_BY}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": grace_period(workload),
                    "containers": [container],
                },
            },
        },
    }


def service(workload: Workload, revision: str | None, *, name: str | None = None) -> dict[str, Any]:
    """A Service selecting one revision: ``SVC-rN`` (its own) or the stable ``SVC``."""
    selector = {LABEL_APP: workload.service, LABEL_REVISION: revision or ""}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name or (f"{workload.service}-{revision}" if revision else workload.service),
            "namespace": workload.namespace,
            "labels": _labels(workload, revision if name is None else None),
        },
        "spec": {
            "type": workload.service_type,
            "selector": selector,
            "ports": [{"name": "http", "port": workload.port, "targetPort": "http"}],
        },
    }


def pod_disruption_budget(workload: Workload) -> dict[str, Any]:
    """Voluntary evictions (node drains) take one pod at a time, each through its preStop
    and drain. Not 0: a budget that allows no eviction blocks every node drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": workload.service, "namespace": workload.namespace},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {LABEL_APP: workload.service}}},
    }


def standalone(workload: Workload) -> list[dict[str, Any]]:
    """What ``safeship k8s render`` prints: the Deployment, Service and PodDisruptionBudget
    ``SVC``, for teams that apply manifests themselves (kubectl, Argo CD, Argo Rollouts)."""
    stable = service(workload, None, name=workload.service)
    stable["spec"]["selector"] = {LABEL_APP: workload.service}  # every pod of the app
    return [deployment(workload, None), stable, pod_disruption_budget(workload)]


def backend_refs(
    workload: Workload, new: str, old: str | None, percent: int
) -> list[dict[str, Any]]:
    """An HTTPRoute rule's ``backendRefs``: ``percent`` of new requests to ``new``."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    refs = [{"name": f"{workload.service}-{new}", "port": workload.port, "weight": percent}]
    if old is not None and percent < 100:
        refs.append(
            {"name": f"{workload.service}-{old}", "port": workload.port, "weight": 100 - percent}
        )
    return refs


def revision_number(names: Iterable[str]) -> int:
    """The next N for ``rN``, after every revision label seen."""
    numbers = [int(n[1:]) for n in names if n.startswith("r") and n[1:].isdigit()]
    return max(numbers, default=0) + 1


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return statuses[0]


def start_failure(pods: Iterable[Mapping[str, Any]]) -> StartFailure | None:
    """Why a revision's pods will not start, from their container statuses; ``None`` while
    none is stuck. A crash's termination message is the service's ``startup_failed`` line
    when it printed one (``FallbackToLogsOnError`` puts the log's tail there)."""
    for pod in pods:
        status = _container_status(pod)
        waiting = status.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason not in _STUCK:
            continue
        terminated = status.get("lastState", {}).get("terminated") or {}
        code = terminated.get("exitCode")
        message = str(terminated.get("message") or "").strip()
        lines = tuple(line for line in message.splitlines() if line.strip())
        event = startup_failed_event(lines)
        name = pod.get("metadata", {}).get("name", "?")
        if event is not None:
            error = str(event.get("error") or "startup failed")
            return StartFailure(
                f"{reason}: {error}", event.get("phase"), event.get("hint"), code, lines
            )
        detail = lines[-1] if lines else str(waiting.get("message") or "no message")
        hint = (
            f"kubectl -n {pod.get('metadata', {}).get('namespace', 'NS')} logs {name} --previous"
            if reason == "CrashLoopBackOff"
            else f"kubectl describe pod {name}"
        )
        return StartFailure(f"{reason}: {detail}", None, hint, code, lines)
    return None


def available(deployment_obj: Mapping[str, Any]) -> bool:
    spec, status = deployment_obj.get("spec", {}), deployment_obj.get("status") or {}
    wanted = max(1, int(spec.get("replicas", 1) or 0))
    return int(status.get("availableReplicas") or 0) >= wanted


def revision_status(
    deployment_obj: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> tuple[RevisionStatus, StartFailure | None]:
    """A revision's status from its Deployment and pods."""
    pods = list(pods)
    meta = deployment_obj.get("metadata", {})
    traffic = ANNOTATION_TRAFFIC in (meta.get("annotations") or {})
    if meta.get("deletionTimestamp") or deployment_obj.get("spec", {}).get("replicas") == 0:
        return (RevisionStatus.DRAINING if pods else RevisionStatus.STOPPED), None
    failure = start_failure(pods)
    if failure is not None:
        return (RevisionStatus.EXITED if traffic else RevisionStatus.FAILED), failure
    if available(deployment_obj):
        return RevisionStatus.RUNNING, None
    return RevisionStatus.STARTING, None


def endpoints_only(
    slices: Iterable[Mapping[str, Any]], pod_names: Iterable[str]
) -> tuple[bool, str]:
    """Whether the EndpointSlices list only the given pods, at least one of them ready; and
    what they list, in words, for an error that says why a switch is not confirmed."""
    wanted = set(pod_names)
    listed, ready = [], 0
    for item in slices:
        for endpoint in item.get("endpoints") or ():
            name = (endpoint.get("targetRef") or {}).get("name", "?")
            listed.append(name)
            if name in wanted and (endpoint.get("conditions") or {}).get("ready", True):
                ready += 1
    others = sorted(set(listed) - wanted)
    ok = ready > 0 and not others
    return (
        ok,
        f"ready pods of the revision: {ready}; other pods listed: {', '.join(others) or 'none'}",
    )
