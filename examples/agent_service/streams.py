"""Per-connection delivery decisions, pure: which events of which runs a connection sends.

A connection follows a run when it sees the run's first event live (a run started while it is
open, on any instance), or when the client resumes it. For each followed run it remembers the
last seq sent; live events at or below it are duplicates and skipped, and a live event past
the next expected seq means some were missed (a Redis hiccup, a full queue), so the gap is
first filled from the database. Runs already under way when the connection opened are not
followed implicitly: the client resumes them with its own last seq, which avoids sending the
client events it already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Delivery", "RunCursors", "Step"]


class Step(Enum):
    SKIP = "skip"
    SEND = "send"
    BACKFILL = "backfill"
    """Send the stored events with ``after < seq < event.seq`` first, then the event."""


@dataclass(frozen=True)
class Delivery:
    step: Step
    after: int = 0
    new: bool = False
    """The connection starts following this run now."""


_SKIP = Delivery(Step.SKIP)
_SEND = Delivery(Step.SEND)


class RunCursors:
    """The last seq sent, per followed run, for one connection."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._last

    def __len__(self) -> int:
        return len(self._last)

    def last(self, run_id: str) -> int | None:
        return self._last.get(run_id)

    def runs(self) -> list[str]:
        return list(self._last)

    def on_live(self, run_id: str, seq: int) -> Delivery:
        """What to do with a live event."""
        last = self._last.get(run_id)
        if last is None:
            if seq != 1:
                return _SKIP
            self._last[run_id] = 0
            return Delivery(Step.SEND, new=True)
        if seq <= last:
            return _SKIP
        if seq == last + 1:
            return _SEND
        return Delivery(Step.BACKFILL, after=last)

    def resume(self, run_id: str, last_seq: int) -> bool:
        """The client resumes ``run_id`` from ``last_seq``: what follows is replayed to it.
        Returns whether the connection was not following the run yet."""
        new = run_id not in self._last
        self._last[run_id] = last_seq
        return new

    def sent(self, run_id: str, seq: int, *, terminal: bool) -> bool:
        """Record a sent event. Returns True when the run ended and is no longer followed."""
        if terminal:
            return self._last.pop(run_id, None) is not None
        if seq > self._last.get(run_id, 0):
            self._last[run_id] = seq
        return False

    def forget(self, run_id: str) -> bool:
        return self._last.pop(run_id, None) is not None
