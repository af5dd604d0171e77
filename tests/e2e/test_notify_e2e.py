"""Deploy notifications end to end: a real deploy on the local target, with its events sent
through apprise to a JSON webhook on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .deploy_helpers import OTHER_SECRET, QUICK, SECRET, cleanup, cli, make_project, set_deploy

pytestmark = pytest.mark.e2e


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SAFESHIP_NOTIFY_URLS", f"json://127.0.0.1:{server.server_address[1]}/d")
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in ("AGENT_SERVICE_FAULT", "DEPLOY_FAULT_AFTER", "SAFESHIP_ENV"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_deploy_notifies_verified_switched_promoted_then_a_failure_with_its_cause(
    tmp_path: Path, hooks: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    root = make_project(tmp_path)
    with cleanup(root):
        assert cli(root, "deploy", *QUICK, "--json").code == 0
        kinds = [m["title"].split(":")[1].split("(")[0].strip() for m in hooks]
        assert kinds == ["verified", "switched", "promoted"], hooks
        assert all(m["title"].endswith("(test)") or "r1" in m["title"] for m in hooks)

        hooks.clear()
        (root / "clients.env").write_text(f"JWT_SECRET_TEST={SECRET}\n")
        set_deploy(root, probe_secret="file:clients.env")
        monkeypatch.setenv("JWT_SECRET_TEST", OTHER_SECRET)
        assert cli(root, "deploy", *QUICK, "--json").code == 1
    (failed,) = hooks
    assert failed["type"] == "failure" and failed["title"] == "safeship: failed (test r2)"
    message = failed["message"]
    assert "cause: websocket: HTTP 401" in message
    assert "see more: safeship diagnose --env test" in message
    assert SECRET not in json.dumps(hooks) and OTHER_SECRET not in json.dumps(hooks)
