"""The installed ``safeship`` entry point maps outcomes to exit codes (not just CliRunner)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SAFESHIP = str(Path(sys.executable).parent / "safeship")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SAFESHIP, *args], capture_output=True, text=True, timeout=60)


def test_failed_verdict_exits_1():
    result = run("probe", "ws://127.0.0.1:1/ws", "--connect-only", "--json")
    assert result.returncode == 1, result.stderr
    assert '"tcp_refused"' in result.stdout


@pytest.mark.parametrize(
    "args",
    [("probe",), ("no-such-command",), ("probe", "ws://x/ws", "--timeout", "-1")],
)
def test_usage_errors_exit_2_without_traceback(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("safeship ")


def test_a_usage_error_with_json_answers_in_json(capsys) -> None:
    import json

    from safeship.cli import main

    assert main(["history", "--last", "0", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["error"] == "UsageError"
    assert "--last" in out["message"]
    assert out["hint"] == "see `safeship history --help`"
