"""The ``deploy-config`` gate's Kubernetes checks: manifests (YAML files named in
``[deploy.kubernetes] manifests``) against what a WebSocket service needs.

Each Deployment's first container must have the three probes on the health routes, a preStop
hook (so the pod leaves the endpoints before SIGTERM starts closing WebSockets), a grace
period that covers the preStop sleep and the drain window, and no literal secret values; its
rolling update must keep every serving pod (``maxUnavailable: 0``). :func:`check_kubernetes`
is a pure function of the parsed documents; :func:`check` reads the files for the gate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .deploy_config import field_at
from .model import Finding, Tier

if TYPE_CHECKING:
    from ..config import Manifest
    from .runner import CheckContext

__all__ = ["check", "check_kubernetes", "load_documents"]

GATE = "deploy-config"
_WORKLOADS = frozenset({"Deployment", "StatefulSet", "Rollout"})
_DEFAULT_GRACE = 30  # the kubelet's default terminationGracePeriodSeconds


def _finding(
    rule: str, where: str, field: str, message: str, fix: str, path: str | None, block: bool = True
) -> Finding:
    return Finding(
        gate=GATE,
        rule=rule,
        message=f"{where}: {field}: {message}",
        tier=Tier.ERROR if block else Tier.WARNING,
        path=path,
        hint=fix,
        symbol=field,
        blocking=block,
    )


def _secret_names(manifest: Manifest) -> set[str]:
    names = {manifest.auth.secret, "JWT_SECRET"} | set(manifest.secrets)
    return {n.upper() for n in names}


def _is_secret(name: str, secrets: set[str]) -> bool:
    upper = name.upper()
    return any(upper == s or upper.startswith(f"{s}_") for s in secrets)


def check_kubernetes(
    docs: Iterable[Mapping[str, Any]], manifest: Manifest, *, path: str | None = None
) -> list[Finding]:
    """Findings on parsed Kubernetes documents: each names the object, the field path, what
    is wrong and the fix. ``path`` is the file the documents came from."""
    docs = [d for d in docs if isinstance(d, Mapping)]
    findings: list[Finding] = []
    prefix = manifest.service.health_prefix.rstrip("/")
    drain = manifest.deploy.drain_seconds
    grace_extra = manifest.deploy.stop_grace_seconds
    secrets = _secret_names(manifest)
    for doc in docs:
        kind = doc.get("kind")
        if kind not in _WORKLOADS:
            continue
        where = f"{kind} {field_at(doc, 'metadata', 'name') or '?'}"
        pod = "spec.template.spec"
        base = f"{pod}.containers[0]"
        container = field_at(doc, "spec", "template", "spec", "containers", 0)
        if not isinstance(container, Mapping):
            findings.append(_finding(
                "k8s-no-container", where, f"{pod}.containers", "no container",
                "add the service's container", path,
            ))  # fmt: skip
            continue

        def add(
            rule: str, field: str, message: str, fix: str, block: bool = True, where: str = where
        ) -> None:
            findings.append(_finding(rule, where, field, message, fix, path, block))

        for probe, route, why in (
            ("startupProbe", "startup", "liveness counts before the startup phases finish"),
            ("readinessProbe", "ready", "traffic arrives before the service can serve it"),
            ("livenessProbe", "live", "a hung process is never restarted"),
        ):
            want = f"{prefix}/{route}"
            got = field_at(container, probe, "httpGet", "path")
            if field_at(container, probe) is None:
                add(f"k8s-no-{route}-probe", f"{base}.{probe}", f"missing: {why}",
                    f"add {probe}: {{httpGet: {{path: {want}, port: http}}}}")  # fmt: skip
            elif got != want:
                add(f"k8s-{route}-probe-path", f"{base}.{probe}.httpGet.path",
                    f"is {got!r} (or not an HTTP probe), expected {want!r}",
                    f"set {probe}.httpGet.path to {want}")  # fmt: skip
        pre_stop = field_at(container, "lifecycle", "preStop")
        sleep = field_at(pre_stop, "sleep", "seconds")
        pre_stop_seconds = float(sleep) if isinstance(sleep, int | float) else 0.0
        if pre_stop is None:
            add("k8s-no-prestop", f"{base}.lifecycle.preStop",
                "missing: SIGTERM arrives while the pod is still in the endpoints, so new "
                "connections reach a draining service",
                "add lifecycle: {preStop: {sleep: {seconds: 5}}} (readiness drops and the "
                "endpoints update before SIGTERM)")  # fmt: skip
        grace = field_at(doc, "spec", "template", "spec", "terminationGracePeriodSeconds")
        grace_value = grace if isinstance(grace, int | float) else _DEFAULT_GRACE
        needed = pre_stop_seconds + drain
        if grace_value < needed:
            wanted = math.ceil(needed + grace_extra)
            shown = grace if grace is not None else f"unset ({_DEFAULT_GRACE})"
            add("k8s-grace-period", f"{pod}.terminationGracePeriodSeconds",
                f"is {shown}, shorter than the preStop sleep ({pre_stop_seconds:g}s) plus the "
                f"drain window ([deploy] drain_seconds = {drain:g}): WebSockets are killed "
                "before they are closed with 1012",
                f"set terminationGracePeriodSeconds: {wanted} (preStop + drain + "
                "[deploy] stop_grace_seconds)")  # fmt: skip
        if kind == "Deployment":
            unavailable = field_at(doc, "spec", "strategy", "rollingUpdate", "maxUnavailable")
            strategy = field_at(doc, "spec", "strategy", "type")
            if strategy == "Recreate":
                add("k8s-recreate", "spec.strategy.type",
                    "is Recreate: every pod stops before the new ones serve",
                    "use type: RollingUpdate with rollingUpdate.maxUnavailable: 0")  # fmt: skip
            elif unavailable not in (0, "0", "0%"):
                shown = "unset (25%)" if unavailable is None else repr(unavailable)
                add("k8s-max-unavailable", "spec.strategy.rollingUpdate.maxUnavailable",
                    f"is {shown}: a rollout takes serving pods away before new ones are ready",
                    "set spec.strategy.rollingUpdate.maxUnavailable: 0")  # fmt: skip
        for index, entry in enumerate(container.get("env") or ()):
            name = str(field_at(entry, "name") or "")
            if _is_secret(name, secrets) and field_at(entry, "value") is not None:
                add("k8s-literal-secret", f"{base}.env[{index}].value",
                    f"{name} is written into the manifest as a literal value",
                    "use envFrom: [{secretRef: {name: SECRET}}] or valueFrom.secretKeyRef")  # fmt: skip
        if field_at(container, "terminationMessagePolicy") != "FallbackToLogsOnError":
            add("k8s-termination-message", f"{base}.terminationMessagePolicy",
                "is not FallbackToLogsOnError: a crash at startup shows no startup_failed line",
                "set terminationMessagePolicy: FallbackToLogsOnError", block=False)  # fmt: skip
    workloads = [d for d in docs if d.get("kind") in _WORKLOADS]
    if workloads and not any(d.get("kind") == "PodDisruptionBudget" for d in docs):
        where = f"{workloads[0].get('kind')} {field_at(workloads[0], 'metadata', 'name') or '?'}"
        findings.append(_finding(
            "k8s-no-pdb", where, "PodDisruptionBudget",
            "none in these manifests: a node drain may evict every pod at once",
            "add a PodDisruptionBudget (safeship k8s render prints one)", path, block=False,
        ))  # fmt: skip
    return findings


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every document of a YAML stream (``---`` separated); ``yaml.YAMLError`` when invalid."""
    import yaml

    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def check(ctx: CheckContext) -> list[Finding]:
    """The gate's Kubernetes part: the files of ``[deploy.kubernetes] manifests``."""
    manifest = ctx.manifest
    files = manifest.deploy.kubernetes.manifests
    findings: list[Finding] = []
    if not files and manifest.deploy.target == "kubernetes":
        findings.append(Finding(
            gate=GATE, rule="k8s-no-manifests",
            message="[deploy.kubernetes] manifests: none set, so no Kubernetes manifest is checked",
            tier=Tier.WARNING, path=manifest.display_path,
            hint="run `safeship k8s render > k8s.yaml`, then set manifests = [\"k8s.yaml\"]",
            blocking=False,
        ))  # fmt: skip
    for shown in files:
        try:
            docs = load_documents(manifest.resolve(shown).read_text(encoding="utf-8"))
        except OSError as exc:
            problem = f"cannot be read: {exc.strerror}"
        except Exception as exc:  # yaml.YAMLError, imported lazily
            problem = f"is not valid YAML: {str(exc).splitlines()[0]}"
        else:
            findings += check_kubernetes(docs, manifest, path=shown)
            continue
        findings.append(Finding(
            gate=GATE, rule="k8s-manifest-unreadable",
            message=f"[deploy.kubernetes] manifests: {shown} {problem}",
            tier=Tier.ERROR, path=shown, hint="fix the path or the file", blocking=True,
        ))  # fmt: skip
    return findings
