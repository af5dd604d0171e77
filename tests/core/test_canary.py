"""Pure tests of the canary decisions: weighted choice, rate comparison, the judgement."""

from __future__ import annotations

from collections import Counter

import pytest

from safeship.core.canary import Counts, WeightedChoice, compare, judge
from safeship.core.verdict import Category


@pytest.mark.parametrize("percent", [1, 10, 33, 50, 90, 99])
def test_each_run_of_a_hundred_picks_honours_the_weights_exactly(percent: int) -> None:
    choice = WeightedChoice({"old": 100 - percent, "new": percent})
    for _ in range(3):
        picks = Counter(choice.pick() for _ in range(100))
        assert picks == {"old": 100 - percent, "new": percent}


def test_ten_percent_sends_one_of_the_first_ten_connections_to_the_candidate() -> None:
    choice = WeightedChoice({"old": 90, "new": 10})
    assert Counter(choice.pick() for _ in range(10))["new"] == 1


def test_picks_are_spread_not_bunched() -> None:
    choice = WeightedChoice({"old": 50, "new": 50})
    assert [choice.pick() for _ in range(6)] in (["old", "new"] * 3, ["new", "old"] * 3)


def test_zero_weights_never_win_and_all_zero_is_refused() -> None:
    choice = WeightedChoice({"old": 0, "new": 5})
    assert {choice.pick() for _ in range(10)} == {"new"}
    with pytest.raises(ValueError, match="positive"):
        WeightedChoice({"old": 0})


def test_counts_since_a_baseline_and_after_a_restart() -> None:
    later, base = Counts(20, 4, 16, 3), Counts(5, 1, 4, 1)
    assert later.since(base) == Counts(15, 3, 12, 2)
    assert Counts(3, 0, 3, 0).since(base) == Counts(3, 0, 3, 0)  # the process restarted


def test_a_candidate_closing_with_1011_is_worse_and_both_rates_are_named() -> None:
    got = compare(Counts(10, 0, 10, 6), Counts(90, 0, 90, 1))
    assert got.category is Category.INTERNAL_ERROR
    assert "6/10 (60%) vs 1/90 (1%)" in got.detail
    assert "denials 0/10 (0%) vs 0/90 (0%)" in got.detail


def test_a_candidate_denying_more_is_an_auth_failure() -> None:
    got = compare(Counts(10, 8, 2, 0), Counts(90, 1, 89, 0))
    assert got.category is Category.AUTH
    assert "8/10 (80%) vs 1/90 (1%)" in got.detail


def test_rates_within_the_tolerance_are_ok() -> None:
    got = compare(Counts(20, 1, 19, 1), Counts(80, 2, 78, 2), tolerance=0.05)
    assert got.category is Category.OK


def test_too_few_connections_on_the_candidate_judge_nothing() -> None:
    got = compare(Counts(2, 2, 0, 0), Counts(90, 0, 90, 0), min_connections=5)
    assert got.category is Category.OK and "too few connections" in got.detail


def test_no_traffic_at_all_compares_zero_over_zero() -> None:
    got = compare(Counts(5, 0, 5, 0), Counts())
    assert got.category is Category.OK and "vs 0/0" in got.detail


def test_judge_a_failed_probe_stands_and_a_worse_comparison_fails_a_good_probe() -> None:
    worse = compare(Counts(10, 0, 10, 6), Counts(90, 0, 90, 0))
    same = compare(Counts(10, 0, 10, 0), Counts(90, 0, 90, 0))
    assert judge("ok", "", None) == ("ok", "")
    assert judge("internal_error", "closed 1011", same)[0] == "internal_error"
    category, detail = judge("ok", "", worse)
    assert category == "internal_error" and "6/10" in detail
    assert judge("ok", "pong", same) == ("ok", f"pong; {same.detail}")
