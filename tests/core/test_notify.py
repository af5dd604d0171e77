"""Deduplication and rate limits of notifications, with plain values."""

from __future__ import annotations

import pytest

from safeship.core.notify import NotifyGate


def test_the_same_event_is_sent_once_within_the_window():
    gate = NotifyGate(dedupe_seconds=60)
    assert gate.decide("opened|staging|auth", 0).send
    assert gate.decide("opened|staging|auth", 30).reason == "duplicate"
    assert gate.decide("opened|staging|availability", 30).send  # another key
    assert gate.decide("opened|staging|auth", 61).send


def test_the_rate_limit_counts_what_it_dropped():
    gate = NotifyGate(dedupe_seconds=0, max_messages=2, per_seconds=10)
    assert gate.decide("a", 0).send and gate.decide("b", 1).send
    assert gate.decide("c", 2).reason == "rate limited"
    assert gate.decide("d", 3).reason == "rate limited"
    later = gate.decide("e", 10.5)
    assert later.send and later.suppressed_before == 2


def test_a_resolution_follows_an_announced_incident_even_over_the_limit():
    gate = NotifyGate(max_messages=1, per_seconds=100)
    assert gate.decide("open|x", 0).send
    assert gate.decide("open|y", 1).reason == "rate limited"
    assert gate.decide("resolved|x", 2, resolves="open|x").send
    assert gate.decide("resolved|y", 3, resolves="open|y").reason == "never announced"


def test_a_new_incident_after_a_resolution_is_news():
    gate = NotifyGate(dedupe_seconds=300)
    assert gate.decide("open|x", 0).send
    assert gate.decide("resolved|x", 10, resolves="open|x").send
    assert not gate.is_announced("open|x")
    assert gate.decide("open|x", 20).send  # within dedupe_seconds of the first, still sent
    assert gate.decide("resolved|x", 30, resolves="open|x").send


def test_a_resolution_is_sent_once():
    gate = NotifyGate()
    gate.decide("open|x", 0)
    assert gate.decide("resolved|x", 1, resolves="open|x").send
    assert not gate.decide("resolved|x", 2, resolves="open|x").send


@pytest.mark.parametrize(
    "kwargs", [{"max_messages": 0}, {"per_seconds": 0}, {"dedupe_seconds": -1}]
)
def test_impossible_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        NotifyGate(**kwargs)
