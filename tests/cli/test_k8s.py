"""``safeship k8s render``: what it prints parses with the kubernetes client's models and
passes the deploy-config gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from safeship.cli import main

MODELS = {
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "main.py").write_text("app = None\n")
    (tmp_path / "safeship.toml").write_text(
        '[service]\nname = "agent"\napp = "svc.main:app"\n'
        '[deploy]\ntarget = "kubernetes"\ndrain_seconds = 20\n'
        '[deploy.kubernetes]\nnamespace = "prod"\nsecret = "agent-secrets"\n'
        'manifests = ["k8s.yaml"]\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAFESHIP_ENV", raising=False)
    return tmp_path


def round_trip(doc: dict) -> dict:
    """The document through the client's model of its kind and back: a misspelt or misplaced
    field is dropped on the way, so the result differs from the input."""
    api = client.ApiClient()
    model = api.deserialize(json.dumps(doc), MODELS[doc["kind"]], "application/json")
    return api.sanitize_for_serialization(model)


def test_render_parses_with_the_client_models_and_passes_the_gate(project, capsys):
    assert main(["k8s", "render", "--image", "reg/agent:7", "--env", "production"]) == 0
    rendered = capsys.readouterr().out
    docs = list(yaml.safe_load_all(rendered))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PodDisruptionBudget"]
    for doc in docs:
        assert round_trip(doc) == doc
    deployment = docs[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 20 + 10
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "agent-secrets"}}]
    assert {"name": "SAFESHIP_ENV", "value": "production"} in pod["containers"][0]["env"]
    (project / "k8s.yaml").write_text(rendered)
    assert main(["check", "--only", "deploy-config", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    gate = next(r for r in report["gates"] if r["gate"] == "deploy-config")
    assert gate["status"] == "passed" and gate["findings"] == []


def test_a_manifest_without_a_prestop_fails_the_check_naming_the_field(project, capsys):
    assert main(["k8s", "render", "--image", "reg/agent:7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["findings"] == []
    docs = out["documents"]
    del docs[0]["spec"]["template"]["spec"]["containers"][0]["lifecycle"]
    (project / "k8s.yaml").write_text(yaml.safe_dump_all(docs))
    assert main(["check", "--only", "deploy-config", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    gate = next(r for r in report["gates"] if r["gate"] == "deploy-config")
    [finding] = gate["findings"]
    assert finding["rule"] == "k8s-no-prestop"
    assert (
        "Deployment agent: spec.template.spec.containers[0].lifecycle.preStop" in finding["message"]
    )
    assert finding["path"] == "k8s.yaml"


def test_render_without_an_image_is_a_usage_error(project, capsys):
    assert main(["k8s", "render", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["message"] == "no image to render" and "--image" in error["hint"]
