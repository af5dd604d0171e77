"""Shared by the ``test_deploy_*`` end-to-end tests: a project holding the reference backend,
the CLI run in process, and a background load of ``AgentClient`` users through the front."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeship import procs
from safeship.cli import main
from safeship.config import load_manifest
from safeship.deploy.operations import down
from safeship.testing import free_port, scaled, wait_until
from safeship.tokens import mint

ROOT = Path(__file__).resolve().parents[2]
FAULTY_APP = ROOT / "tests" / "fixtures" / "deploy_apps" / "faulty_agent.py"
SECRET = "deploy-e2e-secret-7c1d9e3b5a0f2c4e6a8b0d2f4a6c8e0b"
OTHER_SECRET = "deploy-e2e-other-secret-1b3d5f7a9c2e4a6c8e0b2d4f6a8c"
ENV = "test"

if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))  # agent_service.client, for the load

DEFAULT_DEPLOY = {
    "verify_probes": 3,
    "verify_interval": 0.1,
    "ready_timeout": 15,
    "watch_seconds": 1,
    "watch_interval": 0.25,
    "failure_threshold": 3,
    "drain_seconds": 1,
    "probe_timeout": 3,
    "probe_send": '{"type": "ping"}',
}


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict) else (
        "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    )  # fmt: skip


def make_project(
    tmp_path: Path,
    *,
    app: str = "agent_service.main:app",
    deploy: dict[str, Any] | None = None,
    env_table: dict[str, str] | None = None,
) -> Path:
    """A project with a copy of ``examples/agent_service`` (and the fault wrapper) and its own
    manifest: state under ``.safeship``, the front on a free port, small windows."""
    root = tmp_path / "project"
    examples = root / "examples"
    shutil.copytree(
        ROOT / "examples" / "agent_service",
        examples / "agent_service",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(FAULTY_APP, examples / "faulty_agent.py")
    settings = {**DEFAULT_DEPLOY, "port": free_port(), **(deploy or {})}
    lines = [
        "[service]",
        'name = "agent-service"',
        f'app = "{app}"',
        'app_dir = "examples"',
        'code = "examples/agent_service"',
        'ws_path = "/ws"',
        "",
        f"[environments.{ENV}]",
        f"env = {_toml(env_table or {})}",
        "",
        "[deploy]",
        *(f"{key} = {_toml(value)}" for key, value in settings.items()),
        'probe_expect = { type = "pong" }',
    ]
    (root / "safeship.toml").write_text("\n".join(lines) + "\n")
    return root


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def cli(root: Path, *args: str) -> CliResult:
    """``safeship ARGS`` in this process, from the project directory."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


def front_port(root: Path) -> int:
    return int(load_manifest(root / "safeship.toml").deploy.port)


def state_db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / ".safeship" / "state.db", timeout=5)


def deploy_row(root: Path, deploy_id: str | None = None) -> dict[str, Any] | None:
    """The latest deploy (or ``deploy_id``): its row, with ``record`` parsed."""
    path = root / ".safeship" / "state.db"
    if not path.exists():
        return None
    with contextlib.closing(state_db(root)) as db:
        db.row_factory = sqlite3.Row
        query = "SELECT * FROM deploys ORDER BY seq DESC LIMIT 1"
        found = (
            db.execute("SELECT * FROM deploys WHERE id = ?", (deploy_id,)).fetchone()
            if deploy_id
            else db.execute(query).fetchone()
        )
    if found is None:
        return None
    row = dict(found)
    row["record"] = json.loads(row["record"] or "{}")
    return row


def revisions(root: Path) -> dict[str, dict[str, Any]]:
    with contextlib.closing(state_db(root)) as db:
        db.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in db.execute("SELECT * FROM revisions ORDER BY seq")}


def serving(root: Path) -> str | None:
    with contextlib.closing(state_db(root)) as db:
        found = db.execute("SELECT active FROM front WHERE id = 1").fetchone()
    return found[0] if found else None


def served_by(root: Path) -> str | None:
    """Which revision answers a new connection through the front (``SAFESHIP_REVISION``)."""
    import httpx

    try:
        reply = httpx.get(f"http://127.0.0.1:{front_port(root)}/info", timeout=scaled(3))
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    instance = reply.json().get("instance", "")
    pid = int(instance.rsplit("-", 2)[-2]) if instance.count("-") >= 2 else None
    return next((r for r, row in revisions(root).items() if row["pid"] == pid), None)


@contextlib.contextmanager
def cleanup(root: Path) -> Iterator[None]:
    """``down`` the project however the test ends, then kill anything recorded and alive."""
    try:
        yield
    finally:
        if (root / "safeship.toml").exists():
            with contextlib.suppress(Exception):
                asyncio.run(down(load_manifest(root / "safeship.toml")))
        db = root / ".safeship" / "state.db"
        if db.exists():
            with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
                rows = conn.execute("SELECT pid, pid_start FROM revisions").fetchall()
                rows += conn.execute("SELECT pid, pid_start FROM front").fetchall()
            for pid, start in rows:
                if pid is not None:
                    ref = procs.ProcessRef(pid, start)
                    asyncio.run(procs.terminate(ref, within=1, grace=scaled(5)))


# -- background load ------------------------------------------------------------------------


@dataclass
class LoadReport:
    stats: Any
    clients: int
    errors: list[str] = field(default_factory=list)

    @property
    def user_visible_failures(self) -> dict[str, int]:
        """Everything a user would have seen go wrong: failed connects (after the client's own
        retries gave up), connections ended by an error, runs that failed, events lost."""
        found = {k: v for k, v in self.stats.failures.items() if not k.startswith("connect:")}
        if self.stats.lost:
            found["lost_events"] = self.stats.lost
        if self.stats.runs_failed:
            found["runs_failed"] = self.stats.runs_failed
        for error in self.errors:
            found[error] = found.get(error, 0) + 1
        return found


class Load:
    """``rate`` users per second connect through the front, start a ``slow`` run (the round
    trip), and stay connected following it; drained users reconnect and resume."""

    def __init__(
        self, port: int, *, rate: float = 5.0, steps: int = 30, delay: float = 0.1
    ) -> None:
        from agent_service.client import ClientStats

        self.url = f"ws://127.0.0.1:{port}/ws"
        self.rate, self.steps, self.delay = rate, steps, delay
        self.stats = ClientStats()
        self.errors: list[str] = []
        self._clients: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="deploy-load", daemon=True)
        self._count = 0
        self._hold = threading.Event()

    def __enter__(self) -> Load:
        self._thread.start()
        wait_until(lambda: self._count >= 1, timeout=10, what="the first load client")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        while not self._stop.is_set():
            if not self._hold.is_set():
                self._tasks.append(asyncio.create_task(self._user(self._count)))
                self._count += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1 / self.rate)
        for client in self._clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 3)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _user(self, n: int) -> None:
        from agent_service.client import AgentClient

        sub = f"load-{os.getpid()}-{n}"
        client = AgentClient(
            self.url, lambda: mint(SECRET, sub, ttl=600), keep_events=False, stats=self.stats,
            max_attempts=8,
        )  # fmt: skip
        self._clients.append(client)
        try:
            await client.connect()
            run_id = await client.start("slow", {"steps": self.steps, "delay": self.delay})
            result = await client.wait(run_id, within=self.steps * self.delay + 30)
            if result.status != "completed":
                self.errors.append(f"run_{result.status}")
            await asyncio.Event().wait()  # stay connected until the load stops
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}")

    def _pending(self) -> int:
        """Users still connecting or starting their run."""
        return self._count - self.stats.runs_started - len(self.errors)

    def stop(self) -> LoadReport:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(scaled(20))
        return LoadReport(self.stats, self._count, list(self.errors))

    def report(self) -> LoadReport:
        return LoadReport(self.stats, self._count, list(self.errors))

    def settle(self, timeout: float = 20.0) -> None:
        """Stop adding users, then wait until every run started has ended."""
        self._hold.set()
        stats = self.stats

        def done() -> bool:
            ended = stats.runs_completed + stats.runs_failed
            return self._pending() <= 0 and ended + len(self.errors) >= stats.runs_started

        wait_until(done, timeout=timeout, interval=0.05, what="the load's runs to end")


def wait_deploy_phase(root: Path, phase: str, timeout: float = 30.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        row = deploy_row(root)
        if row and row["status"] == "running" and row["record"].get("phase") == phase:
            return row
        return None

    found: dict[str, Any] = wait_until(reached, timeout=timeout, interval=0.02, what=phase)
    return found


def elapsed(since: float) -> float:
    return time.monotonic() - since


def set_deploy(root: Path, **changes: Any) -> None:
    """Change ``[deploy]`` settings of the project's manifest (between deploys)."""
    path = root / "safeship.toml"
    lines = path.read_text().splitlines()
    start = lines.index("[deploy]")
    for key, value in changes.items():
        line = f"{key} = {_toml(value)}"
        found = next((i for i in range(start, len(lines)) if lines[i].split(" = ")[0] == key), None)
        if found is None:
            lines.insert(start + 1, line)
        else:
            lines[found] = line
    path.write_text("\n".join(lines) + "\n")


QUICK = ("--env", ENV, "--skip", "static", "--skip", "legacy")
"""Deploy arguments that keep only the fast ``secrets`` gate (tests of other steps)."""


def first_deploy(root: Path) -> dict[str, Any]:
    result = cli(root, "deploy", *QUICK, "--json")
    assert result.code == 0, result.out + result.err
    record: dict[str, Any] = result.json
    assert record["outcome"] == "promoted"
    return record


def live(root: Path, revision: str) -> bool:
    row = revisions(root)[revision]
    return row["pid"] is not None and procs.is_alive(procs.ProcessRef(row["pid"], row["pid_start"]))
