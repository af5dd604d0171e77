"""Every command's --help names values in words, lists the allowed ones, and loads little."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import typer

from safeship.cli import app, main
from safeship.cli.check import GATE_NAMES
from safeship.cli.deploy import DEPLOY_GATE_NAMES, TARGET_NAMES

# Python types as typer prints them: <str>, <int range>, <list[str]>, <path>, <float>...
TYPE_WORDS = re.compile(r"<(str|int|float|bool|path|list|dict|tuple|file)\b|range>|\[str\]")


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if hasattr(command, "commands"):
            found.extend(_commands(command, (*path, name)))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_listed() -> None:
    assert {("check",), ("deploy",), ("probe",), ("audit", "verify")} <= set(COMMANDS)


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "safeship")
def test_help_shows_words_not_python_types(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: safeship" in out
    assert not TYPE_WORDS.findall(out), out


@pytest.mark.parametrize(
    ("path", "option", "values"),
    [
        (("check",), "--only", "static|legacy|secrets|imports|boot|deploy-config"),
        (("check",), "--skip", "static|legacy|secrets|imports|boot|deploy-config"),
        (("check",), "--format", "text|json|sarif"),
        (("deploy",), "--skip", "static|legacy|secrets"),
        (("deploy",), "--target", "local|cloudrun|kubernetes"),
    ],
)
def test_help_lists_the_allowed_values(
    path: tuple[str, ...], option: str, values: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main([*path, "--help"])
    assert f"{option} {values}" in capsys.readouterr().out


def test_the_listed_values_are_the_registered_ones() -> None:
    from safeship.core.policy import DEPLOY_GATES
    from safeship.deploy.targets import TARGETS
    from safeship.gates import GATES

    assert tuple(GATES) == GATE_NAMES
    assert tuple(DEPLOY_GATES) == DEPLOY_GATE_NAMES
    assert set(TARGETS) == set(TARGET_NAMES)


# What a command imports when it runs; --help must not pay for any of it.
HEAVY = (
    "rich.console", "libcst", "httpx", "websockets", "uvicorn", "pydantic", "asyncio",
    "safeship.config", "safeship.gates", "safeship.deploy", "safeship.demo", "safeship.probe",
    "safeship.monitor",
)  # fmt: skip


def test_help_imports_no_command_code() -> None:
    code = (
        "import sys\n"
        "from safeship.cli import main\n"
        "main(['--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
