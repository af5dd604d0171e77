"""Carrying out the rollout's actions: one target call, probe or gate run each, turned into the
next observation. No decisions here: what to do next is ``core.rollout.step``'s answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.canary import Counts, compare, judge
from ..core.policy import GatePlan
from ..core.rollout import (
    Action,
    DrainOld,
    GatesDone,
    Observation,
    ProbeCanary,
    ProbeDone,
    ProbeLive,
    ProbeNew,
    RevisionFailed,
    RevisionStarted,
    RollBack,
    RollbackDone,
    RollbackFailed,
    RunGates,
    SetTraffic,
    StartRevision,
    StopNew,
    Switch,
    SwitchDone,
    SwitchFailed,
    TrafficFailed,
    TrafficSet,
    gates_outcome,
)
from ..errors import SafeshipError
from ..gates.model import GateResult
from .audit import AuditLog
from .canary import RevisionMetrics
from .probes import ProbeOutcome, Prober
from .record import Recorder
from .targets.base import Revision, RevisionSpec, RevisionStatus, Target, TrafficSplit

__all__ = ["Executor", "GateRunner", "gate_summary"]

GateRunner = Callable[[Sequence[str]], Awaitable[list[GateResult]]]
"""Runs the named gates on the deploy's source for its environment."""

_GONE = frozenset({RevisionStatus.FAILED, RevisionStatus.EXITED, RevisionStatus.STOPPED})


def gate_summary(result: GateResult) -> dict[str, Any]:
    """A gate result for the record and the audit log: counts and the blocking findings."""
    blocking = result.blocking
    return {
        "gate": result.gate,
        "status": str(result.status),
        "duration_s": round(result.duration, 3),
        "findings": len(result.findings),
        "blocking": len(blocking),
        "error": result.error,
        "skipped_reason": result.skipped_reason,
        "top": [
            f"{f.path or '?'}:{f.line or 0}: {f.rule}: {f.message}"
            for f in sorted(blocking, key=lambda f: (f.path or "", f.line or 0))[:5]
        ],
        # The same five as data, with the fix: what a deploy report shows the user.
        "blocking_findings": [
            {
                "path": f.path,
                "line": f.line,
                "rule": f.rule,
                "tier": str(f.tier),
                "message": f.message,
                "hint": f.hint,
                "chain": list(f.chain),
                "source_line": f.source_line,
            }
            for f in sorted(blocking, key=lambda f: (f.path or "", f.line or 0))[:5]
        ],
    }


@dataclass
class Executor:
    """Carries out actions against the target, the prober and the gates; records each one.

    ``spec``, ``plan``, ``prober`` and ``run_gates`` may be left out where no revision is
    started (recovering an interrupted deploy only switches and stops).
    """

    target: Target
    recorder: Recorder
    audit: AuditLog
    drain_seconds: float
    prober: Prober | None = None
    run_gates: GateRunner | None = None
    spec: RevisionSpec | None = None
    plan: GatePlan | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    error: SafeshipError | None = None
    """A target error that ended the deploy (its exit code is the command's)."""
    candidate: Revision | None = None
    front_url: str | None = None
    metrics: RevisionMetrics | None = None
    """Reads both revisions' counters during a canary step; ``None``: probes alone judge."""
    _ready_seen: bool = field(default=False, repr=False)
    _previous_url: str | None = field(default=None, repr=False)
    _baseline: tuple[Counts | None, Counts | None] = field(default=(None, None), repr=False)

    async def carry_out(self, action: Action) -> Observation | None:
        """Carry out one action; the observation it produced, if it produces one."""
        if isinstance(action, RunGates):
            return await self._gates()
        if isinstance(action, StartRevision):
            return await self._start()
        if isinstance(action, ProbeNew):
            return await self._probe_new(action)
        if isinstance(action, SetTraffic):
            return await self._split(action)
        if isinstance(action, ProbeCanary):
            return await self._probe_canary(action)
        if isinstance(action, Switch):
            return await self._switch(action)
        if isinstance(action, ProbeLive):
            return await self._probe_live(action)
        if isinstance(action, RollBack):
            return await self._rollback(action)
        if isinstance(action, StopNew):
            await self.stop(action.revision, drained=action.drain)
            return None
        if isinstance(action, DrainOld):
            await self.stop(action.revision, drained=True)
            return None
        return None  # Finish: the driver records it

    # -- gates ----------------------------------------------------------------------------

    async def _gates(self) -> GatesDone:
        plan = self.plan
        assert plan is not None and self.run_gates is not None
        for gate in plan.skipped:
            self.recorder.note(
                "gates", f"{gate} skipped: {plan.reason or 'not selected'}", "skipped"
            )
            self.audit.append(
                "gate_skipped",
                {"deploy": self.recorder.record["id"], "gate": gate, "env": plan.env,
                 "critical": plan.critical, "forced": plan.forced},
                plan.reason,
            )  # fmt: skip
        results = await self.run_gates(plan.run) if plan.run else []
        statuses: dict[str, str] = {}
        for result in results:
            summary = gate_summary(result)
            statuses[result.gate] = str(result.status)
            self.recorder.gate(summary)
            self.audit.append(
                "gate_result", {"deploy": self.recorder.record["id"], "env": plan.env, **summary}
            )
        self.recorder.set(skipped_gates=list(plan.skipped))
        outcome, failed = gates_outcome(statuses, plan.skipped)
        return GatesDone(self.clock(), outcome, failed)

    # -- the new revision -----------------------------------------------------------------

    async def _start(self) -> RevisionStarted | RevisionFailed:
        assert self.spec is not None
        try:
            revision = await self.target.start(self.spec)
        except SafeshipError as exc:
            # The target could not even try (not the app, a port in use): a usage or
            # config problem, reported with its own exit code.
            self.error = exc
            self.recorder.set(error=exc.as_dict())
            return RevisionFailed(self.clock(), None, error=exc.message)
        self.candidate = revision
        self.recorder.set(candidate=revision.id, candidate_url=revision.url)
        failure = revision.failure
        if revision.status is RevisionStatus.FAILED or failure is not None:
            self._record_failure(revision)
            return RevisionFailed(
                self.clock(),
                revision.id,
                failure.exit_code if failure else None,
                failure.phase if failure else None,
                failure.error if failure else f"status {revision.status}",
            )
        return RevisionStarted(self.clock(), revision.id)

    def _record_failure(self, revision: Revision) -> None:
        failure = revision.failure
        if failure is None:
            return
        from ..secrets import redact

        self.recorder.set(
            start_failure={
                "revision": revision.id,
                "phase": failure.phase,
                "error": redact(failure.error),
                "hint": failure.hint,
                "exit_code": failure.exit_code,
                "log_tail": [redact(line) for line in failure.log_tail],
                "log_path": revision.log_path,
            }
        )

    async def _probe_new(self, action: ProbeNew) -> ProbeDone | RevisionFailed:
        if action.after > 0:
            await self.sleep(action.after)
        assert self.candidate is not None and self.prober is not None
        url = self.candidate.url
        # Readiness first: until the revision says it is ready, a WebSocket probe would only
        # be refused with 503. Once ready, every probe is a full authenticated handshake.
        if not self._ready_seen:
            outcome = await self.prober.ready(url)
            if outcome.ok:
                self._ready_seen = True
                self.recorder.probe("verify", outcome.as_dict())
                outcome = await self.prober.websocket(url)
        else:
            outcome = await self.prober.websocket(url)
        if not outcome.ok and outcome.category in ("unreachable", "not_ready", "timeout"):
            gone = await self._exited(action.revision)
            if gone is not None:
                return gone
        self.recorder.probe("verify", outcome.as_dict())
        return ProbeDone(self.clock(), outcome.category, outcome.detail)

    async def _exited(self, revision_id: str) -> RevisionFailed | None:
        """The revision's process ended during verification: say how, from the target."""
        try:
            state = await self.target.state()
        except SafeshipError:
            return None
        revision = state.revision(revision_id)
        if revision is None or revision.status not in _GONE:
            return None
        self._record_failure(revision)
        failure = revision.failure
        return RevisionFailed(
            self.clock(),
            revision_id,
            failure.exit_code if failure else None,
            failure.phase if failure else None,
            failure.error if failure else f"the process is {revision.status}",
        )

    # -- traffic --------------------------------------------------------------------------

    async def _switch(self, action: Switch) -> SwitchDone | SwitchFailed:
        try:
            await self.target.switch(action.revision)
        except SafeshipError as exc:
            return SwitchFailed(self.clock(), exc.message)
        now = self.clock()
        self.recorder.mark("switched_at", now)
        if self.front_url is None:
            self.front_url = (await self.target.state()).front_url
        return SwitchDone(now)

    async def _split(self, action: SetTraffic) -> TrafficSet | TrafficFailed:
        target = self.target
        if not isinstance(target, TrafficSplit):
            return TrafficFailed(self.clock(), f"the {target.name} target cannot split traffic")
        try:
            await target.split(action.revision, action.previous, action.percent)
        except SafeshipError as exc:
            return TrafficFailed(self.clock(), exc.message)
        now = self.clock()
        if self.recorder.record.get("canary_at_s") is None:
            self.recorder.mark("canary_at", now)
        self.recorder.note(
            "canary", f"{action.percent}% of new connections go to {action.revision}"
        )
        self.recorder.record.setdefault("canary_steps", []).append(action.percent)
        if self.metrics is not None:
            if self._previous_url is None:
                state = await target.state()
                previous = state.revision(action.previous)
                self._previous_url = previous.url if previous is not None else None
            self._baseline = await self._counts()
        return TrafficSet(now, action.percent)

    async def _counts(self) -> tuple[Counts | None, Counts | None]:
        if self.metrics is None or self.candidate is None or not self._previous_url:
            return None, None
        new, old = await asyncio.gather(
            self.metrics.counts(self.candidate.url), self.metrics.counts(self._previous_url)
        )
        return new, old

    async def _probe_canary(self, action: ProbeCanary) -> ProbeDone:
        """The candidate on its own traffic: a probe to its own URL, and, where both revisions
        expose metrics, its rates against the previous revision's since the step began."""
        if action.after > 0:
            await self.sleep(action.after)
        assert self.candidate is not None and self.prober is not None
        # Concurrently: reading the counters must not slow the probe's cadence (detection).
        outcome, (new, old) = await asyncio.gather(
            self.prober.websocket(self.candidate.url), self._counts()
        )
        comparison = None
        base_new, base_old = self._baseline
        if new is not None and old is not None and base_new is not None and base_old is not None:
            comparison = compare(new.since(base_new), old.since(base_old))
        category, detail = judge(outcome.category, outcome.detail, comparison)
        entry = outcome.as_dict()
        if comparison is not None:
            entry.update(category=category, detail=detail, probe_category=outcome.category)
        self.recorder.probe("canary", entry)
        return ProbeDone(self.clock(), category, detail)

    async def _probe_live(self, action: ProbeLive) -> ProbeDone:
        if action.after > 0:
            await self.sleep(action.after)
        assert self.prober is not None
        if self.front_url is None:
            outcome = ProbeOutcome("inconclusive", "inconclusive", "the target has no live URL")
        else:
            outcome = await self.prober.websocket(self.front_url)
        self.recorder.probe("watch", outcome.as_dict())
        return ProbeDone(self.clock(), outcome.category, outcome.detail)

    async def _rollback(self, action: RollBack) -> RollbackDone | RollbackFailed:
        try:
            if action.to is not None:
                await self.target.switch(action.to)
            elif self.candidate is not None:
                # A first deploy has nothing to return to: stop serving the new revision
                # (the target points new connections at nothing first).
                await self.target.stop(self.candidate.id, drain_seconds=0.0)
        except SafeshipError as exc:
            return RollbackFailed(self.clock(), exc.message)
        now = self.clock()
        self.recorder.mark("rollback_done_at", now)
        return RollbackDone(now)

    async def stop(self, revision_id: str, *, drained: bool) -> None:
        """Stop a revision; ``drained`` when it had traffic (its connections get 1012 over the
        drain window first)."""
        step = "drain" if drained else "stop"
        seconds = self.drain_seconds if drained else 0.0
        detail = f"{revision_id}: draining over {seconds:g}s" if drained else revision_id
        self.recorder.begin(step, detail)
        try:
            await self.target.stop(revision_id, drain_seconds=seconds)
        except SafeshipError as exc:
            self.recorder.end(step, "warning", f"{revision_id}: {exc.message}")
            return
        self.recorder.end(
            step, "ok", f"{revision_id} stopped" + (" after draining" if drained else "")
        )
