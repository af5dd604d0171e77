import pytest

from safeship.core.startup import (
    PhaseSpec,
    PhaseState,
    ServiceState,
    StartupMachine,
    hint_for,
)
from safeship.errors import IllegalTransition


def plan(*specs):
    return StartupMachine.plan([PhaseSpec(n, 5.0, c) for n, c in specs])


def test_happy_path_runs_phases_in_order():
    m = plan(("config", True), ("secrets", True), ("database", True))
    assert m.state is ServiceState.PENDING
    assert m.begin(now=0).name == "config"
    assert m.state is ServiceState.STARTING
    assert m.snapshot()["phase"] == "config"
    assert m.succeeded("config", now=1).name == "secrets"
    assert m.succeeded("secrets", now=3).name == "database"
    assert m.succeeded("database", now=6) is None
    assert m.state is ServiceState.READY and m.ready
    assert [r.duration for r in m.phases] == [1, 2, 3]
    assert m.since == 6
    assert [p["state"] for p in m.snapshot()["phases"]] == ["ok", "ok", "ok"]


def test_no_phases_is_ready_at_once():
    m = plan()
    assert m.begin(now=5) is None
    assert m.ready


def test_critical_failure_fails_startup_and_marks_the_rest_not_run():
    m = plan(("config", True), ("agents", True), ("websocket", True))
    m.begin(0)
    m.succeeded("config", 1)
    assert m.failed("agents", "NameError: x", 2, hint="import x") is None
    assert m.state is ServiceState.FAILED
    assert m.failed_phase == "agents"
    assert m.error == "NameError: x" and m.hint == "import x"
    assert [r.state for r in m.phases] == [PhaseState.OK, PhaseState.FAILED, PhaseState.NOT_RUN]
    snap = m.snapshot()
    assert snap["status"] == "failed" and snap["phase"] == "agents"


def test_timeout_is_recorded_as_timed_out():
    m = plan(("database", True))
    m.begin(0)
    m.failed("database", "no answer", 10, timed_out=True)
    assert m.phases[0].state is PhaseState.TIMED_OUT
    assert m.state is ServiceState.FAILED


def test_optional_failure_continues_and_reports_degraded():
    m = plan(("cache", False), ("agents", True))
    m.begin(0)
    assert m.failed("cache", "redis down", 1).name == "agents"
    assert m.succeeded("agents", 2) is None
    assert m.ready
    assert m.degraded == ["cache"]
    assert m.snapshot()["degraded"] == ["cache"]


def test_optional_last_phase_failure_is_ready():
    m = plan(("metrics", False))
    m.begin(0)
    assert m.failed("metrics", "x", 1) is None
    assert m.ready and m.degraded == ["metrics"]


def test_drain_from_ready_and_from_starting():
    m = plan(("a", True))
    m.begin(0)
    m.succeeded("a", 1)
    m.drain(2)
    assert m.state is ServiceState.DRAINING
    m.drain(3)  # idempotent
    assert m.since == 2
    m.stop(4)
    assert m.state is ServiceState.STOPPED

    s = plan(("a", True), ("b", True))
    s.begin(0)
    s.drain(1)
    assert s.state is ServiceState.DRAINING
    assert s.phases[0].state is PhaseState.NOT_RUN


def test_stop_from_every_live_state():
    for prepare in (
        lambda m: None,
        lambda m: m.begin(0),
        lambda m: (m.begin(0), m.succeeded("a", 1)),
        lambda m: (m.begin(0), m.failed("a", "e", 1)),
    ):
        m = plan(("a", True))
        prepare(m)
        m.stop(9)
        assert m.state is ServiceState.STOPPED
        m.stop(10)  # idempotent


@pytest.mark.parametrize(
    "illegal",
    [
        lambda m: m.succeeded("a", 1),  # not started
        lambda m: (m.begin(0), m.succeeded("b", 1)),  # wrong phase
        lambda m: (m.begin(0), m.begin(1)),  # twice
        lambda m: (m.begin(0), m.succeeded("a", 1), m.succeeded("a", 2)),  # phase already done
        lambda m: (m.begin(0), m.failed("a", "e", 1), m.drain(2)),  # failed cannot drain
        lambda m: (m.stop(0), m.begin(1)),  # stopped is final
        lambda m: (m.begin(0), m.succeeded("a", 1), m.succeeded("b", 2), m.begin(3)),  # ready
    ],
)
def test_illegal_transitions_raise(illegal):
    m = plan(("a", True), ("b", True))
    with pytest.raises(IllegalTransition):
        illegal(m)


def test_duplicate_phase_names_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        plan(("a", True), ("a", False))


def test_hint_for_name_error_names_the_name_and_place():
    hint = hint_for(
        "NameError", "name 'Foo' is not defined", phase="agents", where="pkg/agents/x.py:12"
    )
    assert "Foo" in hint and "pkg/agents/x.py:12" in hint and "import" in hint


def test_hint_for_legacy_name_suggests_replacement():
    hint = hint_for(
        "NameError",
        "name 'DatabaseSessionManager' is not defined",
        phase="agents",
        legacy={"svc.db.DatabaseSessionManager": "svc.db.SessionManager"},
    )
    assert "SessionManager from svc.db" in hint
    assert "migrate --rename svc.db.DatabaseSessionManager=svc.db.SessionManager" in hint


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        (
            "ImportError",
            "cannot import name 'Old' from 'pkg.mod' (x.py)",
            "pkg.mod no longer defines Old",
        ),
        ("ModuleNotFoundError", "No module named 'redis'", "module redis is missing"),
        ("ConnectionRefusedError", "[Errno 111] refused", "could not reach"),
        ("SecretError", "JWT secret missing", "safeship check --only secrets"),
        ("ValueError", "bad", "fix the error raised in phase 'agents'"),
    ],
)
def test_hint_for_other_errors(error_type, message, expected):
    assert expected in hint_for(error_type, message, phase="agents")


def test_hint_for_timeout_names_the_timeout():
    assert "5s" in hint_for("TimeoutError", "x", phase="database", timeout=5)


def test_startup_failed_event_is_the_last_such_line_even_behind_a_log_prefix() -> None:
    from safeship.core.startup import startup_failed_event

    first = '{"event": "startup_failed", "phase": "database", "error": "E1"}'
    last = '2026-12-05T10:00:00Z stderr F {"event": "startup_failed", "phase": "agents"}'
    lines = ["INFO starting", first, '{"event": "startup_progress"}', last, "not json {"]
    assert startup_failed_event(lines) == {"event": "startup_failed", "phase": "agents"}
    assert startup_failed_event(["{broken", '{"event": "other", "x": "startup_failed"}']) is None
    assert startup_failed_event([]) is None
