"""pyproject's floors are the versions the compatibility matrix runs against."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
TOOL_CHAIN = {"ruff", "ty", "libcst", "typer", "rich", "httpx", "websockets", "uvicorn"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _oldest_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci/constraints-oldest.txt").read_text().splitlines():
        line = line.partition("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_each_floor_is_pinned_in_the_oldest_venv() -> None:
    pins = _oldest_pins()
    for spec in _project()["dependencies"]:
        req = Requirement(spec)
        floors = [s.version for s in req.specifier if s.operator == ">="]
        assert floors, f"{spec}: give a floor (>=)"
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned and Version(pinned) == Version(floors[0]), (
            f"{spec}: .ci/constraints-oldest.txt must pin {req.name}=={floors[0]}"
        )


def test_the_service_install_holds_no_tool_chain() -> None:
    base = {canonicalize_name(Requirement(s).name) for s in _project()["dependencies"]}
    assert not base & TOOL_CHAIN
    cli = {
        canonicalize_name(Requirement(s).name) for s in _project()["optional-dependencies"]["cli"]
    }
    assert cli >= TOOL_CHAIN


def test_the_compatibility_doc_lists_the_oldest_versions() -> None:
    doc = (ROOT / "docs/compatibility.md").read_text()
    missing = [
        f"{name}=={v}"
        for name, v in _oldest_pins().items()
        if not re.search(rf"(?<![\d.]){re.escape(v)}(?![\d.])", doc)
    ]
    assert not missing, f"docs/compatibility.md does not give {missing}"


def test_the_command_checks_for_every_package_of_the_cli_extra() -> None:
    from safeship.__main__ import CLI_PACKAGES

    extras = _project()["optional-dependencies"]
    # A package only some commands import (apprise, for notifications) need not be checked.
    cli = {canonicalize_name(Requirement(s).name) for s in extras["cli"]}
    assert set(CLI_PACKAGES) <= cli
    assert cli >= TOOL_CHAIN
