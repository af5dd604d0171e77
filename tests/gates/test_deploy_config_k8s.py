"""The deploy-config gate's Kubernetes checks, on plain documents."""

from __future__ import annotations

from pathlib import Path

from safeship.config import load_manifest
from safeship.deploy.targets.k8s_manifests import Workload, standalone
from safeship.gates.deploy_config_k8s import check, check_kubernetes
from safeship.gates.runner import build_context


def manifest(tmp_path: Path, extra: str = "", drain: int = 20):
    (tmp_path / "safeship.toml").write_text(
        f'[service]\nname = "agent"\n[deploy]\ndrain_seconds = {drain}\n' + extra
    )
    return load_manifest(tmp_path / "safeship.toml")


BARE = {
    "kind": "Deployment",
    "metadata": {"name": "agent"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "i",
                        "readinessProbe": {"tcpSocket": {"port": 8000}},
                        "env": [{"name": "JWT_SECRET_PRODUCTION", "value": "s3cret-in-yaml"}],
                    }
                ]
            }
        }
    },
}


def test_a_bare_deployment_blocks_on_each_missing_property_with_its_field(tmp_path):
    findings = check_kubernetes([BARE], manifest(tmp_path, drain=40), path="k8s.yaml")
    by_rule = {f.rule: f for f in findings}
    assert set(by_rule) == {
        "k8s-no-startup-probe", "k8s-ready-probe-path", "k8s-no-live-probe", "k8s-no-prestop",
        "k8s-grace-period", "k8s-max-unavailable", "k8s-literal-secret",
        "k8s-termination-message", "k8s-no-pdb",
    }  # fmt: skip
    blocking = {f.rule for f in findings if f.blocking}
    assert blocking == set(by_rule) - {"k8s-termination-message", "k8s-no-pdb"}
    grace = by_rule["k8s-grace-period"]
    assert grace.symbol == "spec.template.spec.terminationGracePeriodSeconds"
    assert "unset (30)" in grace.message and "drain_seconds = 40" in grace.message
    assert "terminationGracePeriodSeconds: 50" in (grace.hint or "")  # 0 + 40 + 10
    secret = by_rule["k8s-literal-secret"]
    assert secret.symbol == "spec.template.spec.containers[0].env[0].value"
    assert "s3cret-in-yaml" not in secret.message  # the value itself is never repeated
    assert all(
        f.path == "k8s.yaml" and f.message.startswith("Deployment agent: ") for f in findings
    )


def test_the_grace_period_must_cover_the_pre_stop_sleep_and_the_drain_window(tmp_path):
    workload = Workload(service="agent", namespace="ns", image="i", drain_seconds=20)
    docs = standalone(workload)
    assert check_kubernetes(docs, manifest(tmp_path)) == []
    docs[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 24  # 5 + 20 > 24
    [finding] = check_kubernetes(docs, manifest(tmp_path))
    assert finding.rule == "k8s-grace-period" and finding.blocking


def test_the_gate_reads_the_files_named_in_the_manifest(tmp_path):
    m = manifest(tmp_path, '[deploy.kubernetes]\nmanifests = ["k8s.yaml", "gone.yaml"]\n')
    (tmp_path / "k8s.yaml").write_text("kind: Deployment\nmetadata: {name: agent}\n---\n: [\n")
    findings = check(build_context(tmp_path, m, "production", base_environ={}))
    assert [f.rule for f in findings] == ["k8s-manifest-unreadable", "k8s-manifest-unreadable"]
    assert "k8s.yaml is not valid YAML" in findings[0].message
    assert "gone.yaml cannot be read" in findings[1].message
