"""The README must be true: every command in it is run or checked against its --help, the
manifest example validates, the links resolve, and the FastAPI example runs for real."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from safeship.config import load_manifest
from safeship.testing import free_port, scaled, wait_until
from safeship.tokens import mint

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SAFESHIP = str(Path(sys.executable).parent / "safeship")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands() -> list[list[str]]:
    found = []
    for block in blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def test_the_quick_start_is_make_demo_and_make_test():
    quick = blocks("bash")[0]
    assert [w[:2] for w in map(shlex.split, quick.splitlines()) if w] == [
        ["make", "demo"],
        ["make", "test"],
    ]
    makefile = (ROOT / "Makefile").read_text()
    for words in commands():
        if words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, re.M), f"no make target {words[1]}"


SAFESHIP_COMMANDS = [w for w in commands() if w[0] == "safeship"]


@pytest.mark.parametrize(
    "words", SAFESHIP_COMMANDS, ids=[" ".join(w[:2]) for w in SAFESHIP_COMMANDS]
)
def test_every_safeship_command_and_option_exists(words):
    # The command path is the words before the first option or argument that is not a
    # subcommand: ask --help of the longest prefix that has one.
    path = [words[1]]
    if len(words) > 2 and not words[2].startswith("-"):
        probe = subprocess.run(
            [SAFESHIP, *path, words[2], "--help"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0:
            path.append(words[2])
    result = subprocess.run([SAFESHIP, *path, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in (w.split("=", 1)[0] for w in words if w.startswith("--")):
        assert option in result.stdout, f"{' '.join(path)} has no {option}"


def test_the_manifest_example_validates(tmp_path):
    (toml,) = blocks("toml")
    path = tmp_path / "safeship.toml"
    path.write_text(toml)
    manifest = load_manifest(path)
    assert manifest.is_critical("staging")
    assert manifest.secret_config("JWT_SECRET").consumers == ["env", "file:tests/e2e/staging.env"]


def test_relative_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


def test_the_fastapi_example_is_under_20_lines():
    (code,) = blocks("python")
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) < 20


@pytest.mark.e2e
def test_the_fastapi_example_runs(tmp_path):
    (code,) = blocks("python")
    (tmp_path / "readme_app.py").write_text(code)
    secret = "readme-secret-0123456789abcdef-0123456789"
    port = free_port()
    env = {**os.environ, "SAFESHIP_ENV": "test", "JWT_SECRET": secret}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "readme_app:app", "--app-dir", str(tmp_path),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def ready() -> bool:
            try:
                return (
                    httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
                )
            except httpx.HTTPError:
                return proc.poll() is not None

        wait_until(ready, timeout=20)
        assert proc.poll() is None
        phases = httpx.get(f"http://127.0.0.1:{port}/health/startup").json()["phases"]
        assert [p["name"] for p in phases] == ["secrets", "database"]

        async def round_trip() -> dict:
            headers = {"Authorization": f"Bearer {mint(secret, 'readme-user')}"}
            async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=headers) as ws:
                await ws.send("hello")
                return json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))

        assert asyncio.run(round_trip()) == {"from": "readme-user", "echo": "hello"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_kubernetes_probes_agree_with_docs_containers():
    import yaml

    def probes(text: str) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
            for doc in yaml.safe_load_all(block):
                stack = [doc]
                while stack:
                    node = stack.pop()
                    if isinstance(node, dict):
                        for key, value in node.items():
                            if key.endswith("Probe") and isinstance(value, dict):
                                found.setdefault(key, value)
                            stack.append(value)
                    elif isinstance(node, list):
                        stack.extend(node)
        return found

    def timing(probe: dict) -> dict:
        return {k: v for k, v in probe.items() if k != "httpGet"} | {
            "path": probe["httpGet"]["path"]
        }

    readme = probes(README)
    containers = (ROOT / "docs" / "containers.md").read_text()
    kube = probes(containers[containers.index("## Kubernetes") :])
    assert set(readme) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for name, probe in readme.items():
        assert timing(probe) == timing(kube[name]), name
