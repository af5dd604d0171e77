"""Pure tests of the rollout state machine: plain values in, decisions out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from safeship.config import DeployConfig
from safeship.core.rollout import (
    TERMINAL,
    TRANSITIONS,
    Begin,
    Cancel,
    Decision,
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
    Rollout,
    RolloutPhase,
    RolloutPolicy,
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
    gates_outcome,
    preflight,
    step,
    steps_problem,
)
from safeship.errors import IllegalTransition

POLICY = RolloutPolicy(
    verify_probes=3,
    verify_interval=0.2,
    ready_timeout=10.0,
    watch_seconds=5.0,
    watch_interval=0.5,
    failure_threshold=3,
    inconclusive_threshold=2,
)


def run(r: Rollout, *observations: Observation, policy: RolloutPolicy = POLICY) -> Decision:
    decision = Decision(r, (), "")
    for obs in observations:
        decision = step(decision.rollout, obs, policy)
    return decision


def verifying(now: float = 100.0, previous: str | None = "r1") -> Rollout:
    return run(
        Rollout(previous=previous),
        Begin(now),
        GatesDone(now, GateOutcome.PASSED),
        RevisionStarted(now, "r2"),
    ).rollout


def watching(now: float = 200.0, previous: str | None = "r1") -> Rollout:
    r = verifying(now - 1, previous)
    oks = [ProbeDone(now - 1, "ok")] * POLICY.verify_probes
    return run(r, *oks, SwitchDone(now)).rollout


def probes(start: float, interval: float, *categories: str) -> list[ProbeDone]:
    return [ProbeDone(start + i * interval, c, f"detail {i}") for i, c in enumerate(categories)]


# -- pending and gating ---------------------------------------------------------------------


def test_begin_runs_the_gates() -> None:
    d = step(Rollout(previous="r1"), Begin(1.0), POLICY)
    assert d.phase is RolloutPhase.GATING
    assert d.actions == (RunGates(),)
    assert d.rollout.started_at == 1.0


@pytest.mark.parametrize(
    ("outcome", "phase", "actions", "skipped"),
    [
        (GateOutcome.PASSED, RolloutPhase.STARTING, (StartRevision(),), False),
        ("skipped", RolloutPhase.STARTING, (StartRevision(),), True),
    ],
)
def test_gates_that_pass_or_are_skipped_start_the_revision(
    outcome: str, phase: RolloutPhase, actions: tuple[object, ...], skipped: bool
) -> None:
    d = run(Rollout(), Begin(0), GatesDone(1, outcome))
    assert d.phase is phase
    assert d.actions == actions
    assert d.rollout.gates_skipped is skipped


def test_failed_gates_fail_the_rollout_and_name_the_gates() -> None:
    d = run(Rollout(), Begin(0), GatesDone(1, "failed", ("static", "secrets")))
    assert d.phase is RolloutPhase.FAILED
    assert d.actions == (Finish(RolloutPhase.FAILED, "gates failed: static, secrets"),)


def test_gates_that_cannot_run_pause_instead_of_failing() -> None:
    d = run(Rollout(), Begin(0), GatesDone(1, GateOutcome.ERROR, ("boot",)))
    assert d.phase is RolloutPhase.PAUSED
    assert d.rollout.paused_from is RolloutPhase.GATING
    assert "boot" in d.reason and "inconclusive" in d.reason
    assert isinstance(d.actions[-1], Finish) and d.actions[-1].outcome is RolloutPhase.PAUSED


# -- starting -------------------------------------------------------------------------------


def test_started_revision_is_verified_at_once_with_a_ready_deadline() -> None:
    d = run(Rollout(), Begin(0), GatesDone(1, "passed"), RevisionStarted(2.0, "r2"))
    assert d.phase is RolloutPhase.VERIFYING
    assert d.rollout.candidate == "r2"
    assert d.rollout.verify_deadline == 2.0 + POLICY.ready_timeout
    assert d.actions == (ProbeNew("r2", after=0.0),)


def test_revision_that_fails_to_start_reports_phase_exit_code_and_error() -> None:
    failed = RevisionFailed(2.0, "r2", exit_code=3, phase="services", error="NameError: x")
    d = run(Rollout(previous="r1"), Begin(0), GatesDone(1, "passed"), failed)
    assert d.phase is RolloutPhase.FAILED
    assert d.reason == "r2 failed to start in phase 'services' (exit code 3): NameError: x"
    assert d.actions == (StopNew("r2", drain=False), Finish(RolloutPhase.FAILED, d.reason))


def test_revision_that_could_not_even_be_created_has_nothing_to_stop() -> None:
    d = run(Rollout(), Begin(0), GatesDone(1, "passed"), RevisionFailed(2.0, error="no space"))
    assert d.phase is RolloutPhase.FAILED
    assert d.actions == (Finish(RolloutPhase.FAILED, "the new revision failed to start: no space"),)


# -- verifying ------------------------------------------------------------------------------


def test_n_consecutive_successes_switch_traffic() -> None:
    r = verifying(now=0)
    d = run(r, *probes(0.1, 0.2, "ok", "ok"))
    assert d.phase is RolloutPhase.VERIFYING
    assert d.actions == (ProbeNew("r2", after=POLICY.verify_interval),)
    d = step(d.rollout, ProbeDone(0.6, "ok"), POLICY)
    assert d.phase is RolloutPhase.SWITCHING
    assert d.actions == (Switch("r2"),)
    assert d.rollout.ready_at == 0.1


def test_a_failure_resets_the_consecutive_count() -> None:
    d = run(verifying(now=0), *probes(0.1, 0.2, "ok", "ok", "timeout", "ok", "ok"))
    assert d.phase is RolloutPhase.VERIFYING
    assert d.rollout.ok_streak == 2
    assert step(d.rollout, ProbeDone(2.0, "ok"), POLICY).phase is RolloutPhase.SWITCHING


@pytest.mark.parametrize("category", ["auth", ProbeCategory.INTERNAL_ERROR])
def test_auth_or_internal_error_fails_verification_at_once(category: str) -> None:
    # Even after successes, and long before the deadline.
    d = run(verifying(now=0), ProbeDone(0.1, "ok"), ProbeDone(0.2, category, "HTTP 401"))
    assert d.phase is RolloutPhase.FAILED
    assert "HTTP 401" in d.reason
    assert d.actions == (StopNew("r2", drain=False), Finish(RolloutPhase.FAILED, d.reason))


def test_not_ready_keeps_waiting_until_the_deadline_then_fails() -> None:
    r = verifying(now=0)
    d = run(r, ProbeDone(9.9, "not_ready", "HTTP 503 phase=services"))
    assert d.phase is RolloutPhase.VERIFYING
    assert d.actions == (ProbeNew("r2", POLICY.verify_interval),)
    d = step(d.rollout, ProbeDone(10.0, "not_ready", "HTTP 503 phase=services"), POLICY)
    assert d.phase is RolloutPhase.FAILED
    assert d.reason.startswith("r2 never became ready within 10s")
    assert "HTTP 503 phase=services" in d.reason
    assert StopNew("r2", drain=False) in d.actions


@pytest.mark.parametrize("category", ["unreachable", "timeout", "protocol", "check_failed"])
def test_other_failures_wait_for_the_deadline(category: str) -> None:
    d = run(verifying(now=0), ProbeDone(1.0, "ok"), ProbeDone(2.0, category))
    assert d.phase is RolloutPhase.VERIFYING
    assert d.rollout.ok_streak == 0
    d = step(d.rollout, ProbeDone(11.0, category, "boom"), POLICY)
    assert d.phase is RolloutPhase.FAILED
    assert d.reason.startswith("r2 did not pass 3 consecutive probes within 10s")


def test_successes_past_the_deadline_may_still_finish_the_streak() -> None:
    d = run(verifying(now=0), *probes(9.8, 0.2, "ok", "ok", "ok"))
    assert d.phase is RolloutPhase.SWITCHING


def test_tick_fails_verification_only_past_the_deadline_without_a_streak() -> None:
    r = verifying(now=0)
    assert step(r, Tick(5.0), POLICY) == Decision(r, (), r.reason)
    expired = step(r, Tick(10.0), POLICY)
    assert expired.phase is RolloutPhase.FAILED
    assert "never became ready" in expired.reason
    streak = run(r, ProbeDone(9.9, "ok"), Tick(10.1))
    assert streak.phase is RolloutPhase.VERIFYING
    assert streak.actions == ()


def test_inconclusive_probes_pause_verification_and_never_promote() -> None:
    r = run(verifying(now=0), ProbeDone(0.1, "ok"), ProbeDone(0.2, "ok")).rollout
    once = step(r, ProbeDone(0.3, "inconclusive", "token file unreadable"), POLICY)
    assert once.phase is RolloutPhase.VERIFYING
    assert once.rollout.ok_streak == 2  # neither a success nor a failure
    assert once.actions == (ProbeNew("r2", POLICY.verify_interval),)
    twice = step(once.rollout, ProbeDone(0.4, "inconclusive", "token file unreadable"), POLICY)
    assert twice.phase is RolloutPhase.PAUSED
    assert twice.rollout.paused_from is RolloutPhase.VERIFYING
    assert "token file unreadable" in twice.reason and "no traffic moved" in twice.reason
    assert twice.actions == (Finish(RolloutPhase.PAUSED, twice.reason),)
    assert not any(isinstance(a, (Switch, StopNew, RollBack)) for a in twice.actions)


def test_revision_that_exits_during_verification_fails() -> None:
    d = step(verifying(now=0), RevisionFailed(1.0, "r2", exit_code=1), POLICY)
    assert d.phase is RolloutPhase.FAILED
    assert d.reason == "r2 exited during verification (exit code 1)"


# -- switching and watching -----------------------------------------------------------------


def test_switch_done_starts_the_watch_window() -> None:
    r = watching(now=200.0)
    assert r.phase is RolloutPhase.WATCHING
    assert r.switched_at == 200.0
    assert r.watch_until == 205.0
    assert r.ok_streak == 0


def test_switch_done_without_a_watch_window_promotes() -> None:
    policy = replace(POLICY, watch_seconds=0)
    r = run(verifying(now=0), *[ProbeDone(1, "ok")] * 3).rollout
    d = step(r, SwitchDone(2.0), policy)
    assert d.phase is RolloutPhase.PROMOTED
    assert d.actions == (DrainOld("r1"), Finish(RolloutPhase.PROMOTED, d.reason))


def test_switch_failure_restores_the_previous_routing() -> None:
    r = run(verifying(now=0), *[ProbeDone(1, "ok")] * 3).rollout
    d = step(r, SwitchFailed(2.0, "front did not answer"), POLICY)
    assert d.phase is RolloutPhase.ROLLING_BACK
    assert d.actions == (RollBack("r1"),)
    assert "front did not answer" in d.reason


def test_k_consecutive_failures_roll_back_and_record_the_first_failure() -> None:
    r = watching(now=200.0)
    d = run(r, *probes(200.0, 0.5, "ok", "ok", "internal_error", "internal_error"))
    assert d.phase is RolloutPhase.WATCHING
    assert d.actions == (ProbeLive(after=POLICY.watch_interval),)
    d = step(d.rollout, ProbeDone(202.0, "internal_error", "closed 1011"), POLICY)
    assert d.phase is RolloutPhase.ROLLING_BACK
    assert d.actions == (RollBack("r1"),)
    assert d.rollout.detected_at == 201.0
    assert "3 consecutive failed probes" in d.reason and "1.0s after the switch" in d.reason


def test_failures_that_are_not_consecutive_do_not_roll_back() -> None:
    cats = ("timeout", "timeout", "ok", "timeout", "timeout", "ok")
    d = run(watching(now=200.0), *probes(200.0, 0.5, *cats))
    assert d.phase is RolloutPhase.WATCHING


def test_a_clean_window_promotes_and_drains_the_old_revision() -> None:
    d = run(watching(now=200.0), *probes(200.0, 0.5, *["ok"] * 10))
    assert d.phase is RolloutPhase.WATCHING  # 204.5 < 205
    d = step(d.rollout, ProbeDone(205.0, "ok"), POLICY)
    assert d.phase is RolloutPhase.PROMOTED
    assert d.actions == (DrainOld("r1"), Finish(RolloutPhase.PROMOTED, d.reason))


def test_first_deploy_promotes_without_draining() -> None:
    d = run(watching(now=200.0, previous=None), *probes(200.0, 5.0, "ok", "ok"))
    assert d.phase is RolloutPhase.PROMOTED
    assert d.actions == (Finish(RolloutPhase.PROMOTED, d.reason),)


def test_a_failure_streak_open_at_the_end_of_the_window_must_resolve() -> None:
    r = run(watching(now=200.0), *probes(204.0, 0.5, "ok", "timeout", "timeout")).rollout
    assert r.phase is RolloutPhase.WATCHING  # window over, streak 2 < 3
    assert step(r, Tick(206.0), POLICY).phase is RolloutPhase.WATCHING
    assert step(r, ProbeDone(206.0, "ok"), POLICY).phase is RolloutPhase.PROMOTED
    assert step(r, ProbeDone(206.0, "timeout"), POLICY).phase is RolloutPhase.ROLLING_BACK


def test_tick_promotes_after_the_window_only_on_a_last_success() -> None:
    r = run(watching(now=200.0), ProbeDone(200.0, "ok")).rollout
    assert step(r, Tick(204.0), POLICY).phase is RolloutPhase.WATCHING
    assert step(r, Tick(205.0), POLICY).phase is RolloutPhase.PROMOTED
    # No probe at all in the window is no evidence: keep watching.
    assert step(watching(now=200.0), Tick(300.0), POLICY).phase is RolloutPhase.WATCHING


def test_inconclusive_while_watching_pauses_and_leaves_traffic() -> None:
    d = run(watching(now=200.0), *probes(200.0, 0.5, "inconclusive", "inconclusive"))
    assert d.phase is RolloutPhase.PAUSED
    assert d.rollout.paused_from is RolloutPhase.WATCHING
    assert "traffic stays on the new revision" in d.reason
    assert d.actions == (Finish(RolloutPhase.PAUSED, d.reason),)


def test_story_revision_goes_bad_five_seconds_after_the_switch() -> None:
    # Default policy: a probe every 0.5 s, K=3. Bad from +5.0 s: rollback decided at +6.0 s.
    policy = RolloutPolicy.from_config(DeployConfig())
    r = run(verifying(now=0), *[ProbeDone(1, "ok")] * 5, SwitchDone(10.0), policy=policy)
    d = Decision(r.rollout, (), "")
    t = 10.0
    while d.phase is RolloutPhase.WATCHING:
        cat = "ok" if t < 15.0 else "internal_error"
        d = step(d.rollout, ProbeDone(t, cat, "closed 1011"), policy)
        t += policy.watch_interval
    assert d.phase is RolloutPhase.ROLLING_BACK
    assert d.rollout.detected_at == 15.0
    assert d.rollout.phase_since == 16.0


# -- rolling back ---------------------------------------------------------------------------


def rolling_back(previous: str | None = "r1") -> Rollout:
    r = watching(now=200.0, previous=previous)
    return run(r, *probes(200.0, 0.5, "timeout", "timeout", "timeout")).rollout


def test_rollback_done_stops_the_new_revision_with_a_drain() -> None:
    d = step(rolling_back(), RollbackDone(202.0), POLICY)
    assert d.phase is RolloutPhase.ROLLED_BACK
    assert d.actions == (StopNew("r2", drain=True), Finish(RolloutPhase.ROLLED_BACK, d.reason))
    assert "traffic back on r1" in d.reason


def test_first_deploy_rolls_back_to_nothing() -> None:
    r = rolling_back(previous=None)
    assert r.phase is RolloutPhase.ROLLING_BACK
    d = step(r, RollbackDone(202.0), POLICY)
    assert "no previous revision" in d.reason


def test_rollback_back_action_names_none_on_first_deploy() -> None:
    r = watching(now=200.0, previous=None)
    d = run(r, *probes(200.0, 0.5, "timeout", "timeout", "timeout"))
    assert d.actions == (RollBack(None),)


def test_rollback_failure_fails_the_rollout() -> None:
    d = step(rolling_back(), RollbackFailed(202.0, "front unreachable"), POLICY)
    assert d.phase is RolloutPhase.FAILED
    assert d.reason.startswith("rollback failed: front unreachable")


# -- paused, cancel -------------------------------------------------------------------------


def test_resume_continues_where_it_paused_with_fresh_deadlines() -> None:
    gating = run(Rollout(), Begin(0), GatesDone(1, "error")).rollout
    d = step(gating, Resume(50.0), POLICY)
    assert (d.phase, d.actions) == (RolloutPhase.GATING, (RunGates(),))

    paused_verify = run(verifying(now=0), *probes(1, 0.1, "inconclusive", "inconclusive"))
    d = step(paused_verify.rollout, Resume(50.0), POLICY)
    assert (d.phase, d.actions) == (RolloutPhase.VERIFYING, (ProbeNew("r2", 0.0),))
    assert d.rollout.verify_deadline == 60.0
    assert d.rollout.inconclusive_streak == 0

    paused_watch = run(watching(200.0), *probes(200, 0.5, "inconclusive", "inconclusive"))
    d = step(paused_watch.rollout, Resume(300.0), POLICY)
    assert (d.phase, d.actions) == (RolloutPhase.WATCHING, (ProbeLive(0.0),))
    assert d.rollout.watch_until == 305.0


def cancel_case(phase: RolloutPhase) -> Rollout:
    base = verifying(now=0)
    return {
        RolloutPhase.PENDING: Rollout(previous="r1"),
        RolloutPhase.GATING: run(Rollout(previous="r1"), Begin(0)).rollout,
        RolloutPhase.STARTING: run(
            Rollout(previous="r1"), Begin(0), GatesDone(0, "passed")
        ).rollout,
        RolloutPhase.VERIFYING: base,
        RolloutPhase.SWITCHING: run(base, *[ProbeDone(1, "ok")] * 3).rollout,
        RolloutPhase.WATCHING: watching(),
        RolloutPhase.SPLITTING: splitting(now=0),
        RolloutPhase.CANARY: at_canary(now=0),
    }[phase]


@pytest.mark.parametrize(
    ("phase", "to", "actions"),
    [
        (RolloutPhase.PENDING, RolloutPhase.FAILED, ()),
        (RolloutPhase.GATING, RolloutPhase.FAILED, ()),
        (RolloutPhase.STARTING, RolloutPhase.FAILED, ()),
        (RolloutPhase.VERIFYING, RolloutPhase.FAILED, (StopNew("r2", drain=False),)),
        (RolloutPhase.SWITCHING, RolloutPhase.ROLLING_BACK, (RollBack("r1"),)),
        (RolloutPhase.WATCHING, RolloutPhase.ROLLING_BACK, (RollBack("r1"),)),
        (RolloutPhase.SPLITTING, RolloutPhase.ROLLING_BACK, (RollBack("r1"),)),
        (RolloutPhase.CANARY, RolloutPhase.ROLLING_BACK, (RollBack("r1"),)),
    ],
)
def test_cancel_leaves_the_previous_revision_serving(
    phase: RolloutPhase, to: RolloutPhase, actions: tuple[object, ...]
) -> None:
    d = step(cancel_case(phase), Cancel(5.0, "interrupted (Ctrl-C)"), POLICY)
    assert d.phase is to
    assert "interrupted (Ctrl-C)" in d.reason
    if to is RolloutPhase.FAILED:
        assert d.actions == (*actions, Finish(RolloutPhase.FAILED, d.reason))
    else:
        assert d.actions == actions


def test_cancel_of_a_paused_rollout_depends_on_where_traffic_is() -> None:
    paused_verify = run(verifying(now=0), *probes(1, 0.1, "inconclusive", "inconclusive"))
    assert step(paused_verify.rollout, Cancel(5), POLICY).phase is RolloutPhase.FAILED
    paused_watch = run(watching(200.0), *probes(200, 0.5, "inconclusive", "inconclusive"))
    d = step(paused_watch.rollout, Cancel(205), POLICY)
    assert (d.phase, d.actions) == (RolloutPhase.ROLLING_BACK, (RollBack("r1"),))


def test_cancel_while_rolling_back_changes_nothing() -> None:
    r = rolling_back()
    d = step(r, Cancel(203.0), POLICY)
    assert d.rollout == r
    assert d.actions == ()


# -- illegal --------------------------------------------------------------------------------

SAMPLES: list[Observation] = [
    Begin(1),
    GatesDone(1, "passed"),
    RevisionStarted(1, "r9"),
    RevisionFailed(1, "r9"),
    ProbeDone(1, "ok"),
    SwitchDone(1),
    SwitchFailed(1, "x"),
    RollbackDone(1),
    RollbackFailed(1, "x"),
    Resume(1),
    TrafficSet(1, 10),
    TrafficFailed(1, "x"),
]
ACCEPTED: dict[RolloutPhase, set[type]] = {
    RolloutPhase.PENDING: {Begin},
    RolloutPhase.GATING: {GatesDone},
    RolloutPhase.STARTING: {RevisionStarted, RevisionFailed},
    RolloutPhase.VERIFYING: {ProbeDone, RevisionFailed},
    RolloutPhase.SWITCHING: {SwitchDone, SwitchFailed},
    RolloutPhase.SPLITTING: {TrafficSet, TrafficFailed},
    RolloutPhase.CANARY: {ProbeDone},
    RolloutPhase.WATCHING: {ProbeDone},
    RolloutPhase.ROLLING_BACK: {RollbackDone, RollbackFailed},
    RolloutPhase.PAUSED: {Resume},
}


def in_phase(phase: RolloutPhase) -> Rollout:
    if phase in (RolloutPhase.PENDING, RolloutPhase.GATING, RolloutPhase.STARTING, RolloutPhase.VERIFYING, RolloutPhase.SWITCHING, RolloutPhase.WATCHING,
                 RolloutPhase.SPLITTING, RolloutPhase.CANARY):  # fmt: skip
        return cancel_case(phase)
    if phase is RolloutPhase.ROLLING_BACK:
        return rolling_back()
    if phase is RolloutPhase.PAUSED:
        return run(watching(200.0), *probes(200, 0.5, "inconclusive", "inconclusive")).rollout
    return replace(rolling_back(), phase=phase)  # a terminal phase


@pytest.mark.parametrize("phase", list(RolloutPhase))
@pytest.mark.parametrize("obs", SAMPLES, ids=lambda o: type(o).__name__)
def test_unexpected_observations_raise(phase: RolloutPhase, obs: Observation) -> None:
    r = in_phase(phase)
    assert r.phase is phase
    if type(obs) in ACCEPTED.get(phase, set()):
        step(r, obs, POLICY)  # accepted: must not raise
        return
    with pytest.raises(IllegalTransition):
        step(r, obs, POLICY)


@pytest.mark.parametrize("phase", sorted(TERMINAL))
@pytest.mark.parametrize("obs", [Tick(1), Cancel(1)], ids=["tick", "cancel"])
def test_terminal_phases_accept_nothing(phase: RolloutPhase, obs: Observation) -> None:
    with pytest.raises(IllegalTransition, match="already ended"):
        step(in_phase(phase), obs, POLICY)


def test_unknown_category_or_outcome_raises_naming_the_choices() -> None:
    with pytest.raises(IllegalTransition, match=r"unknown probe category 'dns'.*not_ready"):
        step(verifying(), ProbeDone(1, "dns"), POLICY)
    with pytest.raises(IllegalTransition, match="unknown gate outcome"):
        run(Rollout(), Begin(0), GatesDone(1, "maybe"))


def test_transition_table_is_complete_and_terminals_are_final() -> None:
    assert set(TRANSITIONS) == set(RolloutPhase)
    for phase in TERMINAL:
        assert TRANSITIONS[phase] == frozenset()
    for phase, targets in TRANSITIONS.items():
        assert phase not in targets, phase


def test_policy_from_config_uses_the_manifest_values() -> None:
    policy = RolloutPolicy.from_config(DeployConfig(verify_probes=7, failure_threshold=2))
    assert policy.verify_probes == 7
    assert policy.failure_threshold == 2
    assert policy.watch_seconds == 30.0
    assert policy.watch_interval == 0.5
    assert policy.ready_timeout == 30.0
    assert policy.inconclusive_threshold == 3


def test_full_happy_path_driven_by_actions() -> None:
    """A minimal driver: every action becomes the next observation."""
    policy = RolloutPolicy(verify_probes=2, watch_seconds=1.0, watch_interval=0.5)
    now = 0.0
    d = step(Rollout(previous="r1"), Begin(now), policy)
    seen: list[RolloutPhase] = [d.phase]
    while not d.rollout.is_terminal:
        action = d.actions[0]
        now += 0.25
        obs: Observation
        if isinstance(action, RunGates):
            obs = GatesDone(now, "passed")
        elif isinstance(action, StartRevision):
            obs = RevisionStarted(now, "r2")
        elif isinstance(action, (ProbeNew, ProbeLive)):
            now += action.after
            obs = ProbeDone(now, "ok")
        elif isinstance(action, Switch):
            obs = SwitchDone(now)
        else:
            raise AssertionError(action)
        d = step(d.rollout, obs, policy)
        if d.phase is not seen[-1]:
            seen.append(d.phase)
    assert seen == [
        RolloutPhase.GATING,
        RolloutPhase.STARTING,
        RolloutPhase.VERIFYING,
        RolloutPhase.SWITCHING,
        RolloutPhase.WATCHING,
        RolloutPhase.PROMOTED,
    ]
    assert d.actions == (DrainOld("r1"), Finish(RolloutPhase.PROMOTED, d.reason))


def test_categories_match_the_verdict_module() -> None:
    # The rollout takes categories as plain values; this keeps the two vocabularies in step.
    verdict = pytest.importorskip("safeship.core.verdict")
    assert {str(c) for c in verdict.Category} == {str(c) for c in ProbeCategory}


# -- before the rollout: pre-deploy health and the gates' outcome ----------------------------


def test_preflight_first_deploy_proceeds() -> None:
    answer = preflight(None, None, force=False)
    assert answer.proceed and not answer.forced


def test_preflight_healthy_current_revision_proceeds() -> None:
    answer = preflight("r3", "ok", force=False)
    assert answer.proceed and not answer.forced


@pytest.mark.parametrize("health", ["not_ready", "internal_error", "unreachable", None])
def test_preflight_unhealthy_current_revision_needs_force(health: str | None) -> None:
    blocked = preflight("r3", health, force=False)
    assert not blocked.proceed and "r3" in blocked.reason
    forced = preflight("r3", health, force=True)
    assert forced.proceed and forced.forced


def test_preflight_unknown_category_is_a_programming_error() -> None:
    with pytest.raises(IllegalTransition):
        preflight("r3", "nonsense", force=True)


@pytest.mark.parametrize(
    ("statuses", "skipped", "expected"),
    [
        ({"static": "passed", "secrets": "passed"}, (), (GateOutcome.PASSED, ())),
        ({"static": "passed"}, ("legacy",), (GateOutcome.SKIPPED, ())),
        ({"static": "failed", "secrets": "error"}, (), (GateOutcome.FAILED, ("static",))),
        ({"static": "passed", "secrets": "error"}, ("legacy",), (GateOutcome.ERROR, ("secrets",))),
        ({}, (), (GateOutcome.PASSED, ())),
    ],
)
def test_gates_outcome(
    statuses: dict[str, str],
    skipped: tuple[str, ...],
    expected: tuple[GateOutcome, tuple[str, ...]],
) -> None:
    assert gates_outcome(statuses, skipped) == expected


# -- canary steps ---------------------------------------------------------------------------

CANARY = replace(POLICY, steps=(10, 50, 100))


def splitting(now: float = 100.0, previous: str | None = "r1") -> Rollout:
    r = verifying(now - 1, previous)
    oks = [ProbeDone(now, "ok")] * POLICY.verify_probes
    return run(r, *oks, policy=CANARY).rollout


def at_canary(now: float = 100.0, percent: int = 10) -> Rollout:
    return run(splitting(now), TrafficSet(now, percent), policy=CANARY).rollout


def test_verified_revision_gets_the_first_step_not_all_traffic() -> None:
    r = verifying(99.0)
    d = run(r, *[ProbeDone(100.0, "ok")] * POLICY.verify_probes, policy=CANARY)
    assert d.phase is RolloutPhase.SPLITTING
    assert d.actions == (SetTraffic("r2", "r1", 10),)
    assert "10% of new connections to r2" in d.reason


def test_a_confirmed_split_watches_the_candidate_on_its_own_traffic() -> None:
    d = step(splitting(100.0), TrafficSet(100.5, 10), CANARY)
    assert d.phase is RolloutPhase.CANARY
    assert d.actions == (ProbeCanary("r2", after=0.0),)
    assert (d.rollout.percent, d.rollout.traffic_at, d.rollout.watch_until) == (10, 100.5, 105.5)


def test_each_clean_step_moves_to_the_next_then_switches_whole() -> None:
    r = at_canary(100.0)
    d = run(r, *probes(100.0, 1.0, *["ok"] * 6), policy=CANARY)  # 100 .. 105: window over
    assert (d.phase, d.actions) == (RolloutPhase.SPLITTING, (SetTraffic("r2", "r1", 50),))
    d = run(d.rollout, TrafficSet(106.0, 50), *probes(106.0, 1.0, *["ok"] * 6), policy=CANARY)
    assert (d.phase, d.actions) == (RolloutPhase.SWITCHING, (Switch("r2"),))
    assert d.rollout.percent == 50 and "clean at 50%" in d.reason
    d = step(d.rollout, SwitchDone(112.0), CANARY)
    assert (d.phase, d.rollout.percent, d.rollout.traffic_at) == (RolloutPhase.WATCHING, 100, 100.0)


def test_a_step_is_not_passed_before_its_window_ends() -> None:
    d = run(at_canary(100.0), *probes(100.0, 1.0, "ok", "ok", "ok"), policy=CANARY)
    assert (d.phase, d.actions) == (
        RolloutPhase.CANARY,
        (ProbeCanary("r2", CANARY.watch_interval),),
    )


def test_failure_at_the_ten_percent_step_rolls_back() -> None:
    r = at_canary(100.0)
    d = run(r, *probes(101.0, 0.5, "ok", "internal_error", "internal_error", "internal_error"),
            policy=CANARY)  # fmt: skip
    assert d.phase is RolloutPhase.ROLLING_BACK
    assert d.actions == (RollBack("r1"),)
    assert "at the 10% step" in d.reason and "internal_error" in d.reason
    assert "1.5s after it got traffic" in d.reason
    assert d.rollout.detected_at == 101.5
    d = step(d.rollout, RollbackDone(103.0), CANARY)
    assert d.phase is RolloutPhase.ROLLED_BACK
    assert d.actions == (StopNew("r2", drain=True), Finish(RolloutPhase.ROLLED_BACK, d.reason))


def test_failure_at_a_later_step_rolls_back_too() -> None:
    r = at_canary(100.0)
    d = run(r, *probes(100.0, 1.0, *["ok"] * 6), TrafficSet(106.0, 50), policy=CANARY)
    d = run(d.rollout, *probes(107.0, 0.5, *["auth"] * 3), policy=CANARY)
    assert (d.phase, d.actions) == (RolloutPhase.ROLLING_BACK, (RollBack("r1"),))
    assert "at the 50% step" in d.reason


def test_failures_that_are_not_consecutive_do_not_end_a_step() -> None:
    cats = ["internal_error", "internal_error", "ok", "internal_error", "ok"]
    d = run(at_canary(100.0), *probes(100.0, 0.5, *cats), policy=CANARY)
    assert d.phase is RolloutPhase.CANARY


def test_a_step_window_ending_inside_a_failure_streak_must_resolve_first() -> None:
    cats = ["ok", "ok", "ok", "ok", "ok", "not_ready", "not_ready"]
    d = run(at_canary(100.0), *probes(100.0, 1.0, *cats), policy=CANARY)
    assert d.phase is RolloutPhase.CANARY  # past the window, but the last probe failed
    assert step(d.rollout, Tick(200.0), CANARY).phase is RolloutPhase.CANARY
    d = step(d.rollout, ProbeDone(107.0, "ok"), CANARY)
    assert d.phase is RolloutPhase.SPLITTING


def test_tick_advances_a_step_only_after_its_window_on_a_last_success() -> None:
    d = run(at_canary(100.0), ProbeDone(100.2, "ok"), policy=CANARY)
    assert step(d.rollout, Tick(104.0), CANARY).actions == ()
    assert step(d.rollout, Tick(105.0), CANARY).actions == (SetTraffic("r2", "r1", 50),)


def test_a_split_that_fails_restores_the_previous_routing() -> None:
    d = step(splitting(100.0), TrafficFailed(100.5, "the front did not answer"), CANARY)
    assert (d.phase, d.actions) == (RolloutPhase.ROLLING_BACK, (RollBack("r1"),))
    assert "the front did not answer" in d.reason and d.rollout.detected_at == 100.5


def test_inconclusive_canary_probes_pause_with_traffic_split() -> None:
    d = run(at_canary(100.0), *probes(100.0, 0.5, "inconclusive", "inconclusive"), policy=CANARY)
    assert d.phase is RolloutPhase.PAUSED and d.rollout.paused_from is RolloutPhase.CANARY
    assert "traffic stays split (10% of new connections on r2)" in d.reason
    resumed = step(d.rollout, Resume(300.0), CANARY)
    assert (resumed.phase, resumed.actions) == (RolloutPhase.CANARY, (ProbeCanary("r2", 0.0),))
    assert resumed.rollout.watch_until == 305.0 and resumed.rollout.percent == 10
    cancelled = step(d.rollout, Cancel(301.0), CANARY)
    assert (cancelled.phase, cancelled.actions) == (RolloutPhase.ROLLING_BACK, (RollBack("r1"),))


def test_first_deploy_has_nothing_to_split_with_and_switches_whole() -> None:
    r = verifying(99.0, previous=None)
    d = run(r, *[ProbeDone(100.0, "ok")] * POLICY.verify_probes, policy=CANARY)
    assert (d.phase, d.actions) == (RolloutPhase.SWITCHING, (Switch("r2"),))
    assert "first deploy" in d.reason


def test_no_watch_window_walks_the_steps_without_probing() -> None:
    policy = replace(CANARY, watch_seconds=0.0)
    d = step(splitting(100.0), TrafficSet(100.0, 10), policy)
    assert (d.phase, d.actions) == (RolloutPhase.SPLITTING, (SetTraffic("r2", "r1", 50),))


def test_one_hundred_percent_only_is_todays_switch() -> None:
    r = verifying(99.0)
    d = run(r, *[ProbeDone(100.0, "ok")] * POLICY.verify_probes)
    assert (d.phase, d.actions) == (RolloutPhase.SWITCHING, (Switch("r2"),))


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ([], "whole percents"),
        ([0, 100], "whole percents"),
        ([10, 101], "whole percents"),
        ([50, 10, 100], "increasing"),
        ([10, 10, 100], "increasing"),
        ([10, 50], "last step must be 100"),
    ],
)
def test_invalid_steps_are_named(steps: list[int], problem: str) -> None:
    assert problem in (steps_problem(steps) or "")
    with pytest.raises(ValueError, match=problem):
        RolloutPolicy(steps=tuple(steps))


@pytest.mark.parametrize("steps", [[100], [1, 100], [10, 50, 100], [25, 50, 75, 99, 100]])
def test_valid_steps(steps: list[int]) -> None:
    assert steps_problem(steps) is None


def test_policy_from_config_carries_the_steps() -> None:
    assert RolloutPolicy.from_config(DeployConfig()).steps == (100,)
    assert RolloutPolicy.from_config(DeployConfig(steps=[10, 100])).steps == (10, 100)


def test_full_canary_path_driven_by_actions() -> None:
    policy = RolloutPolicy(verify_probes=2, watch_seconds=1.0, watch_interval=0.5,
                           steps=(10, 50, 100))  # fmt: skip
    now = 0.0
    d = step(Rollout(previous="r1"), Begin(now), policy)
    phases, percents = [d.phase], []
    while not d.rollout.is_terminal:
        action = d.actions[0]
        now += 0.25
        obs: Observation
        if isinstance(action, RunGates):
            obs = GatesDone(now, "passed")
        elif isinstance(action, StartRevision):
            obs = RevisionStarted(now, "r2")
        elif isinstance(action, (ProbeNew, ProbeLive, ProbeCanary)):
            now += action.after
            obs = ProbeDone(now, "ok")
        elif isinstance(action, SetTraffic):
            obs = TrafficSet(now, action.percent)
            percents.append(action.percent)
        elif isinstance(action, Switch):
            obs = SwitchDone(now)
        else:
            raise AssertionError(action)
        d = step(d.rollout, obs, policy)
        if d.phase is not phases[-1]:
            phases.append(d.phase)
    assert phases == [RolloutPhase.GATING, RolloutPhase.STARTING, RolloutPhase.VERIFYING, RolloutPhase.SPLITTING, RolloutPhase.CANARY, RolloutPhase.SPLITTING,
                      RolloutPhase.CANARY, RolloutPhase.SWITCHING, RolloutPhase.WATCHING, RolloutPhase.PROMOTED]  # fmt: skip
    assert percents == [10, 50]
    assert d.actions == (DrainOld("r1"), Finish(RolloutPhase.PROMOTED, d.reason))


def test_a_candidate_stuck_starting_is_reported_as_hung_in_its_phase() -> None:
    detail = "HTTP 503 to the request; status=starting phase=cache"
    d = run(
        verifying(now=0), ProbeDone(5.0, "not_ready", detail), ProbeDone(10.0, "not_ready", detail)
    )
    assert d.phase is RolloutPhase.FAILED
    assert d.reason.startswith("r2 hung in phase cache after 10 s: it never became ready")
    assert StopNew("r2", drain=False) in d.actions
