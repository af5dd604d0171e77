"""A message is one line whatever the width: CI logs are searched for whole messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SAFESHIP = str(Path(sys.executable).parent / "safeship")
APP = "a_service_with_a_rather_long_package_name.main"


@pytest.mark.parametrize(
    "environ",
    [{}, {"COLUMNS": "80"}, {"COLUMNS": "40"}, {"TERM": "dumb"}],
    ids=["no COLUMNS", "COLUMNS=80", "COLUMNS=40", "TERM=dumb"],
)
def test_an_error_and_its_hint_are_one_line_each(tmp_path: Path, environ: dict[str, str]) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "safeship.toml").write_text(f'[service]\napp = "{APP}:app"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERM")}
    result = subprocess.run(
        [SAFESHIP, "deploy", "--source", str(elsewhere)],
        cwd=project,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    # The message runs from the directory to the last path it looked for, on one line.
    assert any(
        line.startswith("error:") and str(elsewhere) in line and line.endswith("main/__init__.py")
        for line in lines
    ), result.stderr
    hints = [line for line in lines if line.startswith("hint:")]
    assert len(hints) == 1 and hints[0].endswith("safeship.toml"), result.stderr
    assert len(lines) == 2, result.stderr
