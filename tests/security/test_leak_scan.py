"""Leak scans of every output: one guarded service at DEBUG authenticated every way there is
(and refused every way), then its log, health endpoints and metrics; ``safeship probe`` and
``safeship check`` in every format; the audit log. No secret, token, ticket or password may
appear in any of them (the demo's reports are scanned by tests/e2e/test_demo.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from safeship.cli import main
from safeship.deploy.audit import AuditLog
from safeship.testing import scaled
from safeship.tokens import mint

from ._server import SECRET, Server, guarded_server

# Minted at collection: they must outlive a whole suite run, not only this module.
TOKENS = [mint(SECRET, f"user{i}", ttl=6 * 3600) for i in range(5)]
DB_PASSWORD = "Db-pass-7f3a9c"
CHECK_SECRET = "check-secret-Zm9vYmFyYmF6cXV4cXV1eC0xMjM0NTY"


def _values(*extra: str) -> list[str]:
    parts = [t.split(".")[2] for t in TOKENS] + [t.split(".")[1] for t in TOKENS]
    return [SECRET, *TOKENS, *parts, DB_PASSWORD, CHECK_SECRET, *extra]


def _assert_clean(where: str, text: str, *extra: str) -> None:
    for value in _values(*extra):
        assert value not in text, f"{where} leaks {value[:6]}..."


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, list[str]]]:
    with guarded_server(tmp_path_factory.mktemp("leaks")) as server:
        tickets = _exercise(server)
        yield server, tickets


def _exercise(server: Server) -> list[str]:
    ws = server.url.replace("http://", "ws://")
    header = {"Authorization": f"Bearer {TOKENS[0]}"}
    tickets = [
        httpx.post(server.url + "/auth/ticket?path=/ws", headers=header, timeout=5).json()["ticket"]
        for _ in range(3)
    ]
    subprotocol = "jwt." + base64.urlsafe_b64encode(TOKENS[1].encode()).decode().rstrip("=")

    async def scenario() -> None:
        async with connect(ws + "/ws", additional_headers=header) as conn:
            await conn.send(json.dumps({"type": "auth.refresh", "token": TOKENS[4]}))
            await conn.recv()
            await conn.send(json.dumps({"type": "auth.refresh", "token": TOKENS[3] + "x"}))
            await conn.recv()
        async with connect(ws + "/ws", subprotocols=["jwt-auth", subprotocol]) as conn:
            await conn.send("hi")
            await conn.recv()
        async with connect(f"{ws}/ws?ticket={tickets[0]}") as conn:
            await conn.send("hi")
            await conn.recv()
        refused = [
            f"{ws}/ws?ticket={tickets[0]}",  # spent
            f"{ws}/ws?tic%6bet={tickets[1]}",  # encoded name
            f"{ws}/ws?token={TOKENS[2]}&access_token={TOKENS[2]}",
            f"{ws}/other?ticket={tickets[2]}",  # another path
            f"{ws}/ws?db=postgresql://app:{DB_PASSWORD}@db/app",
        ]
        for url in refused:
            with contextlib.suppress(InvalidStatus, OSError):
                async with connect(url, additional_headers={"Cookie": f"session={TOKENS[3]}"}):
                    pass
        bad = {"Authorization": f"Bearer {TOKENS[2][:-3]}AAA"}
        with contextlib.suppress(InvalidStatus):
            async with connect(ws + "/ws", additional_headers=bad):
                pass

    asyncio.run(asyncio.wait_for(scenario(), scaled(30)))
    httpx.get(f"{server.url}/health/live?token={TOKENS[2]}", timeout=5)
    return list(tickets)


def test_the_debug_log_holds_no_credential(exercised: tuple[Server, list[str]]) -> None:
    server, tickets = exercised
    output = server.output()
    assert "/ws?ticket=" in output and "DEBUG" in output  # the requests were logged ...
    _assert_clean("the DEBUG log", output, *tickets)  # ... without their credentials


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health/startup", "/metrics"])
def test_health_and_metrics_hold_no_credential(
    exercised: tuple[Server, list[str]], path: str
) -> None:
    server, tickets = exercised
    response = httpx.get(server.url + path, timeout=5)
    assert response.status_code == 200
    _assert_clean(path, response.text, *tickets)


@pytest.mark.parametrize("as_json", [False, True])
def test_probe_output_holds_no_credential(
    exercised: tuple[Server, list[str]], tmp_path: Path, as_json: bool
) -> None:
    server, _ = exercised
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS[0])
    ws = server.url.replace("http://", "ws://")
    for argv in (
        [f"{ws}/ws", "--token", TOKENS[0], "--send", '{"x": 1}'],
        [f"{ws}/ws", "--token-file", str(token_file)],
        [f"{ws}/ws?ticket=abc", "--token", TOKENS[0]],
        [f"{ws}/ws", "--token", TOKENS[0][:-4] + "AAAA"],
    ):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(["probe", *argv, *(["--json"] if as_json else [])])
        _assert_clean("probe", out.getvalue() + err.getvalue())


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SAFESHIP_ENV", "JWT_SECRET", "JWT_SECRET_STAGING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_SECRET_STAGING", CHECK_SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg:/app:{DB_PASSWORD}@db/app")
    root = tmp_path / "proj"
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "main.py").write_text("app = None\n")
    (root / "client.env").write_text(f"JWT_SECRET_STAGING={CHECK_SECRET}-but-different\n")
    (root / "safeship.toml").write_text(
        '[service]\nname = "svc"\napp = "svc.main:app"\n'
        '[secrets.JWT_SECRET]\nconsumers = ["env", "file:client.env"]\n'
    )
    return root


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_output_holds_no_secret_in_any_format(project: Path, fmt: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(project), "--env", "staging", "--only", "secrets",
                     "--format", fmt, "--force", "--reason", f"scan {CHECK_SECRET}"])  # fmt: skip
    text = out.getvalue() + err.getvalue()
    text += (project / ".safeship" / "audit.jsonl").read_text()
    assert code == 1, text  # the consumers disagree: a finding, shown by fingerprint
    _assert_clean(f"check --format {fmt}", text, f"{CHECK_SECRET}-but-different")


def test_the_audit_log_holds_no_secret(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", environ={"SAFESHIP_ACTOR": "ci"})
    log.append(
        "forced",
        {
            "url": f"postgresql://app:{DB_PASSWORD}@db/app",
            "header": f"Authorization: Bearer {TOKENS[0]}",
            "nested": [{"ticket": f"/ws?ticket={TOKENS[1]}"}],
        },
        why=f"deploying with token {TOKENS[2]}",
    )
    _assert_clean("the audit log", (tmp_path / "audit.jsonl").read_text())
