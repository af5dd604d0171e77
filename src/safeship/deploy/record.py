"""The record of one deploy (or rollback): events as they happen, and the JSON document they
add up to.

The driver reports everything through a :class:`Recorder`: the steps with their timings, each
probe verdict, each gate result, notes. The recorder forwards every :class:`Event` to a
callback (the rich progress view) and keeps the record that ``--json`` prints and that the
state store and the audit log keep. Nothing here holds a secret: probes and gates report
verdicts and fingerprints, never tokens or values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXIT_CODES", "SCHEMA", "STEPS", "Event", "EventSink", "Recorder", "exit_code_for"]

SCHEMA = "safeship.deploy/1"

STEPS = (
    "recover",
    "preflight",
    "gates",
    "start",
    "verify",
    "canary",
    "switch",
    "watch",
    "rollback",
    "stop",
    "drain",
)
"""Every step a record may hold, in the order they can happen."""

EXIT_CODES: Mapping[str, int] = {
    "promoted": 0,
    "restored": 0,
    "rolled_back": 1,
    "failed": 1,
    "paused": 1,
    "blocked": 1,
    "interrupted": 1,
    "error": 2,
    "cancelled": 130,
}
"""Exit code per outcome: 0 the new revision serves, 1 it does not (blocked, failed, rolled
back, paused), 2 a usage, config or target error, 130 interrupted with Ctrl-C."""


def exit_code_for(outcome: str) -> int:
    return EXIT_CODES.get(outcome, 1)


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``at`` is seconds since the command started."""

    kind: str
    """``step`` (a step began or ended), ``probe``, ``gate``, ``note`` or ``outcome``."""
    step: str
    status: str
    """``running``, ``ok``, ``failed``, ``warning``, ``skipped``, ``paused``, ``interrupted``
    or ``info``."""
    at: float
    detail: str = ""
    duration: float | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Recorder:
    """Collects the record of one command and reports each event as it happens.

    Args:
        on_event: called with every event (the progress view); must not raise.
        persist: called with the record after every step (write-ahead to the state store).
        clock: monotonic seconds; ``wall``: seconds since the epoch.
    """

    def __init__(
        self,
        *,
        kind: str,
        on_event: EventSink | None = None,
        persist: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **fields: Any,
    ) -> None:
        self._on_event = on_event
        self.persist = persist
        """Called with the record after every step; settable once the record has a home."""
        self._clock = clock
        self._t0 = clock()
        self._open: dict[str, float] = {}
        self.record: dict[str, Any] = {
            "schema": SCHEMA,
            "id": None,
            "kind": kind,
            "started": wall(),
            "outcome": None,
            "reason": "",
            "exit_code": None,
            "steps": [],
            "gates": [],
            "skipped_gates": [],
            "verification": [],
            "canary": [],
            "watch": [],
            "notes": [],
            **fields,
        }

    # -- time -----------------------------------------------------------------------------

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the command started, from a monotonic time (default: now)."""
        return (self._clock() if now is None else now) - self._t0

    def mark(self, name: str, now: float | None = None) -> None:
        """Record a moment (``<name>_s``, seconds since the start), e.g. ``switched_at``."""
        self.record[f"{name}_s"] = _r(self.elapsed(now))

    # -- events ---------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def begin(self, step: str, detail: str = "") -> None:
        now = self.elapsed()
        self._open[step] = now
        self._emit(Event("step", step, "running", now, detail))

    def end(self, step: str, status: str, detail: str = "", **data: Any) -> None:
        now = self.elapsed()
        started = self._open.pop(step, now)
        entry = {
            "name": step,
            "status": status,
            "started_s": _r(started),
            "duration_s": _r(now - started),
            "detail": detail,
            **data,
        }
        self.record["steps"].append(entry)
        self._emit(Event("step", step, status, now, detail, now - started, data))
        self.save()

    def is_open(self, step: str) -> bool:
        return step in self._open

    def open_steps(self) -> list[str]:
        return list(self._open)

    def probe(self, step: str, outcome: Mapping[str, Any]) -> None:
        """A probe verdict during ``verify``, ``canary`` or ``watch`` (``outcome`` as
        ``ProbeOutcome.as_dict``)."""
        now = self.elapsed()
        entry = {"at_s": _r(now), **outcome}
        key = {"verify": "verification", "canary": "canary"}.get(step, "watch")
        self.record[key].append(entry)
        ok = outcome.get("category") == "ok"
        self._emit(
            Event(
                "probe",
                step,
                "ok" if ok else "failed",
                now,
                str(outcome.get("detail", "")),
                data=entry,
            )
        )

    def gate(self, result: Mapping[str, Any]) -> None:
        self.record["gates"].append(dict(result))
        status = str(result.get("status"))
        self._emit(
            Event("gate", "gates", status, self.elapsed(), str(result.get("gate")), data=result)
        )

    def note(self, step: str, detail: str, status: str = "info") -> None:
        self.record["notes"].append({"at_s": _r(self.elapsed()), "step": step, "detail": detail})
        self._emit(Event("note", step, status, self.elapsed(), detail))

    def set(self, **values: Any) -> None:
        self.record.update(values)

    def finish(self, outcome: str, reason: str, *, exit_code: int | None = None) -> dict[str, Any]:
        """Close every open step and set the outcome; returns the record."""
        for step in self.open_steps():
            self.end(step, "interrupted" if outcome == "cancelled" else "failed", reason)
        code = exit_code_for(outcome) if exit_code is None else exit_code
        self.record.update(
            outcome=outcome,
            reason=reason,
            exit_code=code,
            duration_s=_r(self.elapsed()),
        )
        self._emit(Event("outcome", outcome, outcome, self.elapsed(), reason, data=self.record))
        self.save()
        return self.record

    def save(self) -> None:
        if self.persist is not None:
            self.persist(self.record)
