"""GcpSecretManagerSource: the missing-extra error, and the real client library talking REST
to a small Secret Manager stand-in on 127.0.0.1 (only when the cloudrun extra is installed)."""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from safeship.errors import SecretError
from safeship.secrets import GcpSecretManagerSource, SecretSource, source_from_spec

SECRET = "gcp-held-secret-0123456789-abcdefghijklmnop"


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)
    monkeypatch.setitem(sys.modules, "google.api_core", None)
    with pytest.raises(SecretError) as caught:
        source_from_spec("gcp:projects/p/secrets/s", root=Path("."))
    assert caught.value.hint == "pip install 'safeship[cloudrun]'"
    assert "google-cloud-secret-manager" in caught.value.message


@pytest.mark.parametrize("spec", ["gcp:", "gcp:projects", "gcp:secrets/s", "gcp:projects/p/x/y"])
def test_invalid_resource_names_are_rejected(spec: str) -> None:
    with pytest.raises(SecretError) as caught:
        source_from_spec(spec, root=Path("."))
    assert "gcp:projects/PROJECT" in (caught.value.hint or "")


class _SecretManager:
    """The two REST calls the source makes, over an in-memory set of secret versions."""

    def __init__(self) -> None:
        # secret resource name -> list of (version id, state, value), oldest first
        self.secrets: dict[str, list[tuple[int, str, str]]] = {}
        self.denied: set[str] = set()
        self.requests: list[str] = []

    def handle(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        self.requests.append(f"{method} {path}")
        path = path.removeprefix("/v1/")
        if path.endswith(":access"):
            name = path.removesuffix(":access")
            secret, _, version = name.rpartition("/versions/")
            if secret in self.denied:
                return 403, _error(403, "PERMISSION_DENIED")
            for number, state, value in self.secrets.get(secret, []):
                if str(number) == version:
                    if state != "ENABLED":
                        return 400, _error(400, "FAILED_PRECONDITION")
                    data = base64.b64encode(value.encode()).decode()
                    return 200, {"name": name, "payload": {"data": data}}
            return 404, _error(404, "NOT_FOUND")
        if path.endswith("/versions"):
            secret = path.removesuffix("/versions")
            if secret in self.denied:
                return 403, _error(403, "PERMISSION_DENIED")
            if secret not in self.secrets:
                return 404, _error(404, "NOT_FOUND")
            wanted = query.get("filter", [""])[0]
            versions = [
                {"name": f"{secret}/versions/{number}", "state": state}
                for number, state, _ in reversed(self.secrets[secret])  # newest first
                if wanted != "state:ENABLED" or state == "ENABLED"
            ]
            return 200, {"versions": versions, "totalSize": len(versions)}
        return 404, _error(404, "NOT_FOUND")


def _error(code: int, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": status.lower(), "status": status}}


@pytest.fixture
def secret_manager() -> Iterator[tuple[_SecretManager, str]]:
    pytest.importorskip("google.cloud.secretmanager")
    backend = _SecretManager()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = backend.handle("GET", url.path, parse_qs(url.query))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield backend, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _client(host: str) -> Any:
    secretmanager = pytest.importorskip("google.cloud.secretmanager")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports.rest import (
        SecretManagerServiceRestTransport,
    )

    transport = SecretManagerServiceRestTransport(
        host=host, url_scheme="http", credentials=AnonymousCredentials()
    )
    return secretmanager.SecretManagerServiceClient(transport=transport)


def test_reads_the_latest_enabled_version(secret_manager: tuple[_SecretManager, str]) -> None:
    backend, host = secret_manager
    name = "projects/p/secrets/jwt"
    backend.secrets[name] = [
        (1, "ENABLED", "old"),
        (2, "ENABLED", SECRET + "\n"),
        (3, "DISABLED", "x"),
    ]
    source = GcpSecretManagerSource(f"gcp:{name}", client=_client(host), timeout=5)
    assert isinstance(source, SecretSource)
    assert source.spec == f"gcp:{name}"
    assert name in source.describe()
    # The secret named in the spec answers for any key; the trailing newline is stripped.
    assert source.get("JWT_SECRET_STAGING") == SECRET
    assert f"GET /v1/{name}/versions/2:access" in backend.requests


def test_project_spec_reads_the_secret_named_like_the_key(
    secret_manager: tuple[_SecretManager, str],
) -> None:
    backend, host = secret_manager
    backend.secrets["projects/p/secrets/JWT_SECRET_STAGING"] = [(7, "ENABLED", SECRET)]
    source = GcpSecretManagerSource("projects/p", client=_client(host), timeout=5)
    assert source.get("JWT_SECRET_STAGING") == SECRET
    assert source.get("JWT_SECRET") is None  # no such secret: absent, not an error
    assert source.get("../escape") is None  # not a secret id at all


def test_pinned_version_and_no_enabled_version(secret_manager: tuple[_SecretManager, str]) -> None:
    backend, host = secret_manager
    backend.secrets["projects/p/secrets/s"] = [
        (1, "ENABLED", "first-" + SECRET),
        (2, "DISABLED", "x"),
    ]
    client = _client(host)
    pinned = GcpSecretManagerSource("projects/p/secrets/s/versions/1", client=client, timeout=5)
    assert pinned.get("ANY") == "first-" + SECRET
    with pytest.raises(SecretError, match="disabled or destroyed"):
        GcpSecretManagerSource("projects/p/secrets/s/versions/2", client=client, timeout=5).get("A")
    backend.secrets["projects/p/secrets/s"] = [(1, "DISABLED", "x")]
    assert GcpSecretManagerSource("projects/p/secrets/s", client=client, timeout=5).get("A") is None


def test_permission_denied_is_an_error_with_a_hint(
    secret_manager: tuple[_SecretManager, str],
) -> None:
    backend, host = secret_manager
    backend.secrets["projects/p/secrets/s"] = [(1, "ENABLED", SECRET)]
    backend.denied.add("projects/p/secrets/s")
    source = GcpSecretManagerSource("projects/p/secrets/s", client=_client(host), timeout=5)
    with pytest.raises(SecretError) as caught:
        source.get("JWT_SECRET")
    assert "permission denied" in caught.value.message
    assert "secretAccessor" in (caught.value.hint or "")


def test_unreachable_service_fails_within_the_deadline() -> None:
    # A port that refuses connections: the call must come back as a SecretError, not hang.
    from safeship.testing import free_port

    source = GcpSecretManagerSource(
        "projects/p/secrets/s", client=_client(f"127.0.0.1:{free_port()}"), timeout=1
    )
    with pytest.raises(SecretError, match="did not answer"):
        source.get("JWT_SECRET")
