"""The ``deploy-config`` gate: the platform settings a WebSocket service needs.

A service can pass every other gate and still fail its users on the platform: a TCP startup
probe sends traffic before the phases finish, a request timeout shorter than a session cuts
every long connection, HTTP/2 end-to-end breaks the WebSocket upgrade. This gate reads the
service's platform configuration and blocks on each such setting, naming the field and the
fix.

- **Cloud Run:** the service YAML at ``[deploy.cloudrun] service_yaml`` (what ``gcloud run
  services replace`` takes, and ``safeship cloudrun render`` prints), checked by
  :func:`check_cloudrun`, a pure function of the parsed document.
- **The local target:** its own settings in the manifest (:func:`check_local`).
- **Kubernetes:** the manifests at ``[deploy.kubernetes] manifests``, checked by
  ``safeship.gates.deploy_config_k8s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Manifest
from .model import Finding, GateResult, Tier
from .runner import CheckContext, result_from_findings

__all__ = [
    "CLOUD_RUN_MAX_TIMEOUT",
    "CLOUD_RUN_SIGTERM_GRACE",
    "DeployConfigGate",
    "check_cloudrun",
    "check_local",
]

GATE = "deploy-config"
CLOUD_RUN_SIGTERM_GRACE = 10.0
"""Seconds Cloud Run waits between SIGTERM and SIGKILL when it retires an instance."""
CLOUD_RUN_MAX_TIMEOUT = 3600
CLOUD_RUN_DEFAULT_TIMEOUT = 300
_AFFINITY = "run.googleapis.com/sessionAffinity"
_CONTAINER = "spec.template.spec.containers[0]"


def _finding(
    rule: str, field: str, message: str, fix: str, *, path: str | None, blocking: bool = True
) -> Finding:
    return Finding(
        gate=GATE,
        rule=rule,
        message=f"{field}: {message}",
        tier=Tier.ERROR if blocking else Tier.WARNING,
        path=path,
        hint=fix,
        symbol=field,
        blocking=blocking,
    )


def field_at(doc: Any, *keys: str | int) -> Any:
    """The value at ``keys`` in a parsed YAML document, or None where any step is missing."""
    for key in keys:
        if isinstance(key, int):
            doc = doc[key] if isinstance(doc, list) and len(doc) > key else None
        else:
            doc = doc.get(key) if isinstance(doc, Mapping) else None
    return doc


def _probe_path(probe: Any) -> str | None:
    path = field_at(probe, "httpGet", "path")
    return path if isinstance(path, str) else None


def check_cloudrun(
    doc: dict[str, Any], manifest: Manifest, *, path: str | None = None
) -> list[Finding]:
    """Findings on a Cloud Run service YAML (Knative ``serving.knative.dev/v1`` Service).

    Args:
        doc: the parsed YAML document.
        manifest: where the health prefix, the drain window, the longest session and the need
            for session affinity come from.
        path: the YAML's path, for the findings.
    """
    findings: list[Finding] = []
    service, deploy = manifest.service, manifest.deploy
    prefix = service.health_prefix.rstrip("/")
    container = field_at(doc, "spec", "template", "spec", "containers", 0)
    if not isinstance(container, Mapping):
        return [
            _finding(
                "cloudrun-no-container", _CONTAINER, "the service YAML names no container",
                "use `safeship cloudrun render` for a complete service YAML", path=path,
            )
        ]  # fmt: skip

    startup = container.get("startupProbe")
    field = f"{_CONTAINER}.startupProbe"
    if startup is None or "tcpSocket" in (startup or {}):
        what = "is TCP" if startup else "is not set, so Cloud Run uses its default TCP probe"
        findings.append(_finding(
            "startup-probe-tcp", field,
            f"the startup probe {what}: traffic arrives as soon as the port listens, before "
            "the startup phases finish",
            f"startupProbe: {{httpGet: {{path: {prefix}/startup}}, periodSeconds: 1, "
            "failureThreshold: 60}", path=path,
        ))  # fmt: skip
    elif _probe_path(startup) != f"{prefix}/startup":
        findings.append(_finding(
            "startup-probe-path", f"{field}.httpGet.path",
            f"the startup probe asks {_probe_path(startup) or 'no HTTP path'}, not "
            f"{prefix}/startup, which answers 200 only once every phase succeeded",
            f"set startupProbe.httpGet.path to {prefix}/startup", path=path,
        ))  # fmt: skip

    liveness = container.get("livenessProbe")
    if _probe_path(liveness) != f"{prefix}/live":
        got = (
            "is not set" if liveness is None else f"asks {_probe_path(liveness) or 'no HTTP path'}"
        )
        findings.append(_finding(
            "liveness-probe", f"{_CONTAINER}.livenessProbe",
            f"the liveness probe {got}: a wedged instance is never restarted",
            f"livenessProbe: {{httpGet: {{path: {prefix}/live}}, periodSeconds: 10}}",
            path=path,
        ))  # fmt: skip

    timeout = field_at(doc, "spec", "template", "spec", "timeoutSeconds")
    seconds = timeout if isinstance(timeout, int | float) else CLOUD_RUN_DEFAULT_TIMEOUT
    longest = service.longest_session_seconds
    if seconds < longest:
        shown = f"{timeout}" if timeout is not None else f"unset (Cloud Run's {seconds} s)"
        findings.append(_finding(
            "request-timeout", "spec.template.spec.timeoutSeconds",
            f"the request timeout is {shown}, shorter than the longest expected session "
            f"({longest:g} s, [service] longest_session_seconds): Cloud Run cuts every "
            "WebSocket at the timeout",
            f"timeoutSeconds: {min(CLOUD_RUN_MAX_TIMEOUT, int(longest))} (at most "
            f"{CLOUD_RUN_MAX_TIMEOUT}; clients must reconnect past it)", path=path,
        ))  # fmt: skip

    affinity = str(field_at(doc, "spec", "template", "metadata", "annotations", _AFFINITY)).lower()
    if service.needs_session_affinity and affinity != "true":
        findings.append(_finding(
            "session-affinity", f"spec.template.metadata.annotations.{_AFFINITY}",
            "session affinity is off, but tickets or resume need the same instance "
            "([service] needs_session_affinity)",
            f"set the annotation {_AFFINITY}: 'true' (or keep tickets and resume state in "
            "Redis or the database and set needs_session_affinity = false)", path=path,
        ))  # fmt: skip

    for index, port in enumerate(container.get("ports") or []):
        if isinstance(port, Mapping) and port.get("name") == "h2c":
            findings.append(_finding(
                "http2-end-to-end", f"{_CONTAINER}.ports[{index}].name",
                "HTTP/2 end-to-end is on (h2c): the WebSocket upgrade is an HTTP/1.1 "
                "request, which then never reaches the service",
                "name the port http1 (or leave the name out)", path=path,
            ))  # fmt: skip

    if deploy.drain_seconds > CLOUD_RUN_SIGTERM_GRACE:
        findings.append(_finding(
            "drain-window", "[deploy] drain_seconds",
            f"the drain window is {deploy.drain_seconds:g} s, longer than Cloud Run's "
            f"{CLOUD_RUN_SIGTERM_GRACE:g} s between SIGTERM and SIGKILL: connections still "
            "open at the kill end as 1006, not 1012",
            f"set drain_seconds below {CLOUD_RUN_SIGTERM_GRACE:g} (e.g. 8), leaving room for "
            "shutdown hooks", path=manifest.display_path,
        ))  # fmt: skip

    if not service.drain_path:
        findings.append(_finding(
            "no-drain-endpoint", "[service] drain_path",
            "no drain endpoint: Cloud Run never signals a revision that lost its traffic, so "
            "its WebSockets stay on the old code until the request timeout",
            'set drain_path = "/_safeship/drain" so deploys and rollbacks can drain it',
            path=manifest.display_path, blocking=False,
        ))  # fmt: skip
    return findings


def check_local(manifest: Manifest) -> list[Finding]:
    """Findings on the local target's settings (its front has no timeout, affinity or HTTP/2
    to get wrong; what is left is the rollout's own)."""
    deploy = manifest.deploy
    findings = []
    if len(deploy.steps) > 1 and deploy.watch_seconds <= 0:
        findings.append(_finding(
            "canary-unwatched", "[deploy] watch_seconds",
            f"canary steps {deploy.steps} with no watch window: each step is passed without "
            "judging the new revision",
            "set watch_seconds above 0, or steps = [100]", path=manifest.display_path,
        ))  # fmt: skip
    return findings


class DeployConfigGate:
    name = GATE

    def run(self, ctx: CheckContext) -> GateResult:
        manifest = ctx.manifest
        findings = check_local(manifest) if manifest.deploy.target == "local" else []
        summary: dict[str, Any] = {"target": manifest.deploy.target, "checked": []}
        yaml_path = manifest.deploy.cloudrun.service_yaml
        if yaml_path:
            doc = _load_yaml(manifest.resolve(yaml_path), yaml_path)
            if isinstance(doc, GateResult):
                return doc
            findings += check_cloudrun(doc, manifest, path=yaml_path)
            summary["checked"].append(yaml_path)
        elif manifest.deploy.target == "cloudrun":
            findings.append(_finding(
                "no-service-yaml", "[deploy.cloudrun] service_yaml",
                "the Cloud Run service's configuration is not checked: no service YAML is set",
                "run `safeship cloudrun render > service.yaml`, then set "
                'service_yaml = "service.yaml"', path=manifest.display_path, blocking=False,
            ))  # fmt: skip
        from . import deploy_config_k8s  # here: it uses this module's helpers

        findings += deploy_config_k8s.check(ctx)
        summary["checked"] += manifest.deploy.kubernetes.manifests
        return result_from_findings(self.name, findings, summary)


def _load_yaml(file: Path, shown: str) -> dict[str, Any] | GateResult:
    from .model import GateStatus

    try:
        import yaml
    except ImportError:
        return GateResult(
            GATE, GateStatus.ERROR, error="PyYAML is not installed: pip install pyyaml"
        )
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        return GateResult(
            GATE, GateStatus.ERROR,
            error=f"[deploy.cloudrun] service_yaml = {shown!r} cannot be read: {exc.strerror}",
        )  # fmt: skip
    except yaml.YAMLError as exc:
        return GateResult(GATE, GateStatus.ERROR, error=f"{shown} is not valid YAML: {exc}")
    if not isinstance(doc, dict) or doc.get("kind") != "Service":
        return GateResult(
            GATE, GateStatus.ERROR,
            error=f"{shown} is not a Cloud Run service YAML (expected kind: Service)",
        )  # fmt: skip
    return doc
