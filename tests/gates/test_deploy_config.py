"""The deploy-config gate: pure checks over parsed Cloud Run service YAML, then the gate on
files through a real check context."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from safeship.config import CloudRunConfig, DeployConfig, Manifest, ServiceConfig, load_manifest
from safeship.deploy.cloudrun_service import service_document
from safeship.gates.deploy_config import DeployConfigGate, check_cloudrun, check_local
from safeship.gates.model import GateStatus
from safeship.gates.runner import build_context

MANIFEST = Manifest(service=ServiceConfig(drain_path="/_safeship/drain"))
GOOD = service_document(MANIFEST, image="gcr.io/p/svc:1")


def container(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return found


def changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    change(doc)
    return doc


def rules(doc: dict[str, Any], manifest: Manifest = MANIFEST) -> dict[str, Any]:
    return {f.rule: f for f in check_cloudrun(doc, manifest, path="service.yaml")}


def test_the_rendered_service_passes() -> None:
    assert check_cloudrun(GOOD, MANIFEST) == []


@pytest.mark.parametrize(
    ("change", "rule", "field", "fix"),
    [
        (
            lambda d: container(d).update(startupProbe={"tcpSocket": {"port": 8080}}),
            "startup-probe-tcp", "containers[0].startupProbe", "/health/startup",
        ),
        (
            lambda d: container(d).pop("startupProbe"),
            "startup-probe-tcp", "containers[0].startupProbe", "/health/startup",
        ),
        (
            lambda d: container(d)["startupProbe"]["httpGet"].update(path="/health/ready"),
            "startup-probe-path", "startupProbe.httpGet.path", "/health/startup",
        ),
        (
            lambda d: container(d).pop("livenessProbe"),
            "liveness-probe", "containers[0].livenessProbe", "/health/live",
        ),
        (
            lambda d: container(d)["livenessProbe"]["httpGet"].update(path="/"),
            "liveness-probe", "containers[0].livenessProbe", "/health/live",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(timeoutSeconds=300),
            "request-timeout", "spec.template.spec.timeoutSeconds", "timeoutSeconds: 3600",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].pop("timeoutSeconds"),
            "request-timeout", "spec.template.spec.timeoutSeconds", "timeoutSeconds: 3600",
        ),
        (
            lambda d: container(d)["ports"][0].update(name="h2c"),
            "http2-end-to-end", "containers[0].ports[0].name", "http1",
        ),
    ],
)  # fmt: skip
def test_each_bad_setting_blocks_naming_the_field_and_the_fix(
    change: Callable[[dict[str, Any]], None], rule: str, field: str, fix: str
) -> None:
    found = rules(changed(change))
    assert set(found) == {rule}
    finding = found[rule]
    assert finding.blocking and finding.path == "service.yaml"
    assert field in finding.symbol and field in finding.message
    assert fix in (finding.hint or "")


def test_an_unset_timeout_is_reported_as_cloud_runs_default() -> None:
    doc = changed(lambda d: d["spec"]["template"]["spec"].pop("timeoutSeconds"))
    assert "unset (Cloud Run's 300 s)" in rules(doc)["request-timeout"].message


def test_a_timeout_covering_the_longest_session_passes() -> None:
    manifest = MANIFEST.model_copy(
        update={"service": MANIFEST.service.model_copy(update={"longest_session_seconds": 600})}
    )
    doc = changed(lambda d: d["spec"]["template"]["spec"].update(timeoutSeconds=600))
    assert rules(doc, manifest) == {}


def test_session_affinity_is_required_only_when_tickets_or_resume_need_it() -> None:
    service = MANIFEST.service.model_copy(update={"needs_session_affinity": True})
    sticky = MANIFEST.model_copy(update={"service": service})
    found = rules(GOOD, sticky)
    assert set(found) == {"session-affinity"}
    assert "run.googleapis.com/sessionAffinity" in found["session-affinity"].symbol
    assert rules(service_document(sticky, image="i"), sticky) == {}


def test_a_drain_window_over_cloud_runs_sigterm_grace_blocks() -> None:
    manifest = MANIFEST.model_copy(update={"deploy": DeployConfig(drain_seconds=15)})
    finding = rules(GOOD, manifest)["drain-window"]
    assert finding.blocking and "15 s, longer than Cloud Run's 10 s" in finding.message
    assert finding.symbol == "[deploy] drain_seconds"


def test_no_drain_endpoint_is_a_warning_not_a_block() -> None:
    finding = rules(GOOD, Manifest())["no-drain-endpoint"]
    assert not finding.blocking and "drain_path" in (finding.hint or "")


def test_a_document_without_a_container_says_so() -> None:
    assert set(rules({"kind": "Service", "spec": {}})) == {"cloudrun-no-container"}


def test_local_canary_steps_need_a_watch_window() -> None:
    unwatched = Manifest(deploy=DeployConfig(steps=[10, 100], watch_seconds=0))
    assert [f.rule for f in check_local(unwatched)] == ["canary-unwatched"]
    assert check_local(Manifest(deploy=DeployConfig(steps=[10, 100]))) == []


# -- the gate on files ----------------------------------------------------------------------


def project(tmp_path: Path, manifest: str, yaml_text: str | None = None) -> Path:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "main.py").write_text("app = None\n")
    (tmp_path / "safeship.toml").write_text(manifest)
    if yaml_text is not None:
        (tmp_path / "service.yaml").write_text(yaml_text)
    return tmp_path


def run_gate(root: Path) -> Any:
    manifest = load_manifest(root / "safeship.toml")
    ctx = build_context(root, manifest, "test", base_environ={})
    return DeployConfigGate().run(ctx)


CLOUDRUN = (
    '[service]\napp = "svc.main:app"\ndrain_path = "/_safeship/drain"\n'
    '[deploy]\ntarget = "cloudrun"\n[deploy.cloudrun]\nservice_yaml = "service.yaml"\n'
)


def test_the_gate_blocks_a_yaml_with_a_tcp_startup_probe(tmp_path: Path) -> None:
    bad = changed(lambda d: container(d).update(startupProbe={"tcpSocket": {"port": 8080}}))
    result = run_gate(project(tmp_path, CLOUDRUN, yaml.safe_dump(bad)))
    assert result.status is GateStatus.FAILED
    assert [f.rule for f in result.blocking] == ["startup-probe-tcp"]
    assert result.summary["checked"] == ["service.yaml"]


def test_the_gate_passes_a_good_yaml(tmp_path: Path) -> None:
    result = run_gate(project(tmp_path, CLOUDRUN, yaml.safe_dump(GOOD)))
    assert result.status is GateStatus.PASSED and result.findings == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "cannot be read"),
        ("spec: [unclosed", "is not valid YAML"),
        ("kind: Deployment\n", "expected kind: Service"),
    ],
)
def test_an_unusable_yaml_is_an_error_naming_the_file(
    tmp_path: Path, text: str | None, error: str
) -> None:
    result = run_gate(project(tmp_path, CLOUDRUN, text))
    assert result.status is GateStatus.ERROR
    assert error in (result.error or "") and "service.yaml" in (result.error or "")


def test_cloudrun_without_a_yaml_warns(tmp_path: Path) -> None:
    text = '[service]\napp = "svc.main:app"\n[deploy]\ntarget = "cloudrun"\n'
    result = run_gate(project(tmp_path, text))
    assert result.status is GateStatus.PASSED
    assert [f.rule for f in result.findings] == ["no-service-yaml"]


def test_the_local_target_passes_by_default(tmp_path: Path) -> None:
    result = run_gate(project(tmp_path, '[service]\napp = "svc.main:app"\n'))
    assert result.status is GateStatus.PASSED and result.findings == []


def test_secret_references_render_as_references_never_values() -> None:
    manifest = Manifest(
        deploy=DeployConfig(cloudrun=CloudRunConfig(secrets={"JWT_SECRET_STAGING": "jwt:3"}))
    )
    env = container(service_document(manifest, image="i"))["env"]
    assert env == [
        {"name": "JWT_SECRET_STAGING", "valueFrom": {"secretKeyRef": {"name": "jwt", "key": "3"}}}
    ]
