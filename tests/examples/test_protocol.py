from __future__ import annotations

import json

import pytest
from agent_service.protocol import (
    ErrorCode,
    Event,
    Ping,
    ProtocolError,
    Resume,
    StartAgent,
    UserMessage,
    check_resume,
    check_start,
    connection_established,
    error_message,
    iso,
    parse_client_message,
    pong,
    resumed,
)

LIMIT = 1024


def parse(data):
    text = data if isinstance(data, str | bytes) or data is None else json.dumps(data)
    return parse_client_message(text, max_bytes=LIMIT)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"type": "start_agent", "agent": "echo", "input": {"a": 1}, "request_id": "r1"},
            StartAgent("echo", "r1", {"a": 1}),
        ),
        (
            {"type": "start_agent", "agent": "echo", "request_id": "r1"},
            StartAgent("echo", "r1", None),
        ),
        ({"type": "ping"}, Ping()),
        ({"type": "ping", "request_id": "p"}, Ping("p")),
        ({"type": "resume", "run_id": "run_1", "last_seq": 0}, Resume("run_1", 0)),
        (
            {"type": "resume", "run_id": "run_1", "last_seq": 7, "request_id": "x"},
            Resume("run_1", 7, "x"),
        ),
        ({"type": "user_message", "run_id": "run_1", "text": "hi"}, UserMessage("run_1", "hi")),
    ],
)
def test_valid_messages(data, expected):
    assert parse(data) == expected


@pytest.mark.parametrize(
    ("data", "code", "mentions"),
    [
        ("{not json", ErrorCode.INVALID_JSON, "not valid JSON"),
        ("", ErrorCode.INVALID_JSON, "not valid JSON"),
        (b"\x00\x01", ErrorCode.INVALID_MESSAGE, "binary"),
        (None, ErrorCode.INVALID_MESSAGE, "binary"),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE, "JSON object"),
        ('"ping"', ErrorCode.INVALID_MESSAGE, "JSON object"),
        ({}, ErrorCode.MISSING_FIELD, "'type'"),
        ({"type": "launch"}, ErrorCode.UNKNOWN_TYPE, "'launch'"),
        ({"type": 5}, ErrorCode.UNKNOWN_TYPE, "start_agent"),
        ({"type": "start_agent", "agent": "echo"}, ErrorCode.MISSING_FIELD, "'request_id'"),
        ({"type": "start_agent", "request_id": "r"}, ErrorCode.MISSING_FIELD, "'agent'"),
        (
            {"type": "start_agent", "agent": 3, "request_id": "r"},
            ErrorCode.INVALID_FIELD,
            "'agent'",
        ),
        (
            {"type": "start_agent", "agent": "", "request_id": "r"},
            ErrorCode.INVALID_FIELD,
            "'agent'",
        ),
        ({"type": "ping", "request_id": 12}, ErrorCode.INVALID_FIELD, "'request_id'"),
        ({"type": "ping", "request_id": "x" * 200}, ErrorCode.INVALID_FIELD, "'request_id'"),
        ({"type": "resume", "last_seq": 1}, ErrorCode.MISSING_FIELD, "'run_id'"),
        ({"type": "resume", "run_id": "r"}, ErrorCode.MISSING_FIELD, "'last_seq'"),
        ({"type": "resume", "run_id": "r", "last_seq": -1}, ErrorCode.INVALID_FIELD, "'last_seq'"),
        ({"type": "resume", "run_id": "r", "last_seq": "3"}, ErrorCode.INVALID_FIELD, "'last_seq'"),
        (
            {"type": "resume", "run_id": "r", "last_seq": True},
            ErrorCode.INVALID_FIELD,
            "'last_seq'",
        ),
        ({"type": "resume", "run_id": "r", "last_seq": 1.5}, ErrorCode.INVALID_FIELD, "'last_seq'"),
        ({"type": "user_message", "text": "x"}, ErrorCode.MISSING_FIELD, "'run_id'"),
        ({"type": "user_message", "run_id": "r"}, ErrorCode.MISSING_FIELD, "'text'"),
        ({"type": "user_message", "run_id": "r", "text": 1}, ErrorCode.INVALID_FIELD, "'text'"),
        ("x" * (LIMIT + 1), ErrorCode.MESSAGE_TOO_LARGE, f"{LIMIT}-byte"),
        # Under the limit in characters, over it in bytes.
        (
            json.dumps({"type": "ping", "pad": "é" * 600}, ensure_ascii=False),
            ErrorCode.MESSAGE_TOO_LARGE,
            "limit",
        ),
    ],
)
def test_refusals_carry_a_code_and_say_what_is_wrong(data, code, mentions):
    result = parse(data)
    assert isinstance(result, ProtocolError), result
    assert result.code is code
    assert mentions in result.detail


def test_a_refusal_keeps_the_request_id_when_there_is_one():
    result = parse({"type": "resume", "run_id": "r", "request_id": "abc"})
    assert isinstance(result, ProtocolError) and result.request_id == "abc"
    assert error_message(result) == {
        "type": "error",
        "code": "missing_field",
        "detail": "resume needs field 'last_seq'",
        "request_id": "abc",
    }
    assert "request_id" not in error_message(ProtocolError(ErrorCode.INVALID_JSON, "x"))


def test_check_start():
    msg = StartAgent("echo", "r1")
    assert check_start(msg, agents={"echo"}, active_runs=0, max_runs=2) is None
    unknown = check_start(
        StartAgent("nope", "r2"), agents={"echo", "slow"}, active_runs=0, max_runs=2
    )
    assert unknown is not None and unknown.code is ErrorCode.UNKNOWN_AGENT
    assert unknown.request_id == "r2" and "echo, slow" in unknown.detail
    busy = check_start(msg, agents={"echo"}, active_runs=2, max_runs=2)
    assert busy is not None and busy.code is ErrorCode.TOO_MANY_RUNS


@pytest.mark.parametrize(
    ("owner", "last_seq", "latest", "code"),
    [
        ("alice", 3, 5, None),
        ("alice", 5, 5, None),
        ("alice", 0, 0, None),
        (None, 0, 0, ErrorCode.UNKNOWN_RUN),
        ("bob", 0, 5, ErrorCode.UNKNOWN_RUN),  # another user's run is not revealed
        ("alice", 6, 5, ErrorCode.SEQ_FROM_FUTURE),
    ],
)
def test_check_resume(owner, last_seq, latest, code):
    error = check_resume(
        Resume("run_1", last_seq, "q"), owner=owner, user="alice", latest_seq=latest
    )
    if code is None:
        assert error is None
    else:
        assert error is not None and error.code is code and error.request_id == "q"


def test_event_wire_format():
    event = Event("run_1", 3, "tool_completed", 0.25, {"result": 1}, user="alice")
    assert event.wire() == {
        "type": "tool_completed",
        "run_id": "run_1",
        "seq": 3,
        "timestamp": "1970-01-01T00:00:00.250Z",
        "payload": {"result": 1},
    }
    assert json.loads(event.text) == event.wire()
    assert "alice" not in event.text  # routing data never goes on the wire
    started = Event("run_1", 1, "agent_started", 0.0, {}, request_id="r1")
    assert started.wire()["request_id"] == "r1"
    assert not started.terminal and Event("r", 2, "agent_error", 0.0).terminal


def test_server_messages():
    assert iso(1.5) == "1970-01-01T00:00:01.500Z"
    hello = connection_established(
        connection_id="c1", user="u", instance="i", agents=["echo"], max_message_bytes=10, now=0.0
    )
    assert hello["type"] == "connection_established" and hello["protocol"] == 1
    assert pong("p", now=0.0) == {
        "type": "pong",
        "server_time": "1970-01-01T00:00:00.000Z",
        "request_id": "p",
    }
    assert "request_id" not in pong(None, now=0.0)
    reply = resumed(Resume("run_1", 2, "r"), replayed=3, latest_seq=5, status="completed")
    assert reply == {
        "type": "resumed",
        "run_id": "run_1",
        "from_seq": 2,
        "replayed": 3,
        "latest_seq": 5,
        "status": "completed",
        "request_id": "r",
    }
