"""Probe steps: send one JSON message, then check the reply that belongs to it.

Pure: building the message, matching replies and checking expectations take plain values,
so the socket loop in ``ws.py`` only feeds messages in and acts on the decision.

Matching rules (documented in docs/probe.md):

- a reply belongs to the step when its ``request_id`` equals the one sent (one is added when
  the message has none), or when its ``run_id`` was announced by such a reply (streams whose
  later events carry only the run id);
- everything else is skipped: heartbeats, the ``connection_established`` welcome, replies to
  other requests, non-JSON frames;
- when the step expects a ``type``, replies of another type are progress and are skipped,
  except error replies (``type`` ``error`` or ``*_error``), which fail the step at once;
- the first reply that is not skipped is checked against every expectation;
- a reply that carries neither a ``request_id`` nor a known ``run_id`` (a service that does
  not echo request ids) passes when it meets every expectation, and fails the step at once
  when it has the expected ``type`` but not the rest; otherwise the closest such message
  (most expectations met) is reported if the step times out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import UsageError

__all__ = [
    "MISSING",
    "Decision",
    "Step",
    "StepMatcher",
    "check_expectations",
    "lookup",
    "parse_expect",
    "parse_send",
]

_VALUE_EXCERPT = 80


class _Missing(Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "nothing"


MISSING = _Missing.MISSING


@dataclass(frozen=True)
class Step:
    """One request/reply exchange. ``expect`` maps dotted paths to expected values."""

    send: Mapping[str, Any]
    expect: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 5.0

    def prepared(self, request_id: str) -> tuple[dict[str, Any], str]:
        """The message to send and the request id to match (the message's own, if it has one)."""
        message = dict(self.send)
        rid = message.get("request_id")
        if rid is None or rid == "":
            message["request_id"] = rid = request_id
        return message, str(rid)


def parse_send(text: str) -> dict[str, Any]:
    """Parse a ``--send`` value: a JSON object.

    Raises:
        UsageError: not JSON, or not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--send expects a JSON object, got invalid JSON ({exc.msg} at position {exc.pos})",
            hint='quote it for the shell, e.g. --send \'{"type": "ping"}\'',
        ) from None
    if not isinstance(value, dict):
        raise UsageError(
            f"--send expects a JSON object, got a JSON {type(value).__name__}",
            hint='e.g. --send \'{"type": "ping"}\'',
        )
    return value


def parse_expect(text: str) -> tuple[str, Any]:
    """Parse a ``--expect PATH=VALUE``; VALUE is JSON when it parses, else a string.

    Raises:
        UsageError: no ``=``, or an empty path.
    """
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise UsageError(
            f"--expect expects PATH=VALUE, got {text[:60]!r}",
            hint="e.g. --expect type=pong or --expect payload.count=3 (dotted paths)",
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return path, value


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (``payload.items.0.name``), or ``MISSING``."""
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def _same(expected: Any, actual: Any) -> bool:
    # JSON true must not equal 1, as it would in Python.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    return bool(expected == actual)


def _show(value: Any) -> str:
    if value is MISSING:
        return "nothing (path not found)"
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > _VALUE_EXCERPT:
        text = text[: _VALUE_EXCERPT - 3] + "..."
    return text


def check_expectations(message: Any, expect: Mapping[str, Any]) -> list[str]:
    """Every expectation the message does not meet, as ``path: expected X, got Y``."""
    problems = []
    for path, expected in expect.items():
        actual = lookup(message, path)
        if actual is MISSING or not _same(expected, actual):
            problems.append(f"{path}: expected {_show(expected)}, got {_show(actual)}")
    return problems


def _is_error_type(value: Any) -> bool:
    return isinstance(value, str) and (value == "error" or value.endswith("_error"))


class Decision(Enum):
    SKIP = "skip"
    PASS = "pass"
    FAIL = "fail"


class StepMatcher:
    """Feed it every message received during one step; it says skip, pass or fail."""

    def __init__(self, step: Step, request_id: str) -> None:
        self.step = step
        self.request_id = request_id
        self.run_ids: set[str] = set()
        self.failure: str | None = None
        self.skipped = 0
        self.closest: tuple[int, Any] | None = None
        """(expectations met, message) of the best untagged message so far."""

    def feed(self, message: Any) -> Decision:
        """Judge one received message (already JSON-decoded; anything else is skipped)."""
        if not self._belongs(message):
            if self.step.expect and self._untagged(message):
                return self._judge_untagged(message)
            self.skipped += 1
            return Decision.SKIP
        run_id = message.get("run_id")
        if isinstance(run_id, str | int) and not isinstance(run_id, bool):
            self.run_ids.add(str(run_id))
        expected_type = self.step.expect.get("type", MISSING)
        actual_type = message.get("type", MISSING)
        if _is_error_type(actual_type) and not _same(expected_type, actual_type):
            self.failure = f"the service replied with {_show(actual_type)}: {_show(message)}"
            return Decision.FAIL
        if expected_type is not MISSING and not _same(expected_type, actual_type):
            self.skipped += 1
            return Decision.SKIP
        problems = check_expectations(message, self.step.expect)
        if problems:
            self.failure = "; ".join(problems)
            return Decision.FAIL
        return Decision.PASS

    def closest_report(self) -> str | None:
        """Why the closest untagged message did not match, for a step that timed out."""
        if self.closest is None:
            return None
        _, message = self.closest
        problems = check_expectations(message, self.step.expect)
        return (
            f"no reply matched; the closest message received was {_show(message)} "
            f"({'; '.join(problems)})"
        )

    def _untagged(self, message: Any) -> bool:
        return isinstance(message, dict) and "request_id" not in message and "run_id" not in message

    def _judge_untagged(self, message: dict[str, Any]) -> Decision:
        problems = check_expectations(message, self.step.expect)
        if not problems:
            return Decision.PASS
        expected_type = self.step.expect.get("type", MISSING)
        if expected_type is not MISSING and _same(expected_type, message.get("type", MISSING)):
            self.failure = f"the reply of type {_show(expected_type)} does not match: " + "; ".join(
                problems
            )
            return Decision.FAIL
        met = len(self.step.expect) - len(problems)
        if self.closest is None or met >= self.closest[0]:
            self.closest = (met, message)
        self.skipped += 1
        return Decision.SKIP

    def _belongs(self, message: Any) -> bool:
        if not isinstance(message, dict):
            return False
        rid = message.get("request_id")
        if rid is not None and str(rid) == self.request_id:
            return True
        run_id = message.get("run_id")
        return run_id is not None and str(run_id) in self.run_ids
