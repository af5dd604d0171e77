"""Finishing what a killed deploy left half-done.

A deploy writes its rollout's phase to the state store before every action. When its process
dies (SIGKILL, a crash, a second Ctrl-C), the target's own ``recover()`` marks the deploy
``interrupted``; :func:`recover_interrupted` then rebuilds the rollout from that record and
feeds it ``Cancel``, exactly what a Ctrl-C gets: switch back to the previous revision after a
switch, stop the new revision before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import procs
from ..core.rollout import (
    Cancel,
    Decision,
    DrainOld,
    Finish,
    RollBack,
    Rollout,
    RolloutPhase,
    RolloutPolicy,
    StopNew,
    step,
)
from ._actions import Executor
from .audit import AuditLog
from .record import Recorder
from .state import StateStore
from .targets.base import Target

__all__ = ["recover_interrupted"]


def _alive(pid: int, start: int | None) -> bool:
    return procs.is_alive(procs.ProcessRef(pid, start))


async def recover_interrupted(
    store: StateStore,
    target: Target,
    audit: AuditLog,
    *,
    policy: RolloutPolicy,
    drain_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Finish what deploys killed mid-way left: the same ``Cancel`` answer a Ctrl-C gets.

    For each deploy marked ``interrupted`` (its process died) and not yet recovered: rebuild
    its rollout from the record, feed ``Cancel``, carry out the actions (switch back to the
    previous revision after a switch; stop the new one). Returns what was done, in words.
    """
    done: list[str] = []
    for row in store.deploys():
        # A target whose state lives on the provider (Cloud Run) has no recover() to notice
        # that the deploying process died: the record says so, whatever the target.
        if row.status == "running" and row.pid is not None and not _alive(row.pid, row.pid_start):
            store.update_deploy(row.id, status="interrupted", ended=time.time())
            done.append(f"deploy {row.id} (pid {row.pid}) was interrupted")
    for row in store.deploys():
        record = row.data
        saved = record.get("rollout") or {}
        if row.status != "interrupted" or record.get("recovered") or not saved.get("phase"):
            continue
        previous, candidate = saved.get("previous"), saved.get("candidate")
        paused_from = saved.get("paused_from")
        rollout = Rollout(
            phase=RolloutPhase(saved["phase"]),
            previous=previous,
            candidate=candidate,
            paused_from=RolloutPhase(paused_from) if paused_from else None,
        )
        recorder = Recorder(kind="recover", clock=clock)
        executor = Executor(target, recorder, audit, drain_seconds, clock=clock)
        if candidate is not None:
            executor.candidate = (await target.state()).revision(candidate)
        actions: list[str] = []
        if rollout.is_terminal:
            # Killed while draining: stop what the finished rollout was stopping.
            leftover = previous if rollout.phase is RolloutPhase.PROMOTED else candidate
            if leftover is not None:
                await executor.stop(leftover, drained=rollout.phase is not RolloutPhase.FAILED)
                actions.append(f"stopped {leftover}")
            outcome = str(rollout.phase)
        else:
            decision = step(rollout, Cancel(clock(), "the deploy process died"), policy)
            if not decision.actions and not decision.rollout.is_terminal:
                # It died rolling back: Cancel changes nothing, so finish that rollback.
                decision = Decision(rollout, (RollBack(rollout.previous),), rollout.reason)
            while True:
                observation = None
                for action in decision.actions:
                    observation = await executor.carry_out(action) or observation
                    if not isinstance(action, Finish):
                        actions.append(_words(action, candidate))
                if decision.rollout.is_terminal or observation is None:
                    break
                decision = step(decision.rollout, observation, policy)
            outcome = str(decision.rollout.phase)
        said = (
            f"deploy {row.id} was interrupted during {saved['phase']} (its process died); "
            f"recovered: {', '.join(actions) or 'nothing to undo'}"
        )
        record["reason"] = said
        record["outcome"] = "interrupted"
        record["recovered"] = {
            "outcome": outcome,
            "actions": actions,
            "steps": recorder.record["steps"],
        }
        store.update_deploy(row.id, record=record)
        audit.append("deploy_recovered", {"deploy": row.id, "phase": saved["phase"],
                                          "outcome": outcome, "actions": actions})  # fmt: skip
        done.append(said)
    return done


def _words(action: object, candidate: str | None) -> str:
    if isinstance(action, RollBack):
        return f"traffic back on {action.to}" if action.to else f"stopped serving {candidate}"
    if isinstance(action, StopNew | DrainOld):
        return f"stopped {action.revision}"
    return type(action).__name__
