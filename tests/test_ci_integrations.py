"""The GitHub Action (action.yml) and the pre-commit hook (.pre-commit-hooks.yaml): parsed,
and their commands run the way GitHub Actions and pre-commit run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from safeship.testing import scaled

ROOT = Path(__file__).resolve().parents[1]
SAFESHIP = str(Path(sys.executable).with_name("safeship"))
BROKEN = "from fastapi import FastAPI\n\napp = FastAPI()\nsettings = SessionMidleware()\n"
CLEAN = "from fastapi import FastAPI\n\napp = FastAPI()\n"


def _project(tmp_path: Path, main: str) -> Path:
    root = tmp_path / "proj"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "main.py").write_text(main)
    (root / "safeship.toml").write_text(
        '[service]\napp = "shop.main:app"\ncode = "shop"\n[environments.staging]\ncritical = true\n'
    )
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_SECRET", "SAFESHIP"))}
    env.pop("COLUMNS", None)
    return env


def test_the_hook_file_declares_the_static_gate() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "safeship-static"
    assert hook["entry"] == "safeship check --only static"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    cli = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert hook["additional_dependencies"] == cli["cli"]


@pytest.mark.parametrize(("main", "code"), [(CLEAN, 0), (BROKEN, 1)])
def test_the_hook_entry_blocks_a_name_that_breaks_startup(
    tmp_path: Path, main: str, code: int
) -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    root = _project(tmp_path, main)
    argv = [SAFESHIP, *hook["entry"].split()[1:]]
    result = subprocess.run(
        argv, cwd=root, env=_env(), capture_output=True, text=True, timeout=scaled(120)
    )
    assert result.returncode == code, result.stdout + result.stderr
    if code:
        assert "SessionMidleware" in result.stdout


def _substitute(text: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("inputs."):
            return inputs[expr.removeprefix("inputs.")]
        if expr.startswith("steps.check.outputs."):
            return outputs.get(expr.removeprefix("steps.check.outputs."), "")
        raise AssertionError(f"unexpected expression {expr!r} in action.yml")

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


@pytest.mark.e2e
def test_the_action_steps_install_check_and_write_sarif(tmp_path: Path) -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    inputs = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    root = _project(tmp_path, BROKEN)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=scaled(120))
    inputs.update(package=f"{ROOT}[cli]", path=str(root), sarif=str(tmp_path / "out.sarif"))
    github_output = tmp_path / "github_output"
    github_output.write_text("")
    env = {
        **_env(),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(github_output),
    }
    outputs: dict[str, str] = {}
    ran, codes = [], []
    for step in action["runs"]["steps"]:
        if "uses" in step:
            assert step["uses"].split("@")[0] in {
                "actions/setup-python",
                "github/codeql-action/upload-sarif",
            }
            continue
        step_env = {k: _substitute(str(v), inputs, outputs) for k, v in step.get("env", {}).items()}
        script = _substitute(step["run"], inputs, outputs)
        result = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=tmp_path,
            env={**env, **step_env},
            capture_output=True,
            text=True,
            timeout=scaled(300),
        )
        ran.append(step["name"])
        codes.append(result.returncode)
        for line in github_output.read_text().splitlines():
            key, _, val = line.partition("=")
            outputs[key] = val
    assert ran == ["Install safeship", "Run the gates", "Fail on blocking findings"]
    assert outputs["exit-code"] == "1"
    assert codes == [0, 0, 1]
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    messages = [r["message"]["text"] for r in sarif["runs"][0]["results"]]
    assert any("SessionMidleware" in m for m in messages)
