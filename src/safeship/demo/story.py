"""The demo's story: the staging incident replayed on the local target, and prevented.

r1 is deployed with every gate on and a client load starts. r2 reintroduces the latent
NameError, r3 is a revision that listens but never becomes ready (the handshake timeouts), r4
brings the secret mismatch, r5 a change that goes bad after the switch; r6 is a good change.
Every deploy is a real one (``safeship.deploy.operations.deploy``): real gates, real uvicorn
revisions, a real front listener, real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..deploy.audit import audit_path, verify
from ..deploy.operations import deploy, down
from ..deploy.pipeline import DeployRequest
from ..deploy.record import Event
from ..procs import free_port
from ..tokens import mint
from .load import ClientLoad
from .workspace import Workspace

__all__ = ["ENV", "Step", "Story"]

ENV = "staging"
# The deploy's step details name revisions: "r3 runs at http://...", "new connections go to r2".
_START = re.compile(r"(r\d+) runs at ")
_GOES_TO = re.compile(r"new connections go to (r\d+)")
_HUNG = re.compile(r"hung in phase (\w+) after ([\d.]+) s")


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
            Step(
                "r3", "r3: listens at once, never becomes ready (hangs in phase cache)", "blocked"
            ),
            Step("r4", "r4: the backend's JWT secret differs from the clients'", "blocked"),
            Step("r5", "r5: passes verification, goes bad after the switch", "rolled back"),
            Step("r6", "r6: a good change (legacy name migrated)", "promoted"),
        ]
        self.events: list[dict[str, Any]] = []
        self.serving: str | None = None
        """The revision new connections go to, as the deploys report it at every moment."""
        self.candidate: str | None = None
        self.activity = ""
        self.watch: dict[str, Any] | None = None
        """During a deploy's verification, canary or watch: its progress (for the live line)."""
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
            await self._r6(ws, manifest)
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
        policy = manifest.deploy

        def on_event(event: Event) -> None:
            if event.kind == "step" and event.status == "running":
                self.activity = f"{step.id}: {event.step}"
                if event.step in ("verify", "canary", "watch"):
                    seconds = (
                        policy.ready_timeout if event.step == "verify" else policy.watch_seconds
                    )
                    self.watch = {"step": event.step, "until": self.now() + seconds, "probes": 0,
                                  "last": ""}  # fmt: skip
            elif event.kind == "step" and event.step in ("verify", "canary", "watch"):
                self.watch = None
            if event.kind == "probe" and self.watch is not None:
                self.watch["probes"] += 1
                self.watch["last"] = f"{event.data.get('category', event.status)}"
            if event.kind == "gate":
                self.activity = f"{step.id}: gate {event.detail} {event.status}"
            started = _START.match(event.detail) if event.kind == "step" else None
            if started and event.step == "start" and event.status == "ok":
                self.candidate = started.group(1)
            if event.kind == "step" and event.step == "switch" and event.status == "ok":
                self.serving = self.candidate
                self._mark(f"{self.candidate} switched", "deploy")
            elif event.kind == "step" and event.step == "rollback" and event.status == "ok":
                back = _GOES_TO.search(event.detail)
                self.serving = back.group(1) if back else None
                self._mark(f"{self.candidate} rolled back", "rollback")
            self.on_change()

        assert self.workspace is not None
        self.candidate = None
        try:
            result = await deploy(
                manifest, DeployRequest(ENV, self.workspace.root, **request), on_event=on_event
            )
        finally:
            self.watch = None
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
            self._mark(f"{self.serving} promoted", "promoted")
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
            self._mark("static gate blocks r2", "blocked")
        step.facts["static_finding"] = finding
        step.facts["removed_import"] = f"{path}:{line}"
        # The hotfix: skip the static gate only. The revision still boots without traffic.
        second = await self._deploy(step, manifest, skip=("static",), force=True, reason="hotfix")
        failure = second.get("start_failure") or {}
        step.failing_phase = failure.get("phase")
        forced_failed = _stopped_before_traffic(second) and step.failing_phase == "agents"
        if forced_failed:
            self._mark("forced r2 fails in phase agents", "blocked")
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
        phase = ws.hang_startup()
        forced: asyncio.Task[dict[str, Any]] = asyncio.create_task(self._force_traffic(manifest))
        try:
            record = await self._deploy(step, manifest)
        finally:
            if not forced.done():
                forced.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forced
        reason = str(record.get("reason") or "")
        hung = _stopped_before_traffic(record) and f"hung in phase {phase}" in reason
        if hung:
            self._mark(f"{self.candidate or 'r3'} hangs in phase {phase}: no traffic", "blocked")
        answers = forced.result() if not forced.cancelled() and forced.exception() is None else {}
        step.facts["forced"] = answers
        step.facts["verification_reason"] = reason
        step.failing_phase = phase
        step.outcome = f"stopped by verification: hung in phase {phase}; forced: 503 at once"
        step.kind = "blocked"
        step.caught_at = "verify: never ready, so no traffic; forced: 503 + Retry-After at once"
        seconds = answers.get("max_ms")
        forced_ok = bool(answers) and answers.get("answered_503") == answers.get("handshakes", -1)
        step.detail = (
            f"verification: {reason} | forced onto traffic: {answers.get('answered_503', 0)} of "
            f"{answers.get('handshakes', 0)} handshakes answered 503 with Retry-After "
            f"{answers.get('retry_after', '?')} s in at most "
            f"{'?' if seconds is None else f'{seconds:.0f}'} ms, none held open"
        )
        step.time_to_safe_s = record.get("duration_s")
        ws.restore()
        self._end(step, before, hung and forced_ok)

    async def _force_traffic(self, manifest: Any, handshakes: int = 10) -> dict[str, Any]:
        """What a load balancer that does not wait for readiness would do with r3: send it
        handshakes while verification is still waiting on it. A front (the local target's
        own ``Front``) on a spare port forwards to the candidate; every handshake carries a
        valid token and is timed."""
        from ..deploy.front import Front
        from ..deploy.targets import create_target
        from ..deploy.targets.base import RevisionStatus
        from ..probe import StaticToken, probe_ws

        assert self.workspace is not None
        target = create_target("local", manifest)
        deadline = time.monotonic() + manifest.deploy.ready_timeout
        port: int | None = None
        while port is None and time.monotonic() < deadline:
            state = await target.state()
            for revision in state.revisions:
                live = revision.status in (RevisionStatus.STARTING, RevisionStatus.RUNNING)
                if live and revision.id != state.serving and revision.port is not None:
                    port = revision.port
            if port is None:
                await asyncio.sleep(0.1)
        if port is None:
            return {}
        control = Path(tempfile.mkdtemp(prefix="safeship-demo-")) / "front.sock"
        front = Front(host="127.0.0.1", port=0, control=control, backend=port)
        await front.start()
        try:
            token = StaticToken(mint(self.workspace.client_secret, "demo-forced", ttl=300))
            verdicts = []
            for _ in range(handshakes):
                result = await probe_ws(
                    f"ws://127.0.0.1:{front.port}/ws", token_source=token, timeout=10.0
                )
                verdicts.append(result)
                await asyncio.sleep(0.05)
        finally:
            await front.close()
            with contextlib.suppress(OSError):
                control.parent.rmdir()
        times = [r.timings.get("total", 0.0) for r in verdicts]
        refused = [r for r in verdicts if r.verdict.code == 503 and r.verdict.retry_after]
        return {
            "handshakes": len(verdicts),
            "answered_503": len(refused),
            "retry_after": refused[0].verdict.retry_after if refused else None,
            "max_ms": round(max(times), 1) if times else None,
            "median_ms": round(sorted(times)[len(times) // 2], 1) if times else None,
            "verdicts": sorted({r.verdict.kind.value for r in verdicts}),
        }

    async def _r4(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[3]
        before = self._begin(step)
        ws.rotate_backend_secret()
        first = await self._deploy(step, manifest)
        finding = _first_blocking(first, "secrets")
        blocked = _stopped_before_traffic(first) and finding is not None
        if blocked:
            self._mark("secrets gate blocks r4", "blocked")
        step.facts["secrets_finding"] = finding
        second = await self._deploy(
            step, manifest, skip=("secrets",), force=True, reason="rotate the backend secret now"
        )
        verdicts = [v.get("category") for v in second.get("verification", [])]
        auth_denied = "auth" in verdicts and _stopped_before_traffic(second)
        if auth_denied:
            self._mark("forced r4 fails verification (401)", "blocked")
        step.facts["verification"] = second.get("verification", [])[-3:]
        step.outcome = "blocked by the secrets gate; forced: failed verification (401)"
        step.kind = "blocked"
        step.blocked_by = "secrets"
        step.caught_at = "gate (secrets); forced: verification (401) before traffic"
        step.detail = f"secrets gate: {finding.get('message', '') if finding else '?'} | forced: {_reason(second)}"
        step.time_to_safe_s = first.get("duration_s")
        ws.restore()
        self._end(step, before, blocked and auth_denied)

    async def _r5(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[4]
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

    async def _r6(self, ws: Workspace, manifest: Any) -> None:
        step = self.steps[5]
        before = self._begin(step)
        changed = ws.migrate_legacy_name()
        step.facts["migrated_files"] = changed
        previous = self.serving
        record = await self._deploy(step, manifest)
        step.outcome = record["outcome"]
        ok = step.outcome == "promoted"
        step.kind = "promoted" if ok else "blocked"
        if ok:
            self.serving = record.get("candidate")
            self._mark(f"{self.serving} promoted, {previous} drained", "promoted")
            ws.forget_edits()
        step.detail = _reason(record) + f" ({len(changed)} file(s) migrated)"
        self._end(step, before, ok)

    # -- the report ---------------------------------------------------------------------------

    def report(self, audit_ok: bool, audit_detail: str) -> dict[str, Any]:
        load = self.load.summary() if self.load is not None else {}
        r2, r3, r4, r5 = self.steps[1], self.steps[2], self.steps[3], self.steps[4]
        rate = self.load.rate if self.load is not None else 0
        forced = r3.facts.get("forced") or {}
        hung_reason = str(r3.facts.get("verification_reason") or "")
        hung = _HUNG.search(hung_reason)
        rows = [
            {
                "failure": "WebSocket 1011: latent NameError (DatabaseSessionManager)",
                "step": "r2",
                "caught_at": "static gate; when forced past: boot without traffic (phase agents)",
                "figure": f"forced: failed in phase {r2.failing_phase or '?'} before any traffic",
                "client_failures": r2.client_failures,
                "time_to_safe_s": r2.time_to_safe_s,
                "original": "deployed it; the container exited with code 3 in phase agents "
                "while traffic was already switched: 1011s for every client",
            },
            {
                "failure": "Handshake timeouts: connections accepted that no backend served",
                "step": "r3",
                "caught_at": "verify: never ready, so no traffic; forced onto traffic: "
                "503 with Retry-After at once",
                "figure": (
                    f"hung in phase {hung.group(1)} after {hung.group(2)} s"
                    if hung
                    else "not measured"
                )
                + (
                    f"; forced: {forced.get('answered_503')}/{forced.get('handshakes')} "
                    f"handshakes answered 503 in at most {forced.get('max_ms')} ms"
                    if forced
                    else ""
                ),
                "client_failures": r3.client_failures,
                "time_to_safe_s": r3.time_to_safe_s,
                "original": "switched 100% of traffic first, checked /health 10 s later and "
                "printed a warning: handshakes hung until they timed out",
            },
            {
                "failure": "HTTP 403 on every WebSocket: JWT secret mismatch",
                "step": "r4",
                "caught_at": "secrets gate (fingerprints); when forced past: verification (401)",
                "figure": "forced: verification denied (401) before any traffic",
                "client_failures": r4.client_failures,
                "time_to_safe_s": r4.time_to_safe_s,
                "original": "--check-secrets was off by default: every client got 403",
            },
            {
                "failure": "A revision that goes bad after the switch (1011)",
                "step": "r5",
                "caught_at": "watch: rolled back automatically",
                "figure": f"rolled back {_s(r5.time_to_safe_s)} after the first failure",
                "client_failures": r5.client_failures,
                "time_to_safe_s": r5.time_to_safe_s,
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
            and r4.client_failures == 0
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
                "detection_after_switch_s": r5.facts.get("detection_after_switch_s"),
                "time_to_rollback_s": r5.facts.get("time_to_rollback_s"),
                "failed_connections": r5.client_failures,
            },
            "summary": {
                "rows": rows,
                "audit_ok": audit_ok,
                "audit_detail": audit_detail,
                "rollback_seconds": r5.time_to_safe_s,
            },
            "timeline": self.load.timeline if self.load is not None else [],
            "events": self.events,
        }


def _s(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"


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
