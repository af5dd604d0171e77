"""Every YAML block of docs/kubernetes.md is checked.

Core kinds go through the ``kubernetes`` client's models and back unchanged (a misspelt or
misplaced field would be dropped). For the CRDs no validator is installed here, so the
required fields of their published schemas are checked as the doc uses them: Argo Rollouts'
AnalysisTemplate and Rollout (argoproj.io/v1alpha1), Flagger's Canary (flagger.app/v1beta1),
the Gateway API's HTTPRoute (gateway.networking.k8s.io/v1). The recipes are also held to
safeship itself: the probe Job's options exist in ``safeship probe``, the URLs are the monitor's
routes, and the monitor answers the methods the tools use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from starlette.testclient import TestClient

from safeship.cli import main
from safeship.deploy.targets.k8s_manifests import Workload, backend_refs

DOC = Path(__file__).resolve().parents[1] / "docs" / "kubernetes.md"
CORE = {
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}
CRDS = {
    ("argoproj.io/v1alpha1", "AnalysisTemplate"),
    ("argoproj.io/v1alpha1", "Rollout"),
    ("flagger.app/v1beta1", "Canary"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
METRIC_FIELDS = {
    "name", "interval", "initialDelay", "count", "successCondition", "failureCondition",
    "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit", "provider", "dryRun",
}  # fmt: skip
FLAGGER_HOOKS = {
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
    "confirm-promotion", "post-rollout", "rollback", "event",
}  # fmt: skip
MONITOR_ROUTE = re.compile(r"^http://[^/]+/analysis/[a-z]+(/[^/]+)?$")


def documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/kubernetes.md has no YAML block"
    return [d for block in blocks for d in yaml.safe_load_all(block)]


DOCS = documents()


def round_trip(doc: Any, model: str) -> Any:
    api = client.ApiClient()
    return api.sanitize_for_serialization(
        api.deserialize(json.dumps(doc), model, "application/json")
    )


def test_every_document_is_a_known_kind():
    kinds = {(d["apiVersion"], d["kind"]) for d in DOCS}
    assert kinds <= set(CORE) | CRDS, kinds - set(CORE) - CRDS
    assert kinds >= CRDS  # every recipe is there


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if (d["apiVersion"], d["kind"]) in CORE], ids=lambda d: d["kind"]
)
def test_core_kinds_round_trip_through_the_client_models(doc):
    assert round_trip(doc, CORE[(doc["apiVersion"], doc["kind"])]) == doc


def of_kind(kind: str) -> list[dict[str, Any]]:
    found = [d for d in DOCS if d["kind"] == kind]
    assert found, f"no {kind} in docs/kubernetes.md"
    return found


def probe_options() -> set[str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["probe", "--help"])
    return set(re.findall(r"--[a-z][a-z-]+", out.getvalue()))


def test_analysis_templates_have_the_required_fields_and_real_safeship_commands():
    known = probe_options()
    for template in of_kind("AnalysisTemplate"):
        text = json.dumps(template)
        declared = {a["name"] for a in template["spec"].get("args", [])}
        assert set(re.findall(r"\{\{args\.([a-z-]+)\}\}", text)) <= declared
        assert template["spec"]["metrics"]
        for metric in template["spec"]["metrics"]:
            assert set(metric) <= METRIC_FIELDS and metric["name"]
            [(kind, provider)] = metric["provider"].items()
            if kind == "job":
                spec = provider["spec"]
                assert round_trip(spec, "V1JobSpec") == spec
                pod = spec["template"]["spec"]
                assert pod["restartPolicy"] in ("Never", "OnFailure")
                command = pod["containers"][0]["command"]
                assert command[:2] == ["safeship", "probe"] and "--json" in command
                used = {part for part in command if part.startswith("--")}
                assert used <= known, used - known
            else:
                assert kind == "web"
                assert MONITOR_ROUTE.match(provider["url"].replace("{{args.revision}}", "r1"))
                assert provider["jsonPath"] == "{$.value}"  # a key of the analysis document
                assert metric["successCondition"] == "result == 1"


def test_the_rollout_uses_a_documented_template():
    names = {t["metadata"]["name"] for t in of_kind("AnalysisTemplate")}
    for rollout in of_kind("Rollout"):
        spec = rollout["spec"]
        assert spec["selector"]["matchLabels"] and ("workloadRef" in spec or "template" in spec)
        steps = spec["strategy"]["canary"]["steps"]
        for step in steps:
            [(kind, body)] = step.items()
            assert kind in {"setWeight", "pause", "analysis"}
            if kind == "analysis":
                assert {t["templateName"] for t in body["templates"]} <= names


def test_the_flagger_canary_has_the_required_fields():
    for canary in of_kind("Canary"):
        spec = canary["spec"]
        assert set(spec["targetRef"]) == {"apiVersion", "kind", "name"}
        assert isinstance(spec["service"]["port"], int)
        analysis = spec["analysis"]
        assert analysis["interval"] and isinstance(analysis["threshold"], int)
        for hook in analysis["webhooks"]:
            assert hook["name"] and hook["type"] in FLAGGER_HOOKS
            assert MONITOR_ROUTE.match(hook["url"])


def test_the_http_route_matches_what_the_target_writes():
    refs = backend_refs(Workload(service="agent", namespace="prod", image="i"), "r2", "r1", 10)
    for route in of_kind("HTTPRoute"):
        spec = route["spec"]
        assert spec["parentRefs"] and all(p["name"] for p in spec["parentRefs"])
        for rule in spec["rules"]:
            for ref in rule["backendRefs"]:
                assert set(ref) == set(refs[0]) and isinstance(ref["port"], int)


def test_the_monitor_answers_the_methods_argo_and_flagger_use():
    from safeship.monitor.scheduler import Monitor, MonitorSettings
    from safeship.monitor.server import build_app

    with TestClient(build_app(Monitor([], {}, MonitorSettings()))) as http:
        for method in ("GET", "POST"):  # Argo's Web metric GETs; Flagger's webhooks POST
            answer = http.request(method, "/analysis/production", json={"name": "agent"})
            assert answer.status_code != 405, method
