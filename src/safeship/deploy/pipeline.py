"""The deploy driver: a thin loop around ``core.rollout.step``.

    decision = step(rollout, observation, policy)
    carry out decision.actions (target, prober, gates)  ->  the next observation
    repeat until Finish

Every policy question is answered by ``core``: ``preflight`` (may a deploy start next to the
current revision?), ``deploy_gates`` (which gates, what a skip needs), ``gates_outcome`` and
``step``. Here are only the I/O around them, the record of what happened, and two kinds of
interruption:

- **Ctrl-C** cancels the running await; the loop feeds ``Cancel`` to the state machine and
  carries out its answer (stop the new revision before the switch, switch back after it).
- **SIGKILL** leaves the deploy row ``running`` with a dead pid. The next command's
  ``recovery.recover_interrupted`` rebuilds the rollout from the record (written ahead of every
  action) and feeds it ``Cancel`` in the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import procs
from ..core.policy import GatePlan
from ..core.rollout import (
    Begin,
    Cancel,
    Decision,
    Finish,
    Observation,
    Rollout,
    RolloutPhase,
    RolloutPolicy,
    preflight,
    step,
)
from ._actions import Executor, GateRunner
from .audit import AuditLog
from .canary import RevisionMetrics
from .probes import Prober
from .record import EventSink, Recorder
from .state import StateStore
from .targets.base import RevisionSpec, RevisionStatus, Target, TargetState, TrafficSplit

__all__ = ["DeployRequest", "DeployResult", "Pipeline", "Services"]

# The step each phase of the rollout is shown as.
_PHASE_STEPS = {
    RolloutPhase.GATING: "gates",
    RolloutPhase.STARTING: "start",
    RolloutPhase.VERIFYING: "verify",
    RolloutPhase.SPLITTING: "canary",
    RolloutPhase.CANARY: "canary",
    RolloutPhase.SWITCHING: "switch",
    RolloutPhase.WATCHING: "watch",
    RolloutPhase.ROLLING_BACK: "rollback",
}
_AUDIT_OUTCOME = {
    "promoted": "promoted",
    "rolled_back": "rolled_back",
    "failed": "deploy_failed",
    "paused": "deploy_paused",
    "blocked": "deploy_blocked",
    "cancelled": "deploy_cancelled",
    "restored": "restored",
}


@dataclass(frozen=True)
class DeployRequest:
    env: str
    source: Path
    skip: tuple[str, ...] = ()
    force: bool = False
    reason: str | None = None


@dataclass
class Services:
    """Everything the driver talks to; tests pass fakes (no sockets, a fake clock)."""

    target: Target
    prober: Prober
    run_gates: GateRunner
    store: StateStore
    audit: AuditLog
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    metrics: RevisionMetrics | None = None
    """Reads revisions' ``/metrics`` during canary steps; ``None``: the probes alone judge."""


@dataclass(frozen=True)
class DeployResult:
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return str(self.record.get("outcome"))

    @property
    def exit_code(self) -> int:
        return int(self.record.get("exit_code") or 0)

    @property
    def reason(self) -> str:
        return str(self.record.get("reason", ""))


def _alive(pid: int, start: int | None) -> bool:
    return procs.is_alive(procs.ProcessRef(pid, start))


class Pipeline:
    """One deploy. ``run()`` never raises for a failed deploy: the outcome is in the record.

    Args:
        kind: ``deploy``, or ``rollback`` for a restore of an older revision.
        check_health: run the pre-deploy health check of the serving revision.
    """

    def __init__(
        self,
        request: DeployRequest,
        spec: RevisionSpec,
        plan: GatePlan,
        policy: RolloutPolicy,
        services: Services,
        *,
        drain_seconds: float,
        on_event: EventSink | None = None,
        kind: str = "deploy",
        check_health: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.request, self.plan, self.services = request, plan, services
        self.whole_instead: str | None = None
        if policy.steps != (100,) and kind == "rollback":
            # Restoring code that served before: the fastest way back, not a canary.
            policy = replace(policy, steps=(100,))
        elif policy.steps != (100,) and not isinstance(services.target, TrafficSplit):
            # A target may say what it would need to split (Kubernetes: a Gateway route).
            why = getattr(services.target, "no_split_reason", None)
            self.whole_instead = (
                f"the {services.target.name} target cannot split traffic"
                + (f" ({why})" if why else "")
                + ": switching all new connections at once instead of the steps "
                + str(list(policy.steps))
            )
            policy = replace(policy, steps=(100,))
        self.policy = policy
        self.kind, self.check_health = kind, check_health
        self.on_event = on_event
        self.interrupted = self._interrupted_step = False
        self.recorder = Recorder(
            kind=kind,
            on_event=on_event,
            clock=services.clock,
            wall=services.wall,
            env=request.env,
            source=str(request.source),
            target=services.target.name,
            previous=None,
            candidate=None,
            forced=False,
            force_reason=request.reason if request.force else None,
            **(extra or {}),
        )
        self.executor = Executor(
            target=services.target,
            recorder=self.recorder,
            audit=services.audit,
            drain_seconds=drain_seconds,
            prober=services.prober,
            run_gates=services.run_gates,
            spec=spec,
            plan=plan,
            clock=services.clock,
            sleep=services.sleep,
            metrics=services.metrics,
        )

    async def run(self) -> DeployResult:
        """Run the deploy to its end. Raises ``DeployError`` only when another deploy runs."""
        services, rec = self.services, self.recorder
        me = procs.ProcessRef.current()
        row = services.store.begin_deploy(
            pid=me.pid, pid_start=me.start_time, started=services.wall(), alive=_alive
        )
        rec.set(id=row.id)

        def persist(record: dict[str, Any]) -> None:
            services.store.update_deploy(
                row.id,
                record=record,
                revision=record.get("candidate"),
                previous=record.get("previous"),
            )

        rec.persist = persist
        services.audit.append(
            f"{self.kind}_started",
            {"deploy": row.id, "env": self.request.env, "source": str(self.request.source),
             "target": services.target.name, "skip": list(self.request.skip),
             "forced": self.request.force},
            self.request.reason if self.request.force else None,
        )  # fmt: skip
        try:
            await self._run()
        except asyncio.CancelledError:
            # Interrupted before the rollout began (pre-deploy health): nothing was touched.
            self._interrupt()
            rec.finish("cancelled", "interrupted before anything was started")
        except BaseException as exc:
            # A second Ctrl-C, or a bug: the row stays "running" with the record written ahead,
            # so the next command finds it interrupted and finishes the cleanup.
            rec.note(
                "error", f"stopped on {type(exc).__name__}; the next command recovers", "failed"
            )
            raise
        outcome = str(rec.record["outcome"])
        services.store.update_deploy(
            row.id, status=outcome, ended=services.wall(), record=rec.record
        )
        event = _AUDIT_OUTCOME.get(outcome, f"{self.kind}_{outcome}")
        services.audit.append(event, _audit_summary(rec.record), rec.record.get("reason"))
        return DeployResult(rec.record)

    async def _run(self) -> None:
        rec = self.recorder
        for line in rec.record.get("recovered") or ():
            rec.note("recover", line, "warning")
        state = await self.services.target.state()
        self.executor.front_url = state.front_url
        previous = _serving_revision(state)
        rec.set(previous=previous, front_url=state.front_url)
        for problem in state.problems:
            rec.note("preflight", problem, "warning")
        if self.whole_instead:
            rec.note("canary", self.whole_instead, "warning")
        if self.check_health and not await self._preflight(state, previous):
            return
        decision = step(Rollout(previous=previous), Begin(self.services.clock()), self.policy)
        await self._drive(decision)

    async def _preflight(self, state: TargetState, previous: str | None) -> bool:
        rec, serving = self.recorder, state.serving
        rec.begin("preflight", f"health of {serving}" if serving else "first deploy")
        health = None
        if serving is not None:
            if previous is None or state.front_url is None:
                health = "unreachable"
            else:
                outcome = await self.services.prober.ready(state.front_url)
                rec.set(preflight=outcome.as_dict())
                health = outcome.category
        answer = preflight(serving, health, force=self.request.force)
        if not answer.proceed:
            rec.end("preflight", "failed", answer.reason)
            rec.finish(
                "blocked",
                f"{answer.reason}. Fix it or run `safeship rollback`, or deploy anyway with "
                "--force --reason TEXT (audited)",
            )
            return False
        if answer.forced:
            rec.set(forced=True)
            self.services.audit.append(
                "forced",
                {"deploy": rec.record["id"], "check": "pre-deploy health", "revision": serving,
                 "health": health, "env": self.request.env},
                self.request.reason,
            )  # fmt: skip
        rec.end("preflight", "warning" if answer.forced else "ok", answer.reason)
        return True

    async def _drive(self, decision: Decision) -> None:
        while True:
            self._enter(decision)
            rollout = decision.rollout
            observation: Observation | None = None
            try:
                for action in decision.actions:
                    observation = await self.executor.carry_out(action) or observation
            except asyncio.CancelledError:
                if self.interrupted:
                    raise
                self._interrupt()
                if not rollout.is_terminal:
                    cancel = step(rollout, Cancel(self.services.clock(), "Ctrl-C"), self.policy)
                    # Already rolling back: Cancel changes nothing; carry the rollback out again.
                    decision = cancel if cancel.actions or cancel.rollout.is_terminal else decision
                    continue
                self.recorder.note(
                    "drain", "interrupted: the revision finishes draining on its own"
                )
            finish = next((a for a in decision.actions if isinstance(a, Finish)), None)
            if finish is not None:
                self._finish(rollout, finish)
                return
            assert observation is not None, f"no observation after {decision.actions}"
            decision = step(rollout, observation, self.policy)

    def _enter(self, decision: Decision) -> None:
        """Record the phase before its actions run (write-ahead, for recover_interrupted)."""
        rec, rollout = self.recorder, decision.rollout
        last = rec.record.get("rollout", {}).get("phase")
        rec.set(
            phase=str(rollout.phase),
            candidate=rollout.candidate or rec.record.get("candidate"),
            rollout={
                "phase": str(rollout.phase),
                "previous": rollout.previous,
                "candidate": rollout.candidate,
                "paused_from": str(rollout.paused_from) if rollout.paused_from else None,
            },
        )
        if last != str(rollout.phase):
            old = _PHASE_STEPS.get(RolloutPhase(last)) if last else None
            new = _PHASE_STEPS.get(rollout.phase)
            # Splitting and its watch are one step; each canary step is a step of its own.
            if old == new and rollout.phase is not RolloutPhase.SPLITTING:
                rec.save()
                return
            if old and rec.is_open(old):
                status = self._status_after(rollout.phase)
                rec.end(old, status, self._end_detail(old, status, decision))
            if new and not rec.is_open(new):
                rec.begin(new, self._begin_detail(new, rollout))
        rec.save()

    def _begin_detail(self, step: str, rollout: Rollout) -> str:
        policy, candidate = self.policy, rollout.candidate
        details = {
            "gates": ", ".join(self.plan.run) or "none to run",
            "start": f"{self.request.source}, with no traffic",
            "verify": f"{candidate}: readiness, then {policy.verify_probes} authenticated "
            f"WebSocket probes in a row (deadline {policy.ready_timeout:g}s)",
            "canary": f"{self._next_share(rollout)}% of new connections to {candidate}, judged "
            f"on its own traffic for {policy.watch_seconds:g}s",
            "switch": f"new connections to {candidate}",
            "watch": f"a probe through the live URL every {policy.watch_interval:g}s "
            f"for {policy.watch_seconds:g}s",
            "rollback": f"new connections back to {rollout.previous}"
            if rollout.previous
            else f"stop serving {candidate} (nothing served before it)",
        }
        return details.get(step, rollout.reason)

    def _end_detail(self, step: str, status: str, decision: Decision) -> str:
        if status != "ok":
            return decision.reason
        candidate = self.executor.candidate
        if step == "gates" and self.plan.skipped:
            ran = f"{', '.join(self.plan.run)} passed; " if self.plan.run else ""
            why = self.plan.reason or "not selected (--skip)"
            return f"{ran}{', '.join(self.plan.skipped)} skipped: {why}"
        if step == "start" and candidate is not None:
            return f"{candidate.id} runs at {candidate.url}"
        if step == "switch":
            return f"new connections go to {decision.rollout.candidate}"
        if step == "canary":
            return f"{decision.rollout.candidate} was clean at {decision.rollout.percent}%"
        if step == "rollback":
            previous = decision.rollout.previous
            return f"new connections go to {previous}" if previous else "nothing serves"
        return decision.reason

    def _next_share(self, rollout: Rollout) -> int:
        return next((p for p in self.policy.steps if p > rollout.percent), 100)

    def _status_after(self, phase: RolloutPhase) -> str:
        if self._interrupted_step:
            self._interrupted_step = False  # only the step the Ctrl-C cut short
            return "interrupted"
        if phase in (RolloutPhase.FAILED, RolloutPhase.ROLLING_BACK):
            return "failed"
        return "paused" if phase is RolloutPhase.PAUSED else "ok"

    def _finish(self, rollout: Rollout, finish: Finish) -> None:
        rec = self.recorder
        if rollout.detected_at is not None:
            rec.mark("detected_at", rollout.detected_at)
            record = rec.record
            if record.get("rollback_done_at_s") is not None:
                rec.set(
                    time_to_rollback_s=round(
                        record["rollback_done_at_s"] - record["detected_at_s"], 3
                    )
                )
            if record.get("switched_at_s") is not None:
                rec.set(
                    detection_after_switch_s=round(
                        record["detected_at_s"] - record["switched_at_s"], 3
                    )
                )
            first_traffic = record.get("canary_at_s")
            if first_traffic is None:
                first_traffic = record.get("switched_at_s")
            if first_traffic is not None:
                rec.set(detection_after_traffic_s=round(record["detected_at_s"] - first_traffic, 3))
        outcome, reason = str(finish.outcome), finish.reason
        restored_from = rec.record.get("restored_from")
        if self.kind == "rollback" and outcome == "promoted":
            outcome = "restored"
            reason = (
                f"traffic is back on the code of {restored_from}, running as {rollout.candidate}"
            )
        error = self.executor.error
        code = 130 if self.interrupted else (error.exit_code if error is not None else None)
        rec.set(
            interrupted=self.interrupted,
            gates_skipped=rollout.gates_skipped,
            rollout_outcome=str(finish.outcome),
        )
        if self.interrupted:
            outcome = "cancelled"
        rec.finish(outcome, reason, exit_code=code)

    def _interrupt(self) -> None:
        self.interrupted = self._interrupted_step = True
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # so the cleanup's own awaits and timeouts work normally
        self.recorder.note("interrupt", "interrupted (Ctrl-C): stopping cleanly", "warning")


def _serving_revision(state: TargetState) -> str | None:
    """The revision a rollback would return to: the serving one, if it still runs."""
    if state.serving is None:
        return None
    revision = state.revision(state.serving)
    running = revision is not None and revision.status is RevisionStatus.RUNNING
    return state.serving if running else None


def _audit_summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id", "kind", "env", "target", "source", "previous", "candidate", "outcome",
        "exit_code", "forced", "skipped_gates", "detected_at_s", "time_to_rollback_s",
        "duration_s", "interrupted",
    )  # fmt: skip
    return {"deploy": record.get("id"), **{k: record.get(k) for k in keys if k != "id"}}
