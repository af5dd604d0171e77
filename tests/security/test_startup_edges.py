"""Startup edges: an unknown environment or a malformed manifest ends like every other startup
failure (one startup_failed line, exit 3); non-finite phase timeouts are refused; a stop
signal during a hanging phase never reports the app as started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from safeship.core.startup import PhaseSpec
from safeship.service.startup import Phase
from safeship.testing import free_port, scaled, wait_until

APPS = Path(__file__).parent / "apps"


def _start(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "edges_app:app", "--app-dir", str(APPS),
             "--host", "127.0.0.1", "--port", str(free_port())],
            env={**os.environ, "JWT_SECRET": "x" * 40, "PYTHONUNBUFFERED": "1", **env},
            cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _failure(output: str) -> dict[str, object]:
    lines = [line for line in output.splitlines() if line.startswith('{"event": "startup_failed"')]
    assert len(lines) == 1, output
    return json.loads(lines[0])


@pytest.mark.parametrize(
    ("env", "manifest", "expected"),
    [
        ({"SAFESHIP_ENV": "prod"}, None, "unknown environment 'prod'"),
        ({"SAFESHIP_ENV": "test"}, "[auth\nbroken = ", "safeship.toml"),
        ({"SAFESHIP_ENV": "test"}, '[auth]\nleeway_seconds = "soon"\n', "leeway_seconds"),
        # inf would mean tokens never expire; a deadline of inf would mean a hang.
        ({"SAFESHIP_ENV": "test"}, "[auth]\nleeway_seconds = inf\n", "finite"),
        ({"SAFESHIP_ENV": "test"}, "[deploy]\ndrain_seconds = nan\n", "drain_seconds"),
        # redis-py raised at import, and its parse errors may quote parts of the URL.
        (
            {"SAFESHIP_ENV": "test", "REDIS_URL": "redis://u:s3cret@h:notaport/0"},
            None,
            "REDIS_URL: not a Redis URL",
        ),
        ({"SAFESHIP_ENV": "test", "REDIS_URL": "redis:/u:s3cret@h"}, None, "not a Redis URL"),
    ],
)
def test_bad_environment_or_manifest_is_one_failure_line_and_exit_3(
    tmp_path: Path, env: dict[str, str], manifest: str | None, expected: str
) -> None:
    (tmp_path / "safeship.toml").write_text(manifest or "[service]\nname = 'edges'\n")
    app_copy = tmp_path / "edges_app.py"
    app_copy.write_text((APPS / "edges_app.py").read_text().replace("manifest=Manifest(), ", ""))
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "edges_app:app", "--app-dir", str(tmp_path),
             "--host", "127.0.0.1", "--port", str(free_port())],
            env={**os.environ, "JWT_SECRET": "x" * 40, **env},
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    assert proc.wait(timeout=scaled(30)) == 3
    output = log.read_text()
    assert "Traceback" not in output and "s3cret" not in output
    failure = _failure(output)
    assert failure["phase"] == "manifest" and expected in str(failure["error"])


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), -1.0, 0.0, 1e12])
def test_non_finite_or_non_positive_phase_timeouts_are_refused(timeout: float) -> None:
    async def noop() -> None:
        return None

    with pytest.raises(ValueError, match="timeout"):
        Phase("database", noop, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        PhaseSpec("database", timeout)


@pytest.mark.parametrize(("raw", "expected"), [("inf", "finite"), ("1e12", "at most 86400")])
def test_a_phase_timeout_from_the_environment_that_cannot_bound_it_fails_startup(
    tmp_path: Path, raw: str, expected: str
) -> None:
    """inf (the watchdog thread died of it, so a hung phase hung forever), or too large for
    the watchdog's timer: one startup_failed line naming the phase's timeout, exit 3."""
    log = tmp_path / "out.log"
    proc = _start({"SAFESHIP_ENV": "test", "EDGES_TIMEOUT": raw}, tmp_path, log)
    try:
        code = proc.wait(timeout=scaled(30))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert code == 3 and "Traceback" not in output, output
    assert "hanging" not in output  # the phase never ran without a deadline
    failure = _failure(output)
    assert failure["phase"] == "database" and expected in str(failure["error"]), failure


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_a_hanging_phase_does_not_report_startup_complete(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """The phase hangs for up to 600 s: the process must end well before, without the server
    saying the app started (SIGINT, Ctrl-C, used to wait for the phase's timeout and then
    report a startup failure)."""
    log = tmp_path / "out.log"
    proc = _start({"SAFESHIP_ENV": "test", "EDGES_TIMEOUT": "600"}, tmp_path, log)
    try:
        wait_until(lambda: "hanging" in log.read_text(), timeout=20, what="the phase to hang")
        proc.send_signal(sig)
        code = proc.wait(timeout=scaled(20))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "Application startup complete" not in output, output
    assert code == 0 and "Traceback" not in output and "startup_failed" not in output, output
