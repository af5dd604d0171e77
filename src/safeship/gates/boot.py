"""The ``boot`` gate: start the service for real and talk to it before any deploy does.

It runs the manifest's ``app`` under uvicorn (or its ``command``) on a free loopback port with
the environment's variables, waits for ``/health/ready`` until a deadline, reads
``/health/startup``, opens a WebSocket with a token minted from the environment's secret for one
round trip, then stops the service. A failure names the phase, the error, the exit code and the
last lines the service wrote; a service that hangs is killed at the deadline and reported as
"hung in phase X".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..core.startup import startup_failed_event
from ..errors import SecretError
from ..probe import probe_ws
from ..probe.steps import Step
from ..probe.tokens import StaticToken
from ..procs import free_port
from ..secrets import EnvSource, resolve_secret
from ..service.deadline import uvicorn_options
from ..service.startup import EVENTS_ENV
from ..tokens import mint
from .model import Finding, GateResult, GateStatus, Tier
from .runner import CheckContext, result_from_findings

__all__ = ["BootGate", "BootOutcome"]

_TAIL_LINES = 15
_STOP_GRACE = 5.0


@dataclass
class BootOutcome:
    """What was observed; turned into findings by :func:`_findings`."""

    ready: bool = False
    exit_code: int | None = None
    hung: bool = False
    phase: str | None = None
    failure: dict[str, Any] | None = None
    ready_body: dict[str, Any] | None = None
    startup: dict[str, Any] | None = None
    ws: dict[str, Any] | None = None
    ws_skipped: str | None = None
    log_tail: tuple[str, ...] = ()
    seconds_to_ready: float | None = None


class BootGate:
    name = "boot"

    def run(self, ctx: CheckContext) -> GateResult:
        manifest = ctx.manifest
        if not manifest.service.app and not manifest.service.command:
            return GateResult(
                gate=self.name,
                status=GateStatus.SKIPPED,
                skipped_reason="no [service] app or command in the manifest: nothing to boot",
            )
        with tempfile.TemporaryDirectory(prefix="safeship-boot-") as workdir:
            outcome = _boot(ctx, Path(workdir))
        findings = _findings(ctx, outcome)
        summary: dict[str, object] = {
            "ready": outcome.ready,
            "seconds_to_ready": outcome.seconds_to_ready,
            "phases": [
                {k: p.get(k) for k in ("name", "state", "duration_ms")}
                for p in (outcome.startup or {}).get("phases", [])
            ],
            "websocket": outcome.ws,
            "websocket_skipped": outcome.ws_skipped,
        }
        return result_from_findings(self.name, findings, summary)


def _command(ctx: CheckContext, port: int) -> list[str]:
    service = ctx.manifest.service
    if service.command:
        return [
            part.replace("{port}", str(port)).replace("{host}", "127.0.0.1")
            for part in service.command
        ]
    assert service.app is not None
    return [
        sys.executable, "-m", "uvicorn", service.app,
        "--app-dir", str(ctx.manifest.resolve(service.app_dir)),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
        *uvicorn_options(),  # the request-head deadline the deploy targets run with
    ]  # fmt: skip


def _boot(ctx: CheckContext, workdir: Path) -> BootOutcome:
    config = ctx.manifest.gates.boot
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / "service.log"
    events_path = workdir / "startup-events.jsonl"
    env = {**ctx.environ, EVENTS_ENV: str(events_path), "PYTHONUNBUFFERED": "1"}
    outcome = BootOutcome()
    started = time.monotonic()
    with log_path.open("wb") as log:
        # The service runs in a scratch directory: whatever it writes relative to its working
        # directory (a default SQLite file, say) is thrown away with the check.
        proc = subprocess.Popen(
            _command(ctx, port), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        outcome.ready = _wait_ready(proc, base, started + config.ready_timeout, outcome)
        if outcome.ready:
            outcome.seconds_to_ready = round(time.monotonic() - started, 3)
            outcome.startup = _get_json(base + ctx.manifest.service.health_prefix + "/startup")
            _websocket_round_trip(ctx, port, outcome)
        elif proc.poll() is None:
            outcome.hung = outcome.ready_body is None
            outcome.startup = _get_json(base + ctx.manifest.service.health_prefix + "/startup")
    finally:
        _stop(proc)
        text = log_path.read_text(errors="replace")
        outcome.log_tail = tuple(text.splitlines()[-_TAIL_LINES:])
        outcome.failure = outcome.failure or startup_failed_event(text.splitlines())
        outcome.phase = outcome.phase or _last_phase(events_path)
    return outcome


def _wait_ready(
    proc: subprocess.Popen[bytes], base: str, deadline: float, outcome: BootOutcome
) -> bool:
    ready_url = base + "/health/ready"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                outcome.exit_code = code
                return False
            try:
                response = client.get(ready_url)
            except httpx.HTTPError:
                time.sleep(0.05)  # not listening yet: poll again until the deadline
                continue
            if response.status_code == 200:
                return True
            with contextlib.suppress(ValueError):
                outcome.ready_body = response.json()
            time.sleep(0.1)
    return False


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        data = httpx.get(url, timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _websocket_round_trip(ctx: CheckContext, port: int, outcome: BootOutcome) -> None:
    manifest = ctx.manifest
    base = manifest.auth.secret
    config = manifest.secret_config(base)
    try:
        secret = resolve_secret(
            base, env=ctx.env, critical=True, sources=[EnvSource(ctx.environ)],
            salt=manifest.service.salt, min_bytes=1, per_environment=config.per_environment,
        )  # fmt: skip
    except SecretError as exc:
        # The service started, so it generated a per-process secret (development/test):
        # no token can be minted that it would accept.
        outcome.ws_skipped = (
            f"no JWT secret in the environment to mint a token from ({exc.message})"
        )
        return
    token = mint(
        secret.value, "safeship-boot-check", ttl=120,
        algorithm=manifest.auth.algorithms[0], issuer=manifest.auth.issuer,
        audience=manifest.auth.audience,
    )  # fmt: skip
    boot = manifest.gates.boot
    steps: list[Step] = []
    if boot.send:
        steps.append(Step(json.loads(boot.send), dict(boot.expect), boot.step_timeout))
    url = f"ws://127.0.0.1:{port}{manifest.service.ws_path}"
    result = asyncio.run(
        probe_ws(url, token_source=StaticToken(token), steps=steps, connect_only=not steps,
                 timeout=boot.step_timeout)
    )  # fmt: skip
    outcome.ws = result.as_dict()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_STOP_GRACE)


def _last_phase(path: Path) -> str | None:
    """The phase the service was in last, from its startup events file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "phase_started":
                return str(event.get("phase"))
    return None


def _findings(ctx: CheckContext, outcome: BootOutcome) -> list[Finding]:
    command = shlex.join(_command(ctx, 0)).replace("--port 0", "--port PORT")
    tail = "\n".join(outcome.log_tail)
    common = {
        "exit_code": outcome.exit_code,
        "log_tail": list(outcome.log_tail),
        "command": command,
    }

    def finding(rule: str, message: str, hint: str | None, **extra: Any) -> Finding:
        path = line = None
        where = (outcome.failure or {}).get("where")
        if isinstance(where, str) and ":" in where:
            path, _, number = where.rpartition(":")
            line = int(number) if number.isdigit() else None
        return Finding(
            gate="boot", rule=rule, message=message, tier=Tier.ERROR, path=path, line=line,
            hint=hint, blocking=True, extra={**common, **extra},
        )  # fmt: skip

    if outcome.failure:
        f = outcome.failure
        causes = f.get("causes") or []
        behind = f" (behind it: {'; '.join(causes)})" if causes else ""
        return [
            finding(
                "boot-failed",
                f"startup failed in phase {f.get('phase')!r} with exit code {outcome.exit_code}: "
                f"{f.get('error')}{behind}",
                f.get("hint"),
                phase=f.get("phase"),
            )
        ]
    if outcome.exit_code is not None:
        return [
            finding(
                "boot-exited",
                f"the service exited with code {outcome.exit_code} before it was ready"
                + (f" (last phase: {outcome.phase})" if outcome.phase else "")
                + (f"; last output:\n{tail}" if tail else ""),
                "run the command above locally to see the full error",
                phase=outcome.phase,
            )
        ]
    if outcome.hung:
        timeout = ctx.manifest.gates.boot.ready_timeout
        where = f"in phase {outcome.phase!r}" if outcome.phase else "before any phase started"
        return [
            finding(
                "boot-hung",
                f"hung {where}: not ready after {timeout:g}s; killed",
                "a phase waits on something that never answers: give it a timeout shorter than "
                "[gates.boot] ready_timeout, or check the dependency it waits for",
                phase=outcome.phase,
            )
        ]
    if not outcome.ready:
        body = outcome.ready_body or {}
        return [
            finding(
                "boot-not-ready",
                f"/health/ready answered 503 until the deadline: status {body.get('status')!r}, "
                f"phase {body.get('phase')!r}"
                + (f", error: {body['error']}" if body.get("error") else ""),
                body.get("hint") or "see /health/startup of the service",
                phase=body.get("phase"),
            )
        ]
    verdict = (outcome.ws or {}).get("verdict") or {}
    if outcome.ws is not None and verdict.get("kind") != "ok":
        return [
            finding(
                "boot-websocket",
                f"WebSocket round trip failed: {verdict.get('kind')}: {verdict.get('detail')}",
                verdict.get("hint"),
                verdict=verdict,
            )
        ]
    return []
