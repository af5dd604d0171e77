"""gates/project_env: which interpreter, environment and target version a project gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from safeship.errors import ConfigError, UsageError
from safeship.gates.project_env import (
    parse_version,
    requires_python_floor,
    resolve_project_env,
)


def make_venv(path: Path, version: str = "3.12.4") -> Path:
    """A venv's layout: pyvenv.cfg, bin/python (this interpreter), site-packages."""
    major, minor = version.split(".")[:2]
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    (path / f"lib/python{major}.{minor}/site-packages").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n"
    )
    return path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("spec", "floor"),
    [
        (">=3.12", (3, 12)),
        (">=3.10,<4", (3, 10)),
        ("~=3.11", (3, 11)),
        ("==3.13.*", (3, 13)),
        (">= 3.9, != 3.9.1", (3, 9)),
        ("<3.13", None),
        (">=3.8, >=3.11", (3, 11)),
    ],
)
def test_requires_python_floor_is_the_lowest_allowed_version(
    spec: str, floor: tuple[int, int] | None
) -> None:
    assert requires_python_floor(spec) == floor


def test_versions_are_read_in_every_spelling() -> None:
    assert parse_version("py312") == (3, 12)
    assert parse_version("3.14.0") == (3, 14)
    assert parse_version("cpython-3.13.1") == (3, 13)
    assert parse_version("latest") is None


def test_project_venv_gives_interpreter_site_packages_and_version(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / ".venv", "3.12.4")
    env = resolve_project_env(tmp_path, environ={})
    assert env.interpreter == venv / "bin" / "python"
    assert env.interpreter_version == (3, 12)
    assert env.interpreter_source == ".venv"
    assert env.prefix == venv
    assert env.site_packages == (venv / "lib/python3.12/site-packages",)
    assert (env.target, env.target_source) == ("3.12", "the interpreter")
    assert not env.isolated


def test_explicit_python_takes_an_interpreter_or_a_venv(tmp_path: Path) -> None:
    make_venv(tmp_path / ".venv", "3.12.4")
    other = make_venv(tmp_path / "elsewhere", "3.13.0")
    for given in (other, other / "bin" / "python"):
        env = resolve_project_env(tmp_path, python=given, environ={})
        assert (env.prefix, env.interpreter_source, env.target) == (other, "--python", "3.13")


def test_a_plain_interpreter_is_asked_for_its_version_and_site_packages(tmp_path: Path) -> None:
    env = resolve_project_env(tmp_path, python=sys.executable, environ={})
    assert env.interpreter_version == sys.version_info[:2]
    assert env.prefix == Path(sys.prefix)
    assert env.site_packages


def test_detection_order_manifest_then_dot_venv_then_virtual_env(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    active = make_venv(tmp_path / "active")
    assert resolve_project_env(project, environ={"VIRTUAL_ENV": str(active)}).prefix == active
    local = make_venv(project / ".venv")
    assert resolve_project_env(project, environ={"VIRTUAL_ENV": str(active)}).prefix == local
    configured = make_venv(project / "envs" / "app")
    env = resolve_project_env(project, manifest_python="envs/app", environ={})
    assert (env.prefix, env.interpreter_source) == (configured, "[tool.safeship] python")


def test_uv_and_poetry_environments_are_found(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    member = workspace / "packages" / "api"
    member.mkdir(parents=True)
    write(workspace / "uv.lock", "version = 1\n")
    shared = make_venv(workspace / ".venv")
    assert resolve_project_env(member, environ={}).prefix == shared

    import base64
    import hashlib

    project = tmp_path / "poetry_app"
    write(project / "pyproject.toml", '[tool.poetry]\nname = "My App"\n')
    digest = hashlib.sha256(os.path.normcase(os.path.realpath(project)).encode()).digest()
    name = f"my_app-{base64.urlsafe_b64encode(digest).decode()[:8]}-py3.12"
    venv = make_venv(tmp_path / "cache" / name)
    env = resolve_project_env(project, environ={"POETRY_VIRTUALENVS_PATH": str(tmp_path / "cache")})
    assert (env.prefix, env.interpreter_source) == (venv, "poetry")


def test_no_environment_is_isolated_on_safeships_interpreter(tmp_path: Path) -> None:
    env = resolve_project_env(tmp_path, environ={})
    assert env.isolated
    assert env.interpreter == Path(sys.executable)
    assert "no" in env.describe() or "none" in env.describe()


def test_target_version_order(tmp_path: Path) -> None:
    make_venv(tmp_path / ".venv", "3.11.2")
    write(tmp_path / ".python-version", "3.13.1\n")
    assert resolve_project_env(tmp_path, environ={}).target_source == ".python-version 3.13.1"
    write(tmp_path / "pyproject.toml", '[tool.ruff]\ntarget-version = "py310"\n')
    env = resolve_project_env(tmp_path, environ={})
    assert (env.target, env.ruff_target) == ("3.10", "py310")
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\nrequires-python = ">=3.12"\n[tool.ruff]\ntarget-version = "py310"\n',
    )
    env = resolve_project_env(tmp_path, environ={})
    assert (env.target, env.target_source) == ("3.12", "requires-python >=3.12")
    env = resolve_project_env(tmp_path, manifest_python_version="3.14", environ={})
    assert env.target == "3.14"
    env = resolve_project_env(
        tmp_path, python_version="3.13", manifest_python_version="3.14", environ={}
    )
    assert (env.target, env.target_source) == ("3.13", "--python-version")


def test_unusable_settings_are_errors_that_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        resolve_project_env(tmp_path, python=tmp_path / "nope", environ={})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no Python interpreter"):
        resolve_project_env(tmp_path, python=empty, environ={})
    with pytest.raises(UsageError, match=r"3\.7 to 3\.14"):
        resolve_project_env(tmp_path, python_version="2.7", environ={})
    with pytest.raises(ConfigError, match="python"):
        resolve_project_env(tmp_path, manifest_python="missing/venv", environ={})
    not_python = tmp_path / "script"
    not_python.write_text("#!/bin/sh\necho hello\n")
    not_python.chmod(0o755)
    with pytest.raises(UsageError, match="not a working Python interpreter"):
        resolve_project_env(tmp_path, python=not_python, environ={})
