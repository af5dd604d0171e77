"""The deploy rollout as a pure state machine.

``pending → gating → starting → verifying → switching → watching → promoted``, with
``failed`` (before any traffic), ``rolling_back → rolled_back`` (after the switch) and
``paused`` (an inconclusive result: traffic stays where it is, nothing is promoted).

Canary steps (``RolloutPolicy.steps``, e.g. ``(10, 50, 100)``) put ``splitting → canary`` before
the switch, once per step below 100 %: the candidate gets that share of new connections and is
watched on its own traffic for the watch window; a failure at any step rolls back (traffic all
on the previous revision). A first deploy has nothing to share traffic with and switches whole.

The driver feeds one observation at a time to :func:`step` and carries out the actions of the
returned :class:`Decision`. Each ``ProbeNew``/``ProbeLive`` action yields exactly one
``ProbeDone``. Times are passed in (``now``, monotonic seconds); nothing here awaits or reads a
clock. The observation and action classes live in :mod:`.rollout_events` and are re-exported
here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import IllegalTransition
from .rollout_events import (
    Action,
    Begin,
    Cancel,
    DrainOld,
    Finish,
    GateOutcome,
    GatesDone,
    Observation,
    ProbeCanary,
    ProbeCategory,
    ProbeDone,
    ProbeLive,
    ProbeNew,
    Resume,
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
    Tick,
    TrafficFailed,
    TrafficSet,
)
from .verdict import starting_phase

if TYPE_CHECKING:
    from ..config import DeployConfig

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Action",
    "Begin",
    "Cancel",
    "Decision",
    "DrainOld",
    "Finish",
    "GateOutcome",
    "GatesDone",
    "Observation",
    "Preflight",
    "ProbeCanary",
    "ProbeCategory",
    "ProbeDone",
    "ProbeLive",
    "ProbeNew",
    "Resume",
    "RevisionFailed",
    "RevisionStarted",
    "RollBack",
    "RollbackDone",
    "RollbackFailed",
    "Rollout",
    "RolloutPhase",
    "RolloutPolicy",
    "RunGates",
    "SetTraffic",
    "StartRevision",
    "StopNew",
    "Switch",
    "SwitchDone",
    "SwitchFailed",
    "Tick",
    "TrafficFailed",
    "TrafficSet",
    "gates_outcome",
    "preflight",
    "step",
    "steps_problem",
]


class RolloutPhase(StrEnum):
    PENDING = "pending"
    GATING = "gating"
    STARTING = "starting"  # new revision, no traffic
    VERIFYING = "verifying"  # probes against the new revision's own URL
    SPLITTING = "splitting"  # moving a canary step's share of new connections to it
    CANARY = "canary"  # a share of new connections on it; judged on its own traffic
    SWITCHING = "switching"
    WATCHING = "watching"  # probes against the live URL, after the switch
    PROMOTED = "promoted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    PAUSED = "paused"


TERMINAL = frozenset({RolloutPhase.PROMOTED, RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED})
TRANSITIONS: dict[RolloutPhase, frozenset[RolloutPhase]] = {
    RolloutPhase.PENDING: frozenset({RolloutPhase.GATING, RolloutPhase.FAILED}),
    RolloutPhase.GATING: frozenset(
        {RolloutPhase.STARTING, RolloutPhase.FAILED, RolloutPhase.PAUSED}
    ),
    RolloutPhase.STARTING: frozenset({RolloutPhase.VERIFYING, RolloutPhase.FAILED}),
    RolloutPhase.VERIFYING: frozenset(
        {RolloutPhase.SPLITTING, RolloutPhase.SWITCHING, RolloutPhase.FAILED, RolloutPhase.PAUSED}
    ),
    RolloutPhase.SPLITTING: frozenset({RolloutPhase.CANARY, RolloutPhase.ROLLING_BACK}),
    RolloutPhase.CANARY: frozenset(
        {
            RolloutPhase.SPLITTING,
            RolloutPhase.SWITCHING,
            RolloutPhase.ROLLING_BACK,
            RolloutPhase.PAUSED,
        }
    ),
    RolloutPhase.SWITCHING: frozenset(
        {RolloutPhase.WATCHING, RolloutPhase.PROMOTED, RolloutPhase.ROLLING_BACK}
    ),
    RolloutPhase.WATCHING: frozenset(
        {RolloutPhase.PROMOTED, RolloutPhase.ROLLING_BACK, RolloutPhase.PAUSED}
    ),
    RolloutPhase.ROLLING_BACK: frozenset({RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED}),
    RolloutPhase.PAUSED: frozenset(
        {
            RolloutPhase.GATING,
            RolloutPhase.VERIFYING,
            RolloutPhase.CANARY,
            RolloutPhase.WATCHING,
            RolloutPhase.FAILED,
            RolloutPhase.ROLLING_BACK,
        }
    ),
    RolloutPhase.PROMOTED: frozenset(),
    RolloutPhase.ROLLED_BACK: frozenset(),
    RolloutPhase.FAILED: frozenset(),
}


@dataclass(frozen=True)
class RolloutPolicy:
    verify_probes: int = 5
    """N consecutive successful probes of the new revision before it gets traffic."""
    verify_interval: float = 0.2
    ready_timeout: float = 30.0
    watch_seconds: float = 30.0
    watch_interval: float = 0.5
    failure_threshold: int = 3
    """K consecutive failed probes after the switch roll back."""
    inconclusive_threshold: int = 3
    """Consecutive inconclusive probes (the probe itself could not run) that pause."""
    steps: tuple[int, ...] = (100,)
    """Canary steps: percent of new connections on the candidate, increasing, ending at 100.
    Each step below 100 is watched for ``watch_seconds`` before the next."""

    def __post_init__(self) -> None:
        problem = steps_problem(self.steps)
        if problem is not None:
            raise ValueError(problem)

    @classmethod
    def from_config(cls, deploy: DeployConfig, *, inconclusive_threshold: int = 3) -> RolloutPolicy:
        return cls(
            verify_probes=deploy.verify_probes,
            verify_interval=deploy.verify_interval,
            ready_timeout=deploy.ready_timeout,
            watch_seconds=deploy.watch_seconds,
            watch_interval=deploy.watch_interval,
            failure_threshold=deploy.failure_threshold,
            inconclusive_threshold=inconclusive_threshold,
            steps=tuple(deploy.steps),
        )


def steps_problem(steps: Sequence[int]) -> str | None:
    """Why ``steps`` are not valid canary steps (increasing ints in 1..100 ending at 100)."""
    steps = list(steps)
    if not steps or any(type(p) is not int or not 1 <= p <= 100 for p in steps):
        return f"expected whole percents in 1..100, e.g. [10, 50, 100], got {steps}"
    if any(a >= b for a, b in itertools.pairwise(steps)):
        return f"expected increasing percents, e.g. [10, 50, 100], got {steps}"
    if steps[-1] != 100:
        return f"the last step must be 100 (all new connections), got {steps}"
    return None


# -- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    phase: RolloutPhase = RolloutPhase.PENDING
    previous: str | None = None
    """The revision serving before this deploy, if any."""
    candidate: str | None = None
    started_at: float | None = None
    phase_since: float | None = None
    verify_deadline: float | None = None
    ready_at: float | None = None
    """First successful probe of the candidate."""
    switched_at: float | None = None
    traffic_at: float | None = None
    """When the candidate first got new connections (a canary step, or the switch)."""
    percent: int = 0
    """The share of new connections on the candidate (100 once switched)."""
    watch_until: float | None = None
    """End of the current watch window: a canary step's, or the one after the switch."""
    ok_streak: int = 0
    failure_streak: int = 0
    failure_since: float | None = None
    """Time of the first failure of the current failure streak."""
    inconclusive_streak: int = 0
    last_probe: ProbeCategory | None = None
    last_detail: str = ""
    detected_at: float | None = None
    """First failure of the streak that triggered the rollback."""
    paused_from: RolloutPhase | None = None
    gates_skipped: bool = False
    reason: str = ""

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL


@dataclass(frozen=True)
class Decision:
    rollout: Rollout
    actions: tuple[Action, ...]
    reason: str

    @property
    def phase(self) -> RolloutPhase:
        return self.rollout.phase


def step(rollout: Rollout, obs: Observation, policy: RolloutPolicy) -> Decision:
    """The next state and the driver's actions, given one observation.

    Raises:
        IllegalTransition: the observation makes no sense in the current phase (including any
            observation after a terminal phase), or names an unknown category/outcome.
    """
    if rollout.is_terminal:
        raise IllegalTransition(
            f"rollout already ended ({rollout.phase}); got {type(obs).__name__}"
        )
    if isinstance(obs, Cancel):
        return _cancel(rollout, obs)
    if isinstance(obs, Tick):
        return _tick(rollout, obs, policy)
    handler = _HANDLERS.get((rollout.phase, type(obs)))
    if handler is None:
        raise IllegalTransition(f"{type(obs).__name__} is not expected while {rollout.phase}")
    return handler(rollout, obs, policy)


# -- before the rollout ---------------------------------------------------------------------


@dataclass(frozen=True)
class Preflight:
    proceed: bool
    forced: bool
    """True when the deploy goes ahead only because of ``--force`` (the driver audits it)."""
    reason: str


def preflight(serving: str | None, health: ProbeCategory | str | None, *, force: bool) -> Preflight:
    """Whether a deploy may start, given the health of the revision serving now.

    A deploy next to an unhealthy revision cannot tell its own failures from the old ones, and
    a rollback would return traffic to something broken: it needs ``--force``.

    Args:
        serving: the revision that serves now; ``None`` on a first deploy.
        health: the category of its readiness probe through the live URL.
        force: ``--force`` was given (with a reason, checked by the caller).
    """
    if serving is None:
        return Preflight(True, False, "nothing serves yet: first deploy")
    category = _enum(ProbeCategory, health or ProbeCategory.INCONCLUSIVE, "probe category")
    if category is ProbeCategory.OK:
        return Preflight(True, False, f"{serving} serves and is ready")
    if force:
        return Preflight(
            True, True, f"{serving} serves but is not healthy ({category}); deploying with --force"
        )
    return Preflight(
        False,
        False,
        f"{serving} serves but is not healthy ({category}); a deploy now could not tell its own "
        "failures from the current ones, and a rollback would return traffic to it",
    )


def gates_outcome(
    statuses: Mapping[str, str], skipped: Sequence[str] = ()
) -> tuple[GateOutcome, tuple[str, ...]]:
    """The ``GatesDone`` outcome of a gate run: ``failed`` if a gate found something that
    blocks, else ``error`` if one could not run, else ``skipped`` if any was skipped, else
    ``passed``; with the names of the gates that failed (or could not run)."""
    failed = tuple(name for name, status in statuses.items() if status == "failed")
    if failed:
        return GateOutcome.FAILED, failed
    errors = tuple(name for name, status in statuses.items() if status == "error")
    if errors:
        return GateOutcome.ERROR, errors
    return (GateOutcome.SKIPPED if skipped else GateOutcome.PASSED), ()


# -- handlers -------------------------------------------------------------------------------


def _move(r: Rollout, to: RolloutPhase, now: float, reason: str, **changes: object) -> Rollout:
    if to not in TRANSITIONS[r.phase]:
        raise IllegalTransition(f"rollout cannot go from {r.phase} to {to}")
    return replace(r, phase=to, phase_since=now, reason=reason, **changes)  # type: ignore[arg-type]


def _decide(r: Rollout, *actions: Action) -> Decision:
    return Decision(r, actions, r.reason)


def _finish(r: Rollout, *actions: Action) -> Decision:
    return _decide(r, *actions, Finish(r.phase, r.reason))


def _begin(r: Rollout, obs: Begin, policy: RolloutPolicy) -> Decision:
    r = _move(r, RolloutPhase.GATING, obs.now, "running the gates", started_at=obs.now)
    return _decide(r, RunGates())


def _gates_done(r: Rollout, obs: GatesDone, policy: RolloutPolicy) -> Decision:
    outcome = _enum(GateOutcome, obs.outcome, "gate outcome")
    names = ", ".join(obs.failed) or "unnamed"
    if outcome is GateOutcome.FAILED:
        return _finish(_move(r, RolloutPhase.FAILED, obs.now, f"gates failed: {names}"))
    if outcome is GateOutcome.ERROR:
        reason = f"gates could not run: {names}; inconclusive, nothing was started"
        return _finish(
            _move(r, RolloutPhase.PAUSED, obs.now, reason, paused_from=RolloutPhase.GATING)
        )
    skipped = outcome is GateOutcome.SKIPPED
    reason = "gates skipped by --force" if skipped else "gates passed"
    return _decide(
        _move(r, RolloutPhase.STARTING, obs.now, reason, gates_skipped=skipped or r.gates_skipped),
        StartRevision(),
    )


def _started(r: Rollout, obs: RevisionStarted, policy: RolloutPolicy) -> Decision:
    r = _move(
        r,
        RolloutPhase.VERIFYING,
        obs.now,
        f"verifying {obs.revision} before it gets traffic",
        candidate=obs.revision,
        verify_deadline=obs.now + policy.ready_timeout,
        **_FRESH,
    )
    return _decide(r, ProbeNew(obs.revision, after=0.0))


def _start_failed(r: Rollout, obs: RevisionFailed, policy: RolloutPolicy) -> Decision:
    name = obs.revision or r.candidate or "the new revision"
    what = "failed to start" if r.phase is RolloutPhase.STARTING else "exited during verification"
    where = f" in phase {obs.phase!r}" if obs.phase else ""
    code = f" (exit code {obs.exit_code})" if obs.exit_code is not None else ""
    error = f": {obs.error}" if obs.error else ""
    r = _move(r, RolloutPhase.FAILED, obs.now, f"{name} {what}{where}{code}{error}")
    r = replace(r, candidate=obs.revision or r.candidate)
    stop = (StopNew(obs.revision, drain=False),) if obs.revision else ()
    return _finish(r, *stop)


def _verify_probe(r: Rollout, obs: ProbeDone, policy: RolloutPolicy) -> Decision:
    candidate, deadline = r.candidate, r.verify_deadline
    assert candidate is not None and deadline is not None
    cat = _enum(ProbeCategory, obs.category, "probe category")
    r = _count(r, cat, obs)
    again = ProbeNew(candidate, policy.verify_interval)
    if cat is ProbeCategory.INCONCLUSIVE:
        return _maybe_pause(r, obs, policy, again)
    if cat is ProbeCategory.OK:
        if r.ok_streak >= policy.verify_probes:
            return _next_step(
                r, obs.now, policy, f"{candidate} passed {r.ok_streak} consecutive probes"
            )
        return _decide(r, again)
    if cat in (ProbeCategory.AUTH, ProbeCategory.INTERNAL_ERROR):
        # A revision that denies every handshake (a secret mismatch) or fails internally must
        # never get traffic, however ready it claims to be.
        reason = f"{candidate} failed verification with {cat}: {obs.detail or cat}"
        return _fail_before_traffic(r, obs.now, reason)
    if obs.now >= deadline:
        return _fail_before_traffic(r, obs.now, _deadline_reason(r, policy))
    return _decide(r, again)


def _next_step(r: Rollout, now: float, policy: RolloutPolicy, why: str) -> Decision:
    """After verification, or a canary step's clean window: the next share of traffic."""
    candidate = r.candidate
    assert candidate is not None
    percent = next((p for p in policy.steps if p > r.percent), 100)
    if percent < 100 and r.previous is None:
        # Nothing else serves: there is no one to share new connections with.
        reason = f"{why}; first deploy, nothing to share traffic with: switching whole"
        return _decide(_move(r, RolloutPhase.SWITCHING, now, reason), Switch(candidate))
    previous = r.previous
    if percent < 100:
        assert previous is not None
        reason = f"{why}; sending {percent}% of new connections to {candidate}"
        return _decide(
            _move(r, RolloutPhase.SPLITTING, now, reason), SetTraffic(candidate, previous, percent)
        )
    reason = f"{why}; switching traffic"
    return _decide(_move(r, RolloutPhase.SWITCHING, now, reason), Switch(candidate))


def _traffic_set(r: Rollout, obs: TrafficSet, policy: RolloutPolicy) -> Decision:
    candidate = r.candidate
    assert candidate is not None
    reason = (
        f"{obs.percent}% of new connections on {candidate}; watching it on its own traffic "
        f"for {policy.watch_seconds:g}s"
    )
    changes = {
        "percent": obs.percent,
        "traffic_at": r.traffic_at if r.traffic_at is not None else obs.now,
        "watch_until": obs.now + policy.watch_seconds,
    }
    r = _move(r, RolloutPhase.CANARY, obs.now, reason, **changes, **_FRESH)
    if policy.watch_seconds <= 0:
        return _next_step(r, obs.now, policy, f"{candidate} at {obs.percent}% (no watch window)")
    return _decide(r, ProbeCanary(candidate, after=0.0))


def _traffic_failed(r: Rollout, obs: TrafficFailed, policy: RolloutPolicy) -> Decision:
    # As with a failed switch: the split may have half happened, so restore explicitly.
    reason = (
        f"moving new connections to {r.candidate} failed: {obs.error}; restoring the previous "
        "routing"
    )
    r = _move(r, RolloutPhase.ROLLING_BACK, obs.now, reason, detected_at=obs.now)
    return _decide(r, RollBack(r.previous))


def _canary_probe(r: Rollout, obs: ProbeDone, policy: RolloutPolicy) -> Decision:
    candidate = r.candidate
    assert candidate is not None
    cat = _enum(ProbeCategory, obs.category, "probe category")
    r = _count(r, cat, obs)
    again = ProbeCanary(candidate, policy.watch_interval)
    if cat is ProbeCategory.INCONCLUSIVE:
        return _maybe_pause(r, obs, policy, again)
    if cat is not ProbeCategory.OK and r.failure_streak >= policy.failure_threshold:
        since = _since_traffic(r, r.failure_since)
        reason = (
            f"{r.failure_streak} consecutive failed probes of {candidate} at the {r.percent}% "
            f"step (first{since}): {cat}: {obs.detail or cat}; rolling back"
        )
        r = _move(r, RolloutPhase.ROLLING_BACK, obs.now, reason, detected_at=r.failure_since)
        return _decide(r, RollBack(r.previous))
    advanced = _maybe_advance(r, obs.now, policy)
    return advanced or _decide(r, again)


def _maybe_advance(r: Rollout, now: float, policy: RolloutPolicy) -> Decision | None:
    # As for promotion: only on a success once the step's window is over.
    assert r.watch_until is not None
    if now < r.watch_until or r.last_probe is not ProbeCategory.OK:
        return None
    return _next_step(r, now, policy, f"{r.candidate} clean at {r.percent}%")


def _switch_done(r: Rollout, obs: SwitchDone, policy: RolloutPolicy) -> Decision:
    assert r.candidate is not None
    changes = {
        "switched_at": obs.now,
        "watch_until": obs.now + policy.watch_seconds,
        "percent": 100,
        "traffic_at": r.traffic_at if r.traffic_at is not None else obs.now,
    }
    if policy.watch_seconds <= 0:
        r = _move(
            r,
            RolloutPhase.PROMOTED,
            obs.now,
            f"{r.candidate} promoted (no watch window)",
            **changes,
        )
        return _finish(r, *_drain_previous(r))
    reason = f"watching {r.candidate} for {policy.watch_seconds:g}s"
    r = _move(r, RolloutPhase.WATCHING, obs.now, reason, **changes, **_FRESH)
    return _decide(r, ProbeLive(after=0.0))


def _switch_failed(r: Rollout, obs: SwitchFailed, policy: RolloutPolicy) -> Decision:
    # An unconfirmed switch may have half happened (a provider timed out): restore the
    # previous routing explicitly rather than assume it is untouched.
    reason = f"switch to {r.candidate} failed: {obs.error}; restoring the previous routing"
    r = _move(r, RolloutPhase.ROLLING_BACK, obs.now, reason, detected_at=obs.now)
    return _decide(r, RollBack(r.previous))


def _watch_probe(r: Rollout, obs: ProbeDone, policy: RolloutPolicy) -> Decision:
    cat = _enum(ProbeCategory, obs.category, "probe category")
    r = _count(r, cat, obs)
    if cat is ProbeCategory.INCONCLUSIVE:
        return _maybe_pause(r, obs, policy, ProbeLive(policy.watch_interval))
    if cat is not ProbeCategory.OK and r.failure_streak >= policy.failure_threshold:
        since = _since(r, r.failure_since)
        reason = (
            f"{r.failure_streak} consecutive failed probes after the switch "
            f"(first{since}): {cat}: {obs.detail or cat}; rolling back"
        )
        r = _move(r, RolloutPhase.ROLLING_BACK, obs.now, reason, detected_at=r.failure_since)
        return _decide(r, RollBack(r.previous))
    promoted = _maybe_promote(r, obs.now)
    return promoted or _decide(r, ProbeLive(policy.watch_interval))


def _rollback_done(r: Rollout, obs: RollbackDone, policy: RolloutPolicy) -> Decision:
    back = f"traffic back on {r.previous}" if r.previous else "no previous revision to serve"
    r = _move(r, RolloutPhase.ROLLED_BACK, obs.now, f"rolled back ({back}): {r.reason}")
    stop = (StopNew(r.candidate, drain=True),) if r.candidate else ()
    return _finish(r, *stop)


def _rollback_failed(r: Rollout, obs: RollbackFailed, policy: RolloutPolicy) -> Decision:
    return _finish(
        _move(r, RolloutPhase.FAILED, obs.now, f"rollback failed: {obs.error}; {r.reason}")
    )


def _resume(r: Rollout, obs: Resume, policy: RolloutPolicy) -> Decision:
    to = r.paused_from
    assert to is not None
    reason = f"resumed {to}"
    if to is RolloutPhase.GATING:
        return _decide(_move(r, to, obs.now, reason, paused_from=None), RunGates())
    candidate = r.candidate
    assert candidate is not None
    fresh = _FRESH
    if to is RolloutPhase.VERIFYING:
        deadline = obs.now + policy.ready_timeout
        r = _move(r, to, obs.now, reason, paused_from=None, verify_deadline=deadline, **fresh)
        return _decide(r, ProbeNew(candidate, 0.0))
    until = obs.now + policy.watch_seconds
    r = _move(r, to, obs.now, reason, paused_from=None, watch_until=until, **fresh)
    if to is RolloutPhase.CANARY:
        return _decide(r, ProbeCanary(candidate, 0.0))
    return _decide(r, ProbeLive(0.0))


def _cancel(r: Rollout, obs: Cancel) -> Decision:
    where = r.paused_from if r.phase is RolloutPhase.PAUSED else r.phase
    if r.phase is RolloutPhase.ROLLING_BACK:
        return Decision(r, (), f"already rolling back; {obs.reason} ignored")
    if where in (
        RolloutPhase.SPLITTING,
        RolloutPhase.CANARY,
        RolloutPhase.SWITCHING,
        RolloutPhase.WATCHING,
    ):
        when = (
            "after the switch"
            if where in (RolloutPhase.SWITCHING, RolloutPhase.WATCHING)
            else "during a canary step"
        )
        reason = f"{obs.reason} {when}; rolling back"
        r = _move(r, RolloutPhase.ROLLING_BACK, obs.now, reason, detected_at=obs.now)
        return _decide(r, RollBack(r.previous))
    return _fail_before_traffic(r, obs.now, f"{obs.reason} during {where}; no traffic was moved")


def _tick(r: Rollout, obs: Tick, policy: RolloutPolicy) -> Decision:
    # Past the deadline only an unbroken run of successes may still finish.
    expired = r.verify_deadline is not None and obs.now >= r.verify_deadline
    if r.phase is RolloutPhase.VERIFYING and expired and r.last_probe is not ProbeCategory.OK:
        return _fail_before_traffic(r, obs.now, _deadline_reason(r, policy))
    if r.phase is RolloutPhase.WATCHING:
        promoted = _maybe_promote(r, obs.now)
        if promoted:
            return promoted
    if r.phase is RolloutPhase.CANARY:
        advanced = _maybe_advance(r, obs.now, policy)
        if advanced:
            return advanced
    return Decision(r, (), r.reason)


# -- helpers --------------------------------------------------------------------------------


_FRESH: dict[str, object] = {
    "ok_streak": 0,
    "failure_streak": 0,
    "failure_since": None,
    "inconclusive_streak": 0,
    "last_probe": None,
    "last_detail": "",
}


def _count(r: Rollout, cat: ProbeCategory, obs: ProbeDone) -> Rollout:
    if cat is ProbeCategory.INCONCLUSIVE:
        # Says nothing about the revision: neither a success nor a failure.
        return replace(r, inconclusive_streak=r.inconclusive_streak + 1)
    if cat is ProbeCategory.OK:
        ready_at = r.ready_at
        if ready_at is None and r.phase is RolloutPhase.VERIFYING:
            ready_at = obs.now
        return replace(
            r,
            ok_streak=r.ok_streak + 1,
            failure_streak=0,
            failure_since=None,
            inconclusive_streak=0,
            last_probe=cat,
            last_detail=obs.detail,
            ready_at=ready_at,
        )
    return replace(
        r,
        ok_streak=0,
        failure_streak=r.failure_streak + 1,
        failure_since=r.failure_since if r.failure_streak else obs.now,
        inconclusive_streak=0,
        last_probe=cat,
        last_detail=obs.detail,
    )


def _maybe_pause(r: Rollout, obs: ProbeDone, policy: RolloutPolicy, retry: Action) -> Decision:
    if r.inconclusive_streak < policy.inconclusive_threshold:
        return _decide(r, retry)
    where = {
        RolloutPhase.WATCHING: "traffic stays on the new revision",
        RolloutPhase.CANARY: f"traffic stays split ({r.percent}% of new connections on {r.candidate})",
    }.get(r.phase, "no traffic moved")
    reason = (
        f"{r.inconclusive_streak} inconclusive probes in a row ({obs.detail or 'probe could not run'})"
        f"; paused, {where}"
    )
    return _finish(_move(r, RolloutPhase.PAUSED, obs.now, reason, paused_from=r.phase))


def _maybe_promote(r: Rollout, now: float) -> Decision | None:
    # Promote only on a success once the window is over: a failure streak still under the
    # threshold at the end of the window must resolve first, one way or the other.
    assert r.watch_until is not None
    if now < r.watch_until or r.last_probe is not ProbeCategory.OK:
        return None
    r = _move(r, RolloutPhase.PROMOTED, now, f"{r.candidate} promoted after a clean watch window")
    return _finish(r, *_drain_previous(r))


def _drain_previous(r: Rollout) -> tuple[Action, ...]:
    if r.previous and r.previous != r.candidate:
        return (DrainOld(r.previous),)
    return ()


def _fail_before_traffic(r: Rollout, now: float, reason: str) -> Decision:
    r = _move(r, RolloutPhase.FAILED, now, reason)
    stop = (StopNew(r.candidate, drain=False),) if r.candidate else ()
    return _finish(r, *stop)


def _deadline_reason(r: Rollout, policy: RolloutPolicy) -> str:
    last = f" (last probe: {r.last_probe}: {r.last_detail})" if r.last_probe else ""
    phase = starting_phase(r.last_detail) if r.last_probe is ProbeCategory.NOT_READY else None
    if r.ready_at is None and phase:
        # The load balancer of the incident accepted handshakes that no backend served; here
        # the candidate never had traffic, so nobody waited on it.
        return (
            f"{r.candidate} hung in phase {phase} after {policy.ready_timeout:g} s: it never "
            f"became ready, so it got no traffic{last}"
        )
    if r.ready_at is None:
        return f"{r.candidate} never became ready within {policy.ready_timeout:g}s{last}"
    return (
        f"{r.candidate} did not pass {policy.verify_probes} consecutive probes within "
        f"{policy.ready_timeout:g}s{last}"
    )


def _since_traffic(r: Rollout, t: float | None) -> str:
    if t is None or r.traffic_at is None:
        return ""
    return f" {t - r.traffic_at:.1f}s after it got traffic"


def _since(r: Rollout, t: float | None) -> str:
    if t is None or r.switched_at is None:
        return ""
    return f" {t - r.switched_at:.1f}s after the switch"


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: str, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(kind)
        raise IllegalTransition(f"unknown {what} {value!r}; expected one of {known}") from None


_HANDLERS: dict[tuple[RolloutPhase, type], Callable[[Rollout, Any, RolloutPolicy], Decision]] = {
    (RolloutPhase.PENDING, Begin): _begin,
    (RolloutPhase.GATING, GatesDone): _gates_done,
    (RolloutPhase.STARTING, RevisionStarted): _started,
    (RolloutPhase.STARTING, RevisionFailed): _start_failed,
    (RolloutPhase.VERIFYING, ProbeDone): _verify_probe,
    (RolloutPhase.VERIFYING, RevisionFailed): _start_failed,
    (RolloutPhase.SPLITTING, TrafficSet): _traffic_set,
    (RolloutPhase.SPLITTING, TrafficFailed): _traffic_failed,
    (RolloutPhase.CANARY, ProbeDone): _canary_probe,
    (RolloutPhase.SWITCHING, SwitchDone): _switch_done,
    (RolloutPhase.SWITCHING, SwitchFailed): _switch_failed,
    (RolloutPhase.WATCHING, ProbeDone): _watch_probe,
    (RolloutPhase.ROLLING_BACK, RollbackDone): _rollback_done,
    (RolloutPhase.ROLLING_BACK, RollbackFailed): _rollback_failed,
    (RolloutPhase.PAUSED, Resume): _resume,
}
