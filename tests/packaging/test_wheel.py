"""The wheel as a service installs it: ``pip install safeship`` without extras.

The wheel is built once per session. Its venvs live under the temporary directory, keyed by
the wheel's hash and what else they hold, and are reused while both are the same (hatchling
builds reproducible wheels). Installs come from PyPI through uv and its cache, except where
pip's own behaviour is the point: next to FastAPI 0.115.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from safeship.testing import free_port, scaled, wait_until

from ..test_readme import blocks

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOOL_CHAIN = ("ruff", "ty", "libcst", "typer", "rich")
INSTALL = 600  # seconds for one pip install from PyPI with a cold cache


# Every module of the service library imports without the command line's packages.
IMPORT_THE_LIBRARY = """
import importlib, pkgutil
import safeship, safeship.config, safeship.errors
for name in ("service", "core", "tokens", "secrets"):
    package = importlib.import_module("safeship." + name)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
"""


def _run(*argv: str | Path, timeout: float = INSTALL) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, f"{' '.join(map(str, argv))}\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", out, ROOT)
    (path,) = out.glob("safeship-*.whl")
    return path


def _venv(wheel: Path, name: str, *requirements: str, pip: bool = False) -> Path:
    """A venv with ``requirements`` installed in this order, one call each, by uv or (``pip``)
    by pip; reused."""
    cache = Path(tempfile.gettempdir()) / "safeship-wheel-venvs"
    built = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
    wanted = hashlib.sha256(repr((requirements, pip)).encode()).hexdigest()[:8]
    home = cache / built / f"{name}-{wanted}"
    python = home / "bin" / "python"
    if (home / ".complete").exists():
        return python
    for stale in cache.glob("*"):  # venvs of wheels built before this one
        if stale.name != built:
            shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    _run(sys.executable, "-m", "uv", "venv", "--quiet", "--seed", "--python", sys.executable, home)
    installer = [python, "-m", "pip"] if pip else [sys.executable, "-m", "uv", "pip"]
    for requirement in requirements:
        target = str(wheel) if requirement == "safeship" else requirement
        options = ["--quiet", "--find-links", wheel.parent]
        _run(*installer, "install", *options, *([] if pip else ["--python", python]), target)
    (home / ".complete").touch()
    return python


def _installed(python: Path) -> dict[str, str]:
    listed = _run(python, "-m", "pip", "list", "--format", "json", timeout=60).stdout
    return {d["name"].lower(): d["version"] for d in json.loads(listed)}


@pytest.fixture(scope="session")
def service_venv(wheel: Path) -> Path:
    """``pip install safeship``, then what the README's example runs on."""
    return _venv(wheel, "service", "safeship", "fastapi", "uvicorn[standard]")


def test_a_service_install_has_no_tool_chain(service_venv: Path) -> None:
    installed = _installed(service_venv)
    assert "safeship" in installed
    assert not [name for name in TOOL_CHAIN if name in installed], installed
    _run(service_venv, "-c", IMPORT_THE_LIBRARY, timeout=60)


def test_the_command_without_the_cli_extra_says_what_to_install(service_venv: Path) -> None:
    result = subprocess.run(
        [str(service_venv.parent / "safeship"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pip install 'safeship[cli]'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def readme_app(service_venv: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The README's FastAPI example under the service venv's uvicorn: (base URL, secret)."""
    (code,) = blocks("python")
    (tmp_path / "readme_app.py").write_text(code)
    secret = "wheel-secret-0123456789abcdef-0123456789"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.Popen(
        [str(service_venv), "-m", "uvicorn", "readme_app:app", "--app-dir", str(tmp_path),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, env={**env, "SAFESHIP_ENV": "test", "JWT_SECRET": secret},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}", secret
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_readme_example_serves_from_a_service_install(
    service_venv: Path, readme_app: tuple[str, str]
) -> None:
    address, secret = readme_app

    def ready() -> bool:
        try:
            return httpx.get(f"http://{address}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=30, what="the README example to be ready")
    # The token comes from the service install's own safeship.tokens.
    mint = f"from safeship.tokens import mint; print(mint({secret!r}, 'wheel-user'))"
    token = _run(service_venv, "-c", mint, timeout=60).stdout.strip()

    async def round_trip() -> dict:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(f"ws://{address}/ws", additional_headers=headers) as ws:
            await ws.send("hello")
            return json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))

    assert asyncio.run(round_trip()) == {"from": "wheel-user", "echo": "hello"}


def test_installed_next_to_fastapi_0_115_pip_keeps_its_pins(wheel: Path) -> None:
    python = _venv(wheel, "fastapi-0.115", "fastapi==0.115.*", "safeship", pip=True)
    installed = _installed(python)
    assert installed["fastapi"].startswith("0.115.")
    starlette = tuple(int(part) for part in installed["starlette"].split(".")[:2])
    assert starlette < (0, 47), installed["starlette"]
    _run(python, "-m", "pip", "check", timeout=60)
