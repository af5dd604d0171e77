"""The demo's story: the staging incident replayed on the local target, and prevented.

r1 is deployed with every gate on and a client load starts. r2 reintroduces the latent
NameError, r3 the secret mismatch, r4 a change that goes bad after the switch; r5 is a good
change. Every deploy is a real one (``safeship.deploy.operations.deploy``): real gates, real
uvicorn revisions, a real front listener, real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..deploy.audit import audit_path, verify
from ..deploy.operations import deploy, down
from ..deploy.pipeline import DeployRequest
from ..procs import free_port
from ..deploy.record import Event
from .load import ClientLoad
from .workspace import Workspace

__all__ = ["ENV", "Step", "Story"]

ENV = "staging"


@dataclass
class Step:
    id: str
    title: str
    expect: str
    status: str = "pending"
    """``pending``, ``running``, ``done`` (as expected) or ``unexpected``."""
    outcome: str = ""
    kind: str = "info"
    detail: str = ""
    caught_at: str | None = None
    blocked_by: str | None = None
    failing_phase: str | None = None
    rolled_back: bool = False
    client_failures: int = 0
    time_to_safe_s: float | None = None
    duration_s: float = 0.0
    started_s: float = 0.0
    deploys: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


class Story:
    """Runs the demo. ``on_change`` is called (with no arguments) whenever something the live
    view shows has changed; it must not raise."""

    def __init__(self, base: Path, *, on_change: Callable[[], None] | None = None) -> None:
        self.base = base
        self.on_change = on_change or (lambda: None)
        self.t0 = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.steps = [
            Step("r1", "r1: baseline, every gate on", "promoted"),
            Step("r2", "r2: the latent NameError (import removed, name still used)", "blocked"),
            Step("r3", "r3: the backend's JWT secret differs from the clients'", "blocked"),
            Step("r4", "r4: passes verification, goes bad after the switch", "rolled back"),
            Step("r5", "r5: a good change (legacy name migrated)", "promoted"),
        ]
        self.events: list[dict[str, Any]] = []
        self.serving: str | None = None
        self.activity = ""
        self.load: ClientLoad | None = None
        self.workspace: Workspace | None = None

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def _mark(self, label: str, kind: str) -> None:
        self.events.append({"t": self.now(), "label": label, "kind": kind})
        self.on_change()

    # -- the story ----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        examples_added = False
        self.workspace = ws = Workspace.create(self.base / "project", port=free_port())
        manifest = ws.manifest()
        if str(ws.examples) not in sys.path:
            sys.path.insert(0, str(ws.examples))  # the reference client, for the load
            examples_added = True
        try:
            await self._r1(ws, manifest)
            await self._r2(ws, manifest)
            await self._r3(ws, manifest)
            await self._r4(ws, manifest)
            await self._r5(ws, manifest)
            self.activity = "letting the clients in flight finish"
            self.on_change()
            if self.load is not None:
                await self.load.stop(within=60)
        finally:
            if self.load is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.load.stop(within=2), 10)
            self.activity = "stopping the front and every revision"
            self.on_change()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(down(manifest), 60)
            if examples_added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(str(ws.examples))
        audit = verify(audit_path(manifest))
        return self.report(
            audit.ok, "; ".join(audit.problems) or f"{audit.entries} entries, hash chain intact"
        )

    async def _deploy(self, step: Step, manifest: Any, **request: Any) -> dict[str, Any]:
        def on_event(event: Event) -> None:
            if event.kind == "step" and event.status == "running":
                self.activity = f"{step.id}: {event.step}"
            elif event.kind == "gate":
                self.activity = f"{step.id}: gate {event.detail} {event.status}"
            elif event.kind == "step" and event.step == "switch" and event.status == "ok":
                self._mark(f"{step.id} switched", "deploy")
            elif event.kind == "step" and event.step == "rollback" and event.status == "ok":
                self._mark(f"{step.id} rolled back", "rollback")
            self.on_change()

        assert self.workspace is not None
        result = await deploy(
            manifest, DeployRequest(ENV, self.workspace.root, **request), on_event=on_event
        )
        record = result.record
        step.deploys.append(_digest(record))
        if record.get("outcome") == "cancelled":
            # Ctrl-C: the deploy stopped cleanly (previous revision serving); so does the story.
            raise asyncio.CancelledError
        return record

    def _begin(self, step: Step) -> int:
        step.status, step.started_s = "running", self.now()
        self.on_change()
        return self.load.failed if self.load is not None else 0

    def _end(self, step: Step, failures_before: int, ok: bool) -> None:
        step.duration_s = round(self.now() - step.started_s, 2)
        step.client_failures = (self.load.failed if self.load is not None else 0) - failures_before
        step.status = "done" if ok else "unexpected"
        self.on_change()

    async def _r1(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[0]
        before = self._begin(step)
        record = await self._deploy(step, manifest)
        step.outcome = record["outcome"]
        ok = step.outcome == "promoted"
        step.kind = "promoted" if ok else "blocked"
        step.caught_at = None
        step.detail = _reason(record)
        if ok:
            self.serving = record.get("candidate")
            self._mark(f"r1 serving ({self.serving})", "promoted")
            self.load = ClientLoad(f"ws://127.0.0.1:{ws.port}/ws", ws.client_secret, t0=self.t0)
            await self.load.start()
            await self._let_load_settle(3.0)
        self._end(step, before, ok)

    async def _let_load_settle(self, seconds: float) -> None:
        self.activity = "client load running"
        self.on_change()
        await asyncio.sleep(seconds)  # the timeline needs some steady traffic to compare to

    async def _r2(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[1]
        before = self._begin(step)
        path, line = ws.break_import()
        first = await self._deploy(step, manifest)
        finding = _first_blocking(first, "static")
        blocked = _stopped_before_traffic(first) and finding is not None
        if blocked:
            self._mark("r2 blocked by the static gate", "blocked")
        step.facts["static_finding"] = finding
        step.facts["removed_import"] = f"{path}:{line}"
        # The hotfix: skip the static gate only. The revision still boots without traffic.
        second = await self._deploy(step, manifest, skip=("static",), force=True, reason="hotfix")
        failure = second.get("start_failure") or {}
        step.failing_phase = failure.get("phase")
        forced_failed = _stopped_before_traffic(second) and step.failing_phase == "agents"
        if forced_failed:
            self._mark("r2 (forced) failed in phase agents", "blocked")
        step.outcome = "blocked by the static gate; forced: failed at boot, phase agents"
        step.kind = "blocked"
        step.blocked_by = "static"
        step.caught_at = "gate (static); forced: boot without traffic, phase agents"
        where = f"{finding.get('path')}:{finding.get('line')}" if finding else "?"
        fix = f" Fix: {finding['hint']}" if finding and finding.get("hint") else ""
        step.detail = (
            f"static gate: {where} {finding.get('message', '') if finding else ''}.{fix}".strip()
            + f" | forced: {failure.get('error', second.get('reason', ''))}"
        )
        step.time_to_safe_s = first.get("duration_s")
        ws.restore()
        self._end(step, before, blocked and forced_failed)

    async def _r3(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[2]
        before = self._begin(step)
        ws.rotate_backend_secret()
        first = await self._deploy(step, manifest)
        finding = _first_blocking(first, "secrets")
        blocked = _stopped_before_traffic(first) and finding is not None
        if blocked:
            self._mark("r3 blocked by the secrets gate", "blocked")
        step.facts["secrets_finding"] = finding
        second = await self._deploy(
            step, manifest, skip=("secrets",), force=True, reason="rotate the backend secret now"
        )
        verdicts = [v.get("category") for v in second.get("verification", [])]
        auth_denied = "auth" in verdicts and _stopped_before_traffic(second)
        if auth_denied:
            self._mark("r3 (forced) failed verification: 401", "blocked")
        step.facts["verification"] = second.get("verification", [])[-3:]
        step.outcome = "blocked by the secrets gate; forced: failed verification (401)"
        step.kind = "blocked"
        step.blocked_by = "secrets"
        step.caught_at = "gate (secrets); forced: verification (401) before traffic"
        step.detail = f"secrets gate: {finding.get('message', '') if finding else '?'} | forced: {_reason(second)}"
        step.time_to_safe_s = first.get("duration_s")
        ws.restore()
        self._end(step, before, blocked and auth_denied)

    async def _r4(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[3]
        before = self._begin(step)
        ws.add_pool_leak()
        record = await self._deploy(step, manifest)
        step.rolled_back = record["outcome"] == "rolled_back"
        step.outcome = "rolled back by the watch" if step.rolled_back else record["outcome"]
        step.kind = "rollback" if step.rolled_back else "blocked"
        step.caught_at = "watch after the switch"
        step.time_to_safe_s = record.get("time_to_rollback_s")
        step.facts.update(
            switched_at_s=record.get("switched_at_s"),
            detected_at_s=record.get("detected_at_s"),
            rollback_done_at_s=record.get("rollback_done_at_s"),
            detection_after_switch_s=record.get("detection_after_switch_s"),
            time_to_rollback_s=record.get("time_to_rollback_s"),
        )
        step.detail = _reason(record)
        ws.restore()
        self._end(step, before, step.rolled_back)
        if step.rolled_back and step.time_to_safe_s is not None:
            step.outcome = (
                f"rolled back {step.time_to_safe_s:.1f} s after the first failure; "
                f"{step.client_failures} client failure(s) got through"
            )
            self.on_change()

    async def _r5(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[4]
        before = self._begin(step)
        changed = ws.migrate_legacy_name()
        step.facts["migrated_files"] = changed
        record = await self._deploy(step, manifest)
        step.outcome = record["outcome"]
        ok = step.outcome == "promoted"
        step.kind = "promoted" if ok else "blocked"
        if ok:
            previous, self.serving = self.serving, record.get("candidate")
            self._mark(f"r5 serving ({self.serving}); {previous} drained", "promoted")
            ws.forget_edits()
        step.detail = _reason(record) + f" ({len(changed)} file(s) migrated)"
        self._end(step, before, ok)

    # -- the report ---------------------------------------------------------------------------

    def report(self, audit_ok: bool, audit_detail: str) -> dict[str, Any]:
        load = self.load.summary() if self.load is not None else {}
        r2, r3, r4 = self.steps[1], self.steps[2], self.steps[3]
        rate = self.load.rate if self.load is not None else 0
        rows = [
            {
                "failure": "WebSocket 1011: latent NameError (DatabaseSessionManager)",
                "caught_at": "static gate; when forced past: boot without traffic (phase agents)",
                "client_failures": r2.client_failures,
                "time_to_safe_s": r2.time_to_safe_s,
                "original": "deployed it; the container exited with code 3 in phase 5 while "
                "traffic was already switched: 1011s for every client",
            },
            {
                "failure": "Handshake timeouts: connections accepted that no backend served",
                "caught_at": "verify: no traffic before /health/ready and authenticated probes",
                "client_failures": r2.client_failures,
                "time_to_safe_s": (r2.deploys[-1].get("duration_s") if r2.deploys else None),
                "original": "switched 100% of traffic first, checked /health 10 s later and "
                "printed a warning: handshakes hung until they timed out",
            },
            {
                "failure": "HTTP 403 on every WebSocket: JWT secret mismatch",
                "caught_at": "secrets gate (fingerprints); when forced past: verification (401)",
                "client_failures": r3.client_failures,
                "time_to_safe_s": r3.time_to_safe_s,
                "original": "--check-secrets was off by default: every client got 403",
            },
            {
                "failure": "A revision that goes bad after the switch (1011)",
                "caught_at": "watch: rolled back automatically",
                "client_failures": r4.client_failures,
                "time_to_safe_s": r4.time_to_safe_s,
                "original": "no watch, no rollback. Flagger's defaults (60 s) would fail about "
                f"{round(rate * 60)} connections at this load; Kubernetes probes never roll back",
            },
        ]
        expected = all(s.status == "done" for s in self.steps)
        ok = (
            expected
            and audit_ok
            and load.get("lost", 1) == 0
            and r2.client_failures == 0
            and r3.client_failures == 0
        )
        return {
            "schema": "safeship.demo/1",
            "ok": ok,
            "started_at": self.started_at,
            "duration_s": self.now(),
            "env": ENV,
            "steps": [_step_dict(s) for s in self.steps],
            "load": load,
            "rollback": {
                "detection_after_switch_s": r4.facts.get("detection_after_switch_s"),
                "time_to_rollback_s": r4.facts.get("time_to_rollback_s"),
                "failed_connections": r4.client_failures,
            },
            "summary": {
                "rows": rows,
                "audit_ok": audit_ok,
                "audit_detail": audit_detail,
                "rollback_seconds": r4.time_to_safe_s,
            },
            "timeline": self.load.timeline if self.load is not None else [],
            "events": self.events,
        }


def _step_dict(step: Step) -> dict[str, Any]:
    data = asdict(step)
    data["as_expected"] = step.status == "done"
    return data


def _reason(record: dict[str, Any]) -> str:
    return str(record.get("reason") or record.get("outcome") or "")


def _stopped_before_traffic(record: dict[str, Any]) -> bool:
    """The deploy ended without the new revision ever taking traffic."""
    switched = any(s.get("name") == "switch" for s in record.get("steps", []))
    return record.get("outcome") in ("failed", "blocked") and not switched


def _first_blocking(record: dict[str, Any], gate: str) -> dict[str, Any] | None:
    for result in record.get("gates", []):
        if result.get("gate") == gate and result.get("blocking_findings"):
            return dict(result["blocking_findings"][0])
    return None


def _digest(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a deploy record the demo report keeps."""
    keys = (
        "id", "outcome", "reason", "candidate", "previous", "duration_s", "skipped_gates",
        "forced", "start_failure", "switched_at_s", "detected_at_s", "rollback_done_at_s",
        "time_to_rollback_s", "detection_after_switch_s",
    )  # fmt: skip
    digest = {k: record.get(k) for k in keys if record.get(k) is not None}
    digest["gates"] = [
        {"gate": g.get("gate"), "status": g.get("status")} for g in record.get("gates", [])
    ]
    digest["steps"] = [
        {"name": s.get("name"), "status": s.get("status"), "duration_s": s.get("duration_s")}
        for s in record.get("steps", [])
    ]
    return digest
