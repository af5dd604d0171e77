from __future__ import annotations

import pytest

from safeship.errors import UsageError
from safeship.probe.steps import (
    MISSING,
    Decision,
    Step,
    StepMatcher,
    check_expectations,
    lookup,
    parse_expect,
    parse_send,
)


def test_parse_send_accepts_an_object():
    assert parse_send('{"type": "ping", "n": 1}') == {"type": "ping", "n": 1}


@pytest.mark.parametrize(
    ("text", "words"), [("{not json", "invalid JSON"), ("[1, 2]", "list"), ('"x"', "str")]
)
def test_parse_send_rejects(text, words):
    with pytest.raises(UsageError) as info:
        parse_send(text)
    assert words in info.value.message
    assert "--send" in info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type=pong", ("type", "pong")),
        ("payload.count=3", ("payload.count", 3)),
        ("ok=true", ("ok", True)),
        ("value=null", ("value", None)),
        ('id="42"', ("id", "42")),
        ("text=a=b", ("text", "a=b")),
        ("items=[1, 2]", ("items", [1, 2])),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_expect(text, expected):
    assert parse_expect(text) == expected


@pytest.mark.parametrize("text", ["type", "=pong", "  =x"])
def test_parse_expect_rejects(text):
    with pytest.raises(UsageError) as info:
        parse_expect(text)
    assert "PATH=VALUE" in info.value.message


def test_lookup_dotted_paths_and_indices():
    data = {"payload": {"items": [{"name": "a"}, {"name": "b"}], "n": 0}}
    assert lookup(data, "payload.items.1.name") == "b"
    assert lookup(data, "payload.items.-1.name") == "b"
    assert lookup(data, "payload.n") == 0
    assert lookup(data, "payload.items.5") is MISSING
    assert lookup(data, "payload.missing") is MISSING
    assert lookup(data, "payload.n.deeper") is MISSING


def test_check_expectations_reports_path_expected_and_actual():
    problems = check_expectations({"type": "pong", "n": 1}, {"type": "pong", "n": 2, "x": "y"})
    assert problems == ["n: expected 2, got 1", 'x: expected "y", got nothing (path not found)']


def test_json_true_is_not_one():
    assert check_expectations({"v": 1}, {"v": True}) == ["v: expected true, got 1"]
    assert check_expectations({"v": True}, {"v": True}) == []
    assert check_expectations({"v": 1.0}, {"v": 1}) == []


def test_long_actual_values_are_truncated():
    [problem] = check_expectations({"v": "x" * 500}, {"v": "short"})
    assert problem.endswith('..."') or problem.endswith("...")
    assert len(problem) < 150


def test_prepared_adds_a_request_id_only_when_absent():
    message, rid = Step({"type": "ping"}).prepared("probe-1")
    assert message == {"type": "ping", "request_id": "probe-1"} and rid == "probe-1"
    message, rid = Step({"type": "ping", "request_id": "mine"}).prepared("probe-1")
    assert message["request_id"] == "mine" and rid == "mine"


def test_matcher_skips_unrelated_messages():
    matcher = StepMatcher(Step({"type": "ping"}, {"type": "pong"}), "r1")
    assert matcher.feed({"type": "connection_established"}) is Decision.SKIP
    assert matcher.feed({"type": "heartbeat"}) is Decision.SKIP
    assert matcher.feed({"type": "pong", "request_id": "other"}) is Decision.SKIP
    assert matcher.feed(None) is Decision.SKIP
    assert matcher.feed([1, 2]) is Decision.SKIP
    assert matcher.feed({"type": "pong", "request_id": "r1"}) is Decision.PASS
    assert matcher.skipped == 5


def test_matcher_follows_a_run_announced_for_the_request():
    step = Step({"type": "start_agent"}, {"type": "agent_completed", "payload.result": "hi"})
    matcher = StepMatcher(step, "r1")
    assert (
        matcher.feed({"type": "agent_started", "request_id": "r1", "run_id": "run-9"})
        is Decision.SKIP
    )
    assert matcher.feed({"type": "agent_thinking", "run_id": "run-9", "seq": 2}) is Decision.SKIP
    assert matcher.feed({"type": "agent_completed", "run_id": "run-8"}) is Decision.SKIP
    done = {"type": "agent_completed", "run_id": "run-9", "payload": {"result": "hi"}}
    assert matcher.feed(done) is Decision.PASS


def test_matcher_fails_at_once_on_an_error_reply():
    matcher = StepMatcher(Step({"type": "start_agent"}, {"type": "agent_completed"}), "r1")
    assert (
        matcher.feed({"type": "agent_error", "request_id": "r1", "payload": {"e": "boom"}})
        is Decision.FAIL
    )
    assert matcher.failure is not None and "agent_error" in matcher.failure


def test_matcher_accepts_an_expected_error():
    matcher = StepMatcher(Step({"type": "bogus"}, {"type": "error", "code": "unknown_type"}), "r1")
    assert (
        matcher.feed({"type": "error", "request_id": "r1", "code": "unknown_type"}) is Decision.PASS
    )


def test_matcher_checks_the_first_reply_when_no_type_is_expected():
    matcher = StepMatcher(Step({"type": "ping"}, {"payload.n": 2}), "r1")
    assert matcher.feed({"type": "pong", "request_id": "r1", "payload": {"n": 1}}) is Decision.FAIL
    assert matcher.failure == "payload.n: expected 2, got 1"


def test_matcher_without_expectations_passes_on_any_reply_but_an_error():
    assert StepMatcher(Step({"type": "ping"}), "r1").feed({"request_id": "r1"}) is Decision.PASS
    assert (
        StepMatcher(Step({"type": "ping"}), "r1").feed({"request_id": "r1", "type": "error"})
        is Decision.FAIL
    )


def test_matcher_mismatch_with_right_type_fails():
    matcher = StepMatcher(Step({"type": "ping"}, {"type": "pong", "n": 1}), "7")
    assert matcher.feed({"type": "pong", "request_id": 7, "n": 2}) is Decision.FAIL
    assert matcher.failure == "n: expected 1, got 2"


def test_an_untagged_reply_that_meets_the_expectations_passes() -> None:
    matcher = StepMatcher(Step(send={"type": "ping"}, expect={"type": "pong"}), "rid-1")
    assert matcher.feed({"type": "connection_established"}) is Decision.SKIP
    assert matcher.feed({"type": "pong"}) is Decision.PASS


def test_an_untagged_reply_of_the_expected_type_that_differs_fails_at_once() -> None:
    step = Step(send={"type": "ping"}, expect={"type": "pong", "payload.n": 3})
    matcher = StepMatcher(step, "rid-1")
    assert matcher.feed({"type": "pong", "payload": {"n": 2}}) is Decision.FAIL
    assert matcher.failure is not None
    assert "payload.n: expected 3, got 2" in matcher.failure


def test_the_closest_untagged_message_is_reported_when_nothing_matches() -> None:
    step = Step(send={"type": "ping"}, expect={"type": "pong", "ok": True})
    matcher = StepMatcher(step, "rid-1")
    assert matcher.feed({"type": "hello"}) is Decision.SKIP
    assert matcher.feed({"kind": "pong", "ok": True}) is Decision.SKIP
    assert matcher.feed({"type": "pong", "request_id": "other"}) is Decision.SKIP
    report = matcher.closest_report()
    assert report is not None
    assert '{"kind": "pong", "ok": true}' in report
    assert 'type: expected "pong", got nothing' in report
