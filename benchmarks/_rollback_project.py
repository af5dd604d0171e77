"""The rollback benchmark's project: a copy of the reference backend (behind the fault hook of
``tests/fixtures/deploy_apps/faulty_agent.py``), its manifest, and ``safeship deploy`` run as a
separate process whose steps are followed through the state store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from safeship.config import load_manifest
from safeship.deploy.operations import down
from safeship.testing import free_port

__all__ = ["ROOT", "Project"]

ROOT = Path(__file__).resolve().parents[1]
FAULTY_APP = ROOT / "tests" / "fixtures" / "deploy_apps" / "faulty_agent.py"


class Project:
    def __init__(self, base: Path, secret: str, **deploy: Any) -> None:
        self.root = base / "project"
        self.secret = secret
        self.port = free_port()
        examples = self.root / "examples"
        shutil.copytree(
            ROOT / "examples" / "agent_service",
            examples / "agent_service",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        shutil.copy(FAULTY_APP, examples / "faulty_agent.py")
        settings = {"port": self.port, **deploy}
        lines = [
            "[service]",
            'app = "faulty_agent:app"',
            'app_dir = "examples"',
            'code = "examples/agent_service"',
            "[environments.test]",
            "[deploy]",
            *(f"{k} = {json.dumps(v)}" for k, v in settings.items()),
            'probe_send = \'{"type": "ping"}\'',
            'probe_expect = { type = "pong" }',
        ]
        (self.root / "safeship.toml").write_text("\n".join(lines) + "\n")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "JWT_SECRET_TEST": self.secret, "PYTHONUNBUFFERED": "1"}
        env.pop("DEPLOY_FAULT_AFTER", None)
        # Runs still going when a revision stops get this long after the drain window; the
        # local target kills a revision drain_seconds + 5 s after SIGTERM.
        env["AGENT_SERVICE_RUN_GRACE"] = "4"
        env.update(extra)
        return env

    async def deploy(self, *, within: float, **env: str) -> tuple[dict[str, Any], dict[str, float]]:
        """``safeship deploy --json`` in its own process. Returns its record, and when (by
        ``time.monotonic()``, polled every 5 ms from the state store) each step ended."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "safeship",
            "deploy", "--env", "test", "--skip", "static", "--skip", "legacy", "--json",
            cwd=self.root, env=self.env(**env),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        ended: dict[str, float] = {}
        follow = asyncio.create_task(self._follow(ended))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), within)
        finally:
            follow.cancel()
            if proc.returncode is None:
                proc.kill()
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"deploy exited {proc.returncode}: {err.decode()[-2000:]}")
        record: dict[str, Any] = json.loads(out)
        return record, ended

    async def _follow(self, ended: dict[str, float]) -> None:
        db_path = self.root / ".safeship" / "state.db"
        latest: int | None = None
        while True:
            if db_path.exists():
                with contextlib.closing(sqlite3.connect(db_path, timeout=1)) as db:
                    row = db.execute(
                        "SELECT seq, record FROM deploys ORDER BY seq DESC LIMIT 1"
                    ).fetchone()
                if row is not None and (latest is None or row[0] >= latest):
                    latest = row[0]
                    for step in json.loads(row[1] or "{}").get("steps", []):
                        ended.setdefault(f"{row[0]}:{step['name']}", time.monotonic())
            await asyncio.sleep(0.005)

    def configure(self, **deploy: Any) -> None:
        """Change ``[deploy]`` settings before the next deploy."""
        path = self.root / "safeship.toml"
        lines = path.read_text().splitlines()
        for key, value in deploy.items():
            lines = [
                f"{key} = {json.dumps(value)}" if ln.startswith(f"{key} = ") else ln for ln in lines
            ]
        path.write_text("\n".join(lines) + "\n")

    async def down(self) -> None:
        with contextlib.suppress(Exception):
            await down(load_manifest(self.root / "safeship.toml"))
