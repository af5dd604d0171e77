"""The startup plan and state machine.

``pending → starting(phase) → ready | failed(phase, error)``; ``ready → draining → stopped``.
Phases run in declaration order. A critical phase's failure fails startup; an optional phase's
failure is recorded and the service becomes ready, *degraded*, which readiness reports.

Pure: times are passed in (``now``), nothing here awaits or touches a clock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import IllegalTransition

__all__ = [
    "MAX_PHASE_TIMEOUT",
    "PhaseRecord",
    "PhaseSpec",
    "PhaseState",
    "ServiceState",
    "StartupMachine",
    "hint_for",
    "startup_failed_event",
    "timeout_problem",
]


class ServiceState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"
    STOPPED = "stopped"


class PhaseState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"


MAX_PHASE_TIMEOUT = 86_400.0
"""One day. Beyond it no phase is plausible, and past about 9e9 s the watchdog's timer cannot
be armed at all (its thread dies of an overflow, so a hung phase would hang forever)."""


def timeout_problem(timeout: object) -> str | None:
    """What is wrong with a phase timeout, or ``None``: it must be a finite number of seconds,
    > 0 and at most :data:`MAX_PHASE_TIMEOUT` (inf or NaN would let a hung phase hang forever)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return f"the timeout must be a number of seconds, got {type(timeout).__name__}"
    if not math.isfinite(timeout):
        return f"the timeout must be a finite number of seconds, got {timeout!r}"
    if timeout <= 0:
        return f"the timeout must be > 0 seconds, got {timeout!r}"
    if timeout > MAX_PHASE_TIMEOUT:
        return f"the timeout must be at most {MAX_PHASE_TIMEOUT:g} seconds (a day), got {timeout:g}"
    return None


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    timeout: float
    critical: bool = True

    def __post_init__(self) -> None:
        problem = timeout_problem(self.timeout)
        if problem is not None:
            raise ValueError(f"phase {self.name!r}: {problem}")


@dataclass
class PhaseRecord:
    spec: PhaseSpec
    state: PhaseState = PhaseState.PENDING
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    hint: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "name": self.spec.name,
            "state": str(self.state),
            "critical": self.spec.critical,
            "timeout_s": self.spec.timeout,
            "duration_ms": None if duration is None else round(duration * 1000, 1),
            "error": self.error,
            "hint": self.hint,
        }


_TRANSITIONS: dict[ServiceState, frozenset[ServiceState]] = {
    ServiceState.PENDING: frozenset({ServiceState.STARTING, ServiceState.STOPPED}),
    ServiceState.STARTING: frozenset(
        {ServiceState.READY, ServiceState.FAILED, ServiceState.DRAINING, ServiceState.STOPPED}
    ),
    ServiceState.READY: frozenset({ServiceState.DRAINING, ServiceState.STOPPED}),
    ServiceState.FAILED: frozenset({ServiceState.STOPPED}),
    ServiceState.DRAINING: frozenset({ServiceState.STOPPED}),
    ServiceState.STOPPED: frozenset(),
}


@dataclass
class StartupMachine:
    """The state of a service's startup. Every method takes ``now`` and raises
    ``IllegalTransition`` when called out of order."""

    phases: list[PhaseRecord]
    state: ServiceState = ServiceState.PENDING
    since: float | None = None
    failed_phase: str | None = None
    error: str | None = None
    hint: str | None = None
    _index: int = field(default=-1, repr=False)

    @classmethod
    def plan(cls, specs: list[PhaseSpec]) -> StartupMachine:
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate startup phase names: {', '.join(duplicates)}")
        return cls(phases=[PhaseRecord(spec) for spec in specs])

    # -- queries ---------------------------------------------------------------------------

    @property
    def current(self) -> PhaseRecord | None:
        if self.state is ServiceState.STARTING and 0 <= self._index < len(self.phases):
            return self.phases[self._index]
        return None

    @property
    def ready(self) -> bool:
        return self.state is ServiceState.READY

    @property
    def degraded(self) -> list[str]:
        """Optional phases that failed; the service is ready without them."""
        return [
            r.spec.name
            for r in self.phases
            if not r.spec.critical and r.state in (PhaseState.FAILED, PhaseState.TIMED_OUT)
        ]

    def snapshot(self) -> dict[str, Any]:
        current = self.current
        return {
            "status": str(self.state),
            "phase": current.spec.name if current else self.failed_phase,
            "error": self.error,
            "hint": self.hint,
            "since": self.since,
            "degraded": self.degraded,
            "phases": [r.as_dict() for r in self.phases],
        }

    # -- transitions -----------------------------------------------------------------------

    def _move(self, to: ServiceState, now: float) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise IllegalTransition(f"startup cannot go from {self.state} to {to}")
        self.state = to
        self.since = now

    def begin(self, now: float) -> PhaseSpec | None:
        """Start the plan. Returns the first phase to run, or ``None`` (no phases: ready)."""
        self._move(ServiceState.STARTING, now)
        return self._advance(now)

    def _advance(self, now: float) -> PhaseSpec | None:
        self._index += 1
        if self._index >= len(self.phases):
            self._move(ServiceState.READY, now)
            return None
        record = self.phases[self._index]
        record.state = PhaseState.RUNNING
        record.started_at = now
        return record.spec

    def _running(self, name: str) -> PhaseRecord:
        record = self.current
        if record is None or record.spec.name != name or record.state is not PhaseState.RUNNING:
            running = record.spec.name if record else None
            raise IllegalTransition(f"phase {name!r} is not running (running: {running!r})")
        return record

    def succeeded(self, name: str, now: float) -> PhaseSpec | None:
        """Record success of the running phase; returns the next phase, or ``None`` when ready."""
        record = self._running(name)
        record.state = PhaseState.OK
        record.ended_at = now
        return self._advance(now)

    def failed(
        self, name: str, error: str, now: float, *, hint: str | None = None, timed_out: bool = False
    ) -> PhaseSpec | None:
        """Record failure of the running phase.

        Returns the next phase when the failed one is optional; ``None`` when startup failed (or,
        for an optional last phase, when the service is ready).
        """
        record = self._running(name)
        record.state = PhaseState.TIMED_OUT if timed_out else PhaseState.FAILED
        record.ended_at = now
        record.error = error
        record.hint = hint
        if not record.spec.critical:
            return self._advance(now)
        for later in self.phases[self._index + 1 :]:
            later.state = PhaseState.NOT_RUN
        self.failed_phase = name
        self.error = error
        self.hint = hint
        self._move(ServiceState.FAILED, now)
        return None

    def drain(self, now: float) -> None:
        """Readiness drops at once; open connections are closed by the service layer."""
        if self.state is ServiceState.DRAINING:
            return
        if self.state is ServiceState.STARTING and self.current is not None:
            record = self.current
            record.state = PhaseState.NOT_RUN
        self._move(ServiceState.DRAINING, now)

    def stop(self, now: float) -> None:
        if self.state is not ServiceState.STOPPED:
            self._move(ServiceState.STOPPED, now)


_NAME_ERROR = re.compile(r"name '(?P<name>\w+)' is not defined")
_CANNOT_IMPORT = re.compile(r"cannot import name '(?P<name>\w+)' from '(?P<module>[\w.]+)'")
_NO_MODULE = re.compile(r"No module named '(?P<module>[\w.]+)'")


def hint_for(
    error_type: str,
    message: str,
    *,
    phase: str,
    timeout: float | None = None,
    where: str | None = None,
    legacy: dict[str, str] | None = None,
) -> str:
    """The likely fix for a phase failure, from the exception's type name and message.

    Args:
        where: ``file:line`` of the innermost first-party frame, when known.
        legacy: the manifest's ``[legacy]`` table, to suggest a replacement for a removed name.
    """
    at = f" ({where})" if where else ""
    if error_type == "TimeoutError" and timeout is not None:
        return (
            f"phase {phase!r} did not finish within {timeout:g}s: check that the dependency it "
            f"waits for is reachable, or raise the phase timeout"
        )
    if match := _NAME_ERROR.search(message):
        name = match["name"]
        for old, new in (legacy or {}).items():
            if old.rsplit(".", 1)[-1] == name:
                module, _, new_name = new.rpartition(".")
                return (
                    f"{name} is used{at} but not defined: it is a legacy name; "
                    f"import {new_name} from {module} instead (safeship migrate --rename {old}={new})"
                )
        return (
            f"{name} is used{at} but never imported or defined: restore its import; "
            "`safeship check --only static` lists every such name"
        )
    if match := _CANNOT_IMPORT.search(message):
        return (
            f"{match['module']} no longer defines {match['name']}{at}: update the import, "
            "or run `safeship check --only static`"
        )
    if match := _NO_MODULE.search(message):
        return f"module {match['module']} is missing{at}: install it or fix the import path"
    if error_type == "SecretError":
        return "set the variable named above in the environment's secrets (see `safeship check --only secrets`)"
    if error_type in {"ConnectionRefusedError", "ConnectionError", "OSError", "gaierror"}:
        return f"phase {phase!r} could not reach its dependency: is it running and reachable?"
    return f"fix the error raised in phase {phase!r}{at}"


def startup_failed_event(lines: Iterable[str]) -> dict[str, Any] | None:
    """The last ``{"event": "startup_failed", ...}`` line a service wrote, from its log lines
    (read by every target, the boot gate and ``diagnose``); a prefix before the JSON object,
    as log collectors add, is skipped. None when there is none."""
    for line in reversed(list(lines)):
        text = line.strip()
        if '"startup_failed"' not in text or "{" not in text:
            continue
        try:
            event = json.loads(text[text.index("{") :])
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "startup_failed":
            return event
    return None
