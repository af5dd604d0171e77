"""The monitor's decisions, with plain values and explicit times."""

from __future__ import annotations

import random

import pytest

from safeship.core.slo import (
    BurnPair,
    Change,
    CheckClass,
    Health,
    Hysteresis,
    ProbeTracker,
    RollingWindow,
    SloPolicy,
    TrackState,
    burn_alerts,
    burn_rates,
    environment_health,
    failure_class,
    fold,
    format_window,
    is_counted,
    p95,
    track,
)
from safeship.core.verdict import Category

A, AUTH, LAT = CheckClass.AVAILABILITY, CheckClass.AUTH, CheckClass.LATENCY

# -- classes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("ok", None),
        ("inconclusive", None),
        ("auth", AUTH),
        ("unreachable", A),
        ("timeout", A),
        ("internal_error", A),
        ("not_ready", A),
        ("protocol", A),
        ("check_failed", A),
    ],
)
def test_each_category_fails_one_class(category, expected):
    assert failure_class(category) is expected


def test_every_verdict_category_has_a_class():
    for category in Category:
        failure_class(category)  # raises for one that was forgotten


def test_an_unknown_category_is_an_error():
    with pytest.raises(ValueError, match="unknown probe category 'weird'"):
        failure_class("weird")


def test_inconclusive_probes_do_not_count():
    assert not is_counted("inconclusive") and is_counted("auth") and is_counted("ok")


# -- hysteresis -----------------------------------------------------------------------------


def run(results, policy=Hysteresis(), state=TrackState()):
    changes = []
    for now, failed in enumerate(results):
        state, change = track(state, failed, float(now), policy)
        if change:
            changes.append((now, change))
    return state, changes


def test_one_failure_never_opens():
    state, changes = run([False, True, False, False, False, True, False])
    assert changes == [] and not state.is_open


def test_k_failures_in_the_last_n_open_at_the_kth():
    state, changes = run([True, False, True, False, True])
    assert changes == [(4, Change.OPENED)] and state.open_since == 4.0


def test_failures_spread_wider_than_the_window_do_not_open():
    _, changes = run([True, False, False, False, True, False, False, False, True])
    assert changes == []


def test_m_successes_in_a_row_resolve():
    _, changes = run([True] * 3 + [False, True, False, False])
    assert changes == [(2, Change.OPENED), (6, Change.RESOLVED)]


def test_an_open_incident_stays_open_through_flapping():
    _, changes = run([True] * 3 + [False, True] * 5)
    assert changes == [(2, Change.OPENED)]


def test_after_a_resolution_a_new_incident_needs_fresh_failures():
    policy = Hysteresis(window=5, open_after=3, close_after=2)
    state, changes = run([True, True, True, False, False, True], policy)
    assert changes == [(2, Change.OPENED), (4, Change.RESOLVED)]
    assert not state.is_open


def test_open_after_one_is_a_page_per_failure():
    _, changes = run([True, False, True], Hysteresis(window=1, open_after=1, close_after=1))
    assert [c for _, c in changes] == [Change.OPENED, Change.RESOLVED, Change.OPENED]


@pytest.mark.parametrize(
    ("window", "open_after", "close_after"), [(0, 1, 1), (3, 4, 1), (3, 0, 1), (3, 2, 0)]
)
def test_impossible_thresholds_are_refused(window, open_after, close_after):
    with pytest.raises(ValueError):
        Hysteresis(window, open_after, close_after)


def test_p95_is_the_nearest_rank():
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95(range(1, 21)) == 19
    assert p95(range(1, 101)) == 95


# -- rolling windows ------------------------------------------------------------------------


def test_counts_cover_exactly_the_window():
    w = RollingWindow(100)
    for t in range(10):
        w.add(float(t), ok=t % 2 == 0)
    assert w.counts(9.0, 4) == (2, 4)  # t = 6, 7, 8, 9
    assert w.counts(9.0, 100) == (5, 10)
    assert w.counts(20.0, 5) == (0, 0)


def test_old_results_leave_the_horizon():
    w = RollingWindow(10)
    for t in range(3000):
        w.add(float(t), ok=True)
    assert len(w) == 10 and w.counts(2999.0, 1000) == (0, 10)
    assert w.oldest() == 2990.0


def test_results_out_of_order_count_as_the_latest_time():
    w = RollingWindow(10)
    w.add(5.0, ok=True)
    w.add(4.0, ok=False)
    assert w.counts(5.0, 0.5) == (1, 2)


def test_span_and_a_bad_horizon():
    w = RollingWindow(60)
    assert w.span(10.0) == 0.0
    w.add(10.0, ok=True)
    assert w.span(40.0) == 30.0
    with pytest.raises(ValueError):
        RollingWindow(0)


# -- burn rates -----------------------------------------------------------------------------

STAGING = SloPolicy(
    objective=0.99,
    pairs=(BurnPair("fast", 60, 10, 14.4), BurnPair("slow", 360, 30, 6)),
    coverage=0.5,
)


def fill(policy, results, start=0.0, step=1.0, window=None):
    window = window or RollingWindow(policy.horizon)
    for i, ok in enumerate(results):
        window.add(start + i * step, ok)
    return window, start + (len(results) - 1) * step


def test_burn_rate_is_error_ratio_over_budget():
    w, now = fill(STAGING, [True] * 90 + [False] * 10)
    rates = burn_rates(w, now, STAGING)
    assert rates[10] == pytest.approx(100.0)  # 100 % errors over a 1 % budget
    assert rates[60] == pytest.approx(10 / 60 / 0.01)


def test_both_windows_of_a_pair_must_burn():
    # A burst long ago burns the long window, but the short window is clean: no alert.
    w, now = fill(STAGING, [False] * 20 + [True] * 40)
    assert burn_rates(w, now, STAGING)[60] >= 14.4
    assert burn_alerts(w, now, STAGING) == []
    # The same burst now fires the fast pair.
    w, now = fill(STAGING, [True] * 40 + [False] * 20)
    fired = burn_alerts(w, now, STAGING)
    assert [a.pair for a in fired] == ["fast"]
    assert "fast burn" in fired[0].describe() and "1m" in fired[0].describe()


def test_a_slow_burn_fires_only_the_slow_pair():
    # 10 % errors, spread evenly: 10x the budget, over 6 but under 14.4.
    w, now = fill(STAGING, [i % 10 != 0 for i in range(400)])
    assert [a.pair for a in burn_alerts(w, now, STAGING)] == ["slow"]


def test_a_window_not_yet_covered_is_not_judged():
    # A fresh monitor whose third probe failed: 33 % errors, but 3 s of history.
    w, now = fill(STAGING, [True, True, False])
    assert burn_rates(w, now, STAGING) == {360: None, 60: None, 30: None, 10: None}
    assert burn_alerts(w, now, STAGING) == []


def test_default_policy_is_the_workbook():
    policy = SloPolicy()
    assert policy.budget == pytest.approx(0.001)
    assert [(p.long, p.short, p.factor) for p in policy.pairs] == [
        (3600, 300, 14.4),
        (21600, 1800, 6),
    ]
    assert policy.windows == (21600, 3600, 1800, 300)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SloPolicy(objective=1.0),
        lambda: SloPolicy(objective=0),
        lambda: SloPolicy(coverage=2),
        lambda: BurnPair("x", 10, 20, 1),
        lambda: BurnPair("x", 10, 0, 1),
        lambda: BurnPair("x", 10, 5, 0),
    ],
)
def test_impossible_slo_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    ("seconds", "label"), [(300, "5m"), (3600, "1h"), (21600, "6h"), (90, "90s"), (86400, "1d")]
)
def test_window_labels(seconds, label):
    assert format_window(seconds) == label


# -- environment health ---------------------------------------------------------------------


def test_environment_health():
    assert environment_health([], 0, False) is Health.OK
    assert environment_health([], 1, False) is Health.DEGRADED
    assert environment_health([], 0, True) is Health.DEGRADED
    assert environment_health([LAT], 0, False) is Health.DEGRADED
    assert environment_health([AUTH], 0, False) is Health.DOWN
    assert environment_health([A, LAT], 0, False) is Health.DOWN


# -- the tracker ----------------------------------------------------------------------------


def test_auth_failures_open_an_auth_incident_not_an_availability_one():
    tracker = ProbeTracker()
    changes = []
    for t in range(3):
        changes += tracker.observe(float(t), "auth", handshake_ms=3.0, detail="HTTP 401")
    assert [(c.check, c.change, c.detail) for c in changes] == [(AUTH, Change.OPENED, "HTTP 401")]
    assert set(tracker.open_incidents()) == {AUTH}
    assert tracker.health(2.0) is Health.DOWN


def test_a_resolution_says_when_the_incident_opened():
    tracker = ProbeTracker()
    for t in range(3):
        tracker.observe(float(t), "unreachable")
    changes = [c for t in (3, 4) for c in tracker.observe(float(t), "ok", handshake_ms=1.0)]
    assert [(c.check, c.change, c.opened_at) for c in changes] == [(A, Change.RESOLVED, 2.0)]
    assert tracker.health(4.0) is Health.OK  # the failures that opened it are history


def test_failures_below_the_threshold_degrade():
    tracker = ProbeTracker()
    tracker.observe(0.0, "ok", handshake_ms=1.0)
    tracker.observe(1.0, "internal_error")
    assert tracker.open_incidents() == {} and tracker.health(1.0) is Health.DEGRADED
    for t in range(2, 7):
        tracker.observe(float(t), "ok", handshake_ms=1.0)
    assert tracker.health(6.0) is Health.OK  # out of the window of 5


def test_a_switch_from_auth_to_availability_failures():
    tracker = ProbeTracker()
    for t in range(3):
        tracker.observe(float(t), "auth")
    changes = [c for t in range(3, 6) for c in tracker.observe(float(t), "timeout")]
    assert [(c.check, c.change) for c in changes] == [(A, Change.OPENED)]
    assert set(tracker.open_incidents()) == {A, AUTH}  # auth has not seen a success yet


def test_slow_handshakes_open_a_latency_incident():
    tracker = ProbeTracker(latency_threshold_ms=100, latency_samples=5)
    changes = [c for t in range(5) for c in tracker.observe(float(t), "ok", handshake_ms=20)]
    changes += [c for t in range(5, 10) for c in tracker.observe(float(t), "ok", handshake_ms=500)]
    opened = [c for c in changes if c.change is Change.OPENED]
    assert [c.check for c in opened] == [LAT]
    assert "p95 500 ms" in opened[0].detail
    assert tracker.health(9.0) is Health.DEGRADED
    later = [c for t in range(10, 16) for c in tracker.observe(float(t), "ok", handshake_ms=20)]
    assert [(c.check, c.change) for c in later] == [(LAT, Change.RESOLVED)]


def test_inconclusive_probes_change_nothing():
    tracker = ProbeTracker()
    assert tracker.observe(0.0, "inconclusive") == []
    assert tracker.probes == 0 and tracker.health(0.0) is Health.OK


def test_summary_is_plain_data():
    tracker = ProbeTracker(slo=STAGING)
    fold(tracker, [(float(t), "ok", 2.0) for t in range(40)])
    fold(tracker, [(40.0 + t, "unreachable", None) for t in range(20)])
    summary = tracker.summary(59.0)
    assert summary["health"] == "down" and summary["probes"] == 60
    assert set(summary["incidents"]) == {"availability"}
    assert summary["burn_rates"]["10s"] == 100.0
    assert summary["burn_alerts"] and "fast burn" in summary["burn_alerts"][0]


def test_random_single_failures_never_alert():
    """0.1 % of probes fail at random, one at a time, over 20,000 probes: no incident, no
    burn alert, with the default thresholds and windows."""
    rng = random.Random(15)
    tracker = ProbeTracker()
    changes, burning = [], 0
    for t in range(20_000):
        category = "unreachable" if rng.random() < 0.001 else "ok"
        changes += tracker.observe(float(t), category, handshake_ms=5.0)
        burning += bool(tracker.burn_alerts(float(t))) if t % 50 == 0 else 0
    assert changes == [] and burning == 0
