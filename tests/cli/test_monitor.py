"""``safeship monitor --once``: exit codes and JSON, against a real service."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from safeship.cli import main
from safeship.testing import free_port

from ..monitor.conftest import OTHER_SECRET, service, write_manifest

__all__ = ["service"]  # the fixture, shared with tests/monitor


def run(root: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_once_passes_on_a_healthy_service(service, tmp_path: Path):
    write_manifest(tmp_path, service.url)
    code, out, _ = run(tmp_path, "monitor", "--once", "--env", "test", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["ok"] and result["samples"][0]["category"] == "ok"
    assert (tmp_path / ".safeship" / "monitor.db").is_file()


def test_once_fails_on_auth_and_says_where_to_look(service, tmp_path: Path):
    write_manifest(tmp_path, service.url, secret_file=OTHER_SECRET)
    code, out, _ = run(tmp_path, "monitor", "--once", "--env", "test")
    assert code == 1
    assert "auth" in out and "safeship diagnose --env test" in out
    assert OTHER_SECRET not in out


def test_an_environment_without_a_url_is_a_config_error(tmp_path: Path):
    write_manifest(tmp_path, f"http://127.0.0.1:{free_port()}")
    code, out, _ = run(tmp_path, "monitor", "--once", "--env", "staging", "--json")
    assert code == 2
    error = json.loads(out)
    assert "has no url" in error["message"] and "environments.staging" in error["hint"]


def test_impossible_thresholds_name_the_key(tmp_path: Path):
    write_manifest(tmp_path, "http://127.0.0.1:9", "window = 2", "failures = 3")
    code, _, err = run(tmp_path, "monitor", "--once")
    assert code == 2 and "monitor" in err and "failures" in err
