"""The ``safeship`` entry point without the cli extra: what to install, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_without_the_cli_packages_it_says_what_to_install() -> None:
    # -S -I: no site-packages, so only the standard library and safeship's source are found.
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); import runpy; runpy.run_module('safeship', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    first, second = result.stderr.splitlines()
    assert first.startswith("error: the safeship command line is not installed (missing: typer,")
    assert second == "hint: run pip install 'safeship[cli]'"


def test_with_them_it_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safeship", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("safeship ")
