"""``safeship cloudrun render``: what it prints passes the deploy-config gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from safeship.cli import main


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "main.py").write_text("app = None\n")
    (tmp_path / "safeship.toml").write_text(
        '[service]\nname = "svc"\napp = "svc.main:app"\ndrain_path = "/_safeship/drain"\n'
        "needs_session_affinity = true\n"
        '[deploy]\ntarget = "cloudrun"\n'
        '[deploy.cloudrun]\nservice = "agents"\nservice_yaml = "service.yaml"\n'
        'secrets = { JWT_SECRET_STAGING = "jwt-staging:latest" }\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAFESHIP_ENV", raising=False)
    return tmp_path


def test_render_then_gate_passes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloudrun", "render", "--image", "gcr.io/p/agents:7", "--env", "staging"]) == 0
    rendered = capsys.readouterr().out
    doc = yaml.safe_load(rendered)
    assert doc["metadata"]["name"] == "agents"
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["run.googleapis.com/sessionAffinity"] == "true"
    (project / "service.yaml").write_text(rendered)
    assert main(["check", "--only", "deploy-config", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    gate = next(r for r in report["gates"] if r["gate"] == "deploy-config")
    assert gate["status"] == "passed" and gate["findings"] == []


def test_a_broken_yaml_fails_the_check(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloudrun", "render", "--image", "i", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["document"]
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "h2c"
    (project / "service.yaml").write_text(yaml.safe_dump(doc))
    assert main(["check", "--only", "deploy-config", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    gate = next(r for r in report["gates"] if r["gate"] == "deploy-config")
    assert [f["rule"] for f in gate["findings"]] == ["http2-end-to-end"]


def test_render_without_an_image_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cloudrun", "render"]) == 2
    assert "--image" in capsys.readouterr().err


def test_a_manifest_that_fails_the_gate_exits_1_saying_why(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = project / "safeship.toml"
    manifest.write_text(
        manifest.read_text().replace(
            'target = "cloudrun"\n', 'target = "cloudrun"\ndrain_seconds = 15\n'
        )
    )
    assert main(["cloudrun", "render", "--image", "i", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert [f["rule"] for f in out["findings"]] == ["drain-window"]
