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


def test_the_long_running_monitor_alerts_serves_and_stops_on_sigterm(service, tmp_path: Path):
    """``safeship monitor`` as a process: an auth incident with its fingerprints, a JSON
    notification, the analysis endpoint, and a clean stop on SIGTERM."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading

    import httpx

    from safeship.testing import scaled, wait_until

    received: list[dict] = []
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hooks = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    write_manifest(tmp_path, service.url, secret_file=OTHER_SECRET)
    env = {**os.environ, "SAFESHIP_NOTIFY_URLS": f"json://127.0.0.1:{hooks.server_address[1]}/h"}
    safeship = str(Path(sys.executable).parent / "safeship")
    proc = subprocess.Popen(
        [safeship, "monitor", "--json"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_event(kind: str) -> dict:
        while True:
            event = json.loads(lines.get(timeout=scaled(20)))
            if event["event"] == kind:
                return event

    try:
        started = next_event("started")
        assert started["endpoints"] == ["test"] and started["notify"].startswith("1 URL(s)")
        opened = next_event("incident_opened")
        assert opened["class"] == "auth" and "fingerprint" in opened["explanation"]
        reply = httpx.get(started["listen"] + "/analysis/test", timeout=5)
        assert reply.status_code == 503 and reply.json()["phase"] == "Failed"
        wait_until(lambda: received, timeout=10, what="the notification")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(scaled(15)) == 0
        assert next_event("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        hooks.shutdown()
    assert [m["title"] for m in received] == ["safeship: incident opened (test)"]
    assert "see more: safeship diagnose --env test" in received[0]["message"]
    assert OTHER_SECRET not in json.dumps(received)


def test_once_runs_add_up_to_an_incident(service, tmp_path: Path):
    """Cron runs share the history: the third failed run in a row opens the incident."""
    write_manifest(tmp_path, service.url)
    service.set("1011")
    opened = []
    for _ in range(3):
        code, out, _ = run(tmp_path, "monitor", "--once", "--json")
        assert code == 1
        opened.append(json.loads(out)["analysis"]["test"]["incidents"])
    assert opened[0] == {} and opened[1] == {} and set(opened[2]) == {"availability"}
