"""What the rollout state machine reads and says: observations in, actions out.

Plain frozen values, re-exported from :mod:`safeship.core.rollout`. Each ``ProbeNew``/``ProbeLive``
action yields exactly one ``ProbeDone``; times (``now``) are monotonic seconds passed in by the
driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rollout import RolloutPhase

from .verdict import Category as ProbeCategory

__all__ = [
    "Action",
    "Begin",
    "Cancel",
    "DrainOld",
    "Finish",
    "GateOutcome",
    "GatesDone",
    "Observation",
    "ProbeCanary",
    "ProbeCategory",
    "ProbeDone",
    "ProbeLive",
    "ProbeNew",
    "Resume",
    "RevisionFailed",
    "RevisionStarted",
    "RollBack",
    "RollbackDone",
    "RollbackFailed",
    "RunGates",
    "SetTraffic",
    "StartRevision",
    "StopNew",
    "Switch",
    "SwitchDone",
    "SwitchFailed",
    "Tick",
    "TrafficFailed",
    "TrafficSet",
]


class GateOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # skipped by --force, with a reason the driver audits
    ERROR = "error"  # a gate could not run: inconclusive


# -- observations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Begin:
    now: float


@dataclass(frozen=True)
class GatesDone:
    now: float
    outcome: GateOutcome | str
    failed: tuple[str, ...] = ()
    """Names of the gates that failed (or could not run)."""


@dataclass(frozen=True)
class RevisionStarted:
    now: float
    revision: str


@dataclass(frozen=True)
class RevisionFailed:
    now: float
    revision: str | None = None
    exit_code: int | None = None
    phase: str | None = None
    error: str = ""


@dataclass(frozen=True)
class ProbeDone:
    now: float
    category: ProbeCategory | str
    detail: str = ""


@dataclass(frozen=True)
class SwitchDone:
    now: float


@dataclass(frozen=True)
class SwitchFailed:
    now: float
    error: str


@dataclass(frozen=True)
class TrafficSet:
    """A canary step's split is confirmed: ``percent`` % of new connections go to the
    candidate."""

    now: float
    percent: int


@dataclass(frozen=True)
class TrafficFailed:
    now: float
    error: str


@dataclass(frozen=True)
class RollbackDone:
    now: float


@dataclass(frozen=True)
class RollbackFailed:
    now: float
    error: str


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class Cancel:
    """Ctrl-C, or ``abort`` of a paused rollout: stop, leaving the previous revision serving."""

    now: float
    reason: str = "cancelled"


@dataclass(frozen=True)
class Resume:
    """Continue a paused rollout where it paused, with fresh counters and deadlines."""

    now: float


Observation = (
    Begin
    | GatesDone
    | RevisionStarted
    | RevisionFailed
    | ProbeDone
    | SwitchDone
    | SwitchFailed
    | TrafficSet
    | TrafficFailed
    | RollbackDone
    | RollbackFailed
    | Tick
    | Cancel
    | Resume
)

# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunGates:
    pass


@dataclass(frozen=True)
class StartRevision:
    pass


@dataclass(frozen=True)
class ProbeNew:
    revision: str
    after: float
    """Seconds to wait before probing (the verify interval)."""


@dataclass(frozen=True)
class Switch:
    revision: str


@dataclass(frozen=True)
class SetTraffic:
    """A canary step: ``percent`` % (1..99) of new connections to ``revision``, the rest to
    ``previous``."""

    revision: str
    previous: str
    percent: int


@dataclass(frozen=True)
class ProbeCanary:
    """Judge the candidate on its own traffic during a canary step: probes to its own URL, and
    its close and denial rates against the previous revision's where both expose metrics."""

    revision: str
    after: float


@dataclass(frozen=True)
class ProbeLive:
    after: float


@dataclass(frozen=True)
class RollBack:
    to: str | None
    """The revision that served before; ``None`` on a first deploy: stop serving the new one."""


@dataclass(frozen=True)
class StopNew:
    revision: str
    drain: bool
    """True when it had traffic: drain its connections before stopping it."""


@dataclass(frozen=True)
class DrainOld:
    revision: str


@dataclass(frozen=True)
class Finish:
    outcome: RolloutPhase
    reason: str


Action = (
    RunGates
    | StartRevision
    | ProbeNew
    | SetTraffic
    | ProbeCanary
    | Switch
    | ProbeLive
    | RollBack
    | StopNew
    | DrainOld
    | Finish
)
