"""``safeship diagnose`` names the root cause of each of the incident's three failures, replayed
on the local target with the reference backend.

The deploy pipeline would have stopped each of them (that is what it is for), so each replay
puts the broken state in place the way the incident's deploy script did: traffic switched to
a revision before anyone checked it (through the target's own API), a backend secret nobody
compared, and a load balancer that accepts connections no backend serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeship.config import load_manifest
from safeship.deploy.operations import revision_spec
from safeship.deploy.targets.local import LocalTarget
from safeship.testing import scaled, wait_until

from .deploy_helpers import (
    ENV,
    OTHER_SECRET,
    ROOT,
    SECRET,
    cleanup,
    cli,
    first_deploy,
    live,
    make_project,
    serving,
    set_deploy,
)

pytestmark = pytest.mark.e2e

BROKEN_AGENT = ROOT / "tests" / "examples" / "broken_agents" / "nameerror_agent.py"

# The original image: it binds at once and runs its startup behind it, and its last phase
# imports an agent module lazily ("services", as in the incident).
LAZY_SERVICES = """\
import asyncio
import importlib
import os

from agent_service.main import app, ship

ship.startup.background = True


@ship.phase("services", timeout=10)
async def services() -> None:
    await asyncio.sleep(float(os.environ.get("SERVICES_WARMUP", "2")))
    importlib.import_module("agent_service.agents.research")
"""

BACKGROUND = """\
from agent_service.main import app, ship

ship.startup.background = True
"""


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    for name in ("AGENT_SERVICE_FAULT", "DEPLOY_FAULT_AFTER", "SAFESHIP_ENV"):
        monkeypatch.delenv(name, raising=False)


def diagnose(root: Path) -> dict:
    result = cli(root, "diagnose", "--env", ENV, "--json")
    assert result.code == 1, result.out + result.err
    chain: dict = result.json
    print(f"diagnose: {chain['cause']} in {chain['elapsed_s']:.2f} s")  # the goal is < 5 s
    return chain


def whats(chain: dict) -> list[str]:
    return [link["what"] for link in chain["chain"]]


def start_and_switch(root: Path, app: str, **env: str) -> str:
    """What the incident's deploy script did: start a revision and send traffic to it at
    once, without verifying it (through the target's API: the pipeline would refuse)."""
    manifest = load_manifest(root / "safeship.toml")
    spec = revision_spec(manifest, ENV, root)
    spec = dataclasses.replace(spec, app=app, env={**spec.env, **env})

    async def run() -> str:
        target = LocalTarget.from_manifest(manifest)
        try:
            revision = await target.start(spec)
            await target.switch(revision.id)
            return revision.id
        finally:
            target.close()

    return asyncio.run(run())


def test_403_on_every_websocket_is_traced_to_the_consumer_with_another_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = make_project(tmp_path)
    with cleanup(root):
        # The backend reads JWT_SECRET_TEST from its environment; the clients sign with the
        # value in clients.env. Nobody compared them: the deploy's probes signed like the
        # backend, so it verified.
        monkeypatch.setenv("JWT_SECRET_TEST", OTHER_SECRET)
        first_deploy(root)
        (root / "clients.env").write_text(f"JWT_SECRET_TEST={SECRET}\n")
        set_deploy(root, probe_secret="file:clients.env")
        with (root / "safeship.toml").open("a") as manifest:
            manifest.write('\n[secrets.JWT_SECRET]\nconsumers = ["env", "file:clients.env"]\n')
        chain = diagnose(root)
    assert chain["cause"] == "secret_mismatch", chain
    text = whats(chain)
    assert "HTTP 401" in text[0]
    assert text[1].startswith("token verification fails")
    assert "differs from the backend's" in text[2] and "revision r1" in text[2]
    client, backend = chain["chain"][2]["data"]["client"], chain["chain"][2]["data"]["backend"]
    assert client["fingerprint"] != backend["fingerprint"]
    assert text[3].startswith("which consumer holds which: env JWT_SECRET_TEST = ")
    assert f"file:clients.env JWT_SECRET_TEST = {client['fingerprint']}" in text[3]
    assert "into file:clients.env" in chain["hint"]
    out = str(chain)
    assert SECRET not in out and OTHER_SECRET not in out


def test_a_backend_that_died_in_startup_is_traced_to_the_name_error(tmp_path: Path):
    root = make_project(tmp_path)
    examples = root / "examples"
    with cleanup(root):
        first_deploy(root)
        shutil.copy(BROKEN_AGENT, examples / "agent_service" / "agents" / "research.py")
        (examples / "lazy_services.py").write_text(LAZY_SERVICES)
        r2 = start_and_switch(root, "lazy_services:app", SERVICES_WARMUP="1")
        assert serving(root) == r2
        wait_until(
            lambda: not live(root, r2),
            timeout=scaled(30),
            what=f"{r2} to exit in its startup",
        )
        chain = diagnose(root)
    assert chain["cause"] == "startup_failed", chain
    text = whats(chain)
    # The local front answers 503 for a backend that is gone (Cloud Run's answered 1011).
    assert "HTTP 503" in text[0]
    assert text[1] == f"revision {r2} (exited with code 3) wrote a startup_failed line"
    assert text[2] == "startup failed in phase 'services'"
    assert "NameError" in text[3] and "DatabaseSessionManager" in text[3]
    assert "research.py:" in text[3]
    assert chain["hint"]


@contextlib.contextmanager
def accepting_load_balancer() -> Iterator[int]:
    """A load balancer with no healthy backend: it accepts every connection and holds it."""
    loop = asyncio.new_event_loop()
    held: list[asyncio.StreamWriter] = []
    ready = threading.Event()
    port: list[int] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(4096):
                pass

    async def main() -> asyncio.Server:
        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(main())
        loop.run_forever()
        server.close()
        for writer in held:
            writer.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(scaled(5))
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(scaled(5))
        loop.close()


def test_handshake_timeouts_are_traced_to_the_phase_the_backend_is_stuck_in(tmp_path: Path):
    root = make_project(tmp_path)
    examples = root / "examples"
    with cleanup(root), accepting_load_balancer() as lb_port:
        first_deploy(root)
        (examples / "background_agent.py").write_text(BACKGROUND)
        r2 = start_and_switch(
            root,
            "background_agent:app",
            AGENT_SERVICE_FAULT="agents:hang",
            AGENT_SERVICE_TIMEOUT_AGENTS="120",
        )
        manifest = (root / "safeship.toml").read_text()
        (root / "safeship.toml").write_text(
            manifest.replace(
                "[environments.test]", f'[environments.test]\nurl = "http://127.0.0.1:{lb_port}"'
            )
        )
        with socket.create_connection(("127.0.0.1", lb_port), timeout=scaled(5)):
            pass  # the load balancer accepts
        chain = diagnose(root)
    assert chain["cause"] == "stuck_starting", chain
    text = whats(chain)
    assert text[0].startswith("every probe: timed out in phase upgrade")
    assert text[1].startswith("the front accepts: TCP connected in")
    assert "no answer" in text[2]
    assert f"revision {r2} is not ready" in text[3] and "phase 'agents'" in text[3]
    assert text[4].startswith("it has been stuck in phase 'agents' for ")
    assert text[4].endswith("(its timeout is 120 s)")
    assert os.environ.get("AGENT_SERVICE_FAULT") is None
