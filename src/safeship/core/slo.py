"""What the monitor decides from its probes: incidents with hysteresis, rolling windows and
multiwindow, multi-burn-rate SLO alerts.

Pure: no I/O, no asyncio, no clock (``now`` is a parameter, in seconds on any monotonic or
wall scale, as long as one tracker sees one scale). The monitor feeds every probe outcome to a
:class:`ProbeTracker` and acts on the :class:`Change` list it returns; the detection benchmark
feeds the same class simulated time.

- **Classes.** A failed probe is ``availability`` (refused, timeouts, 5xx, 1011, 1013, a wrong
  reply) or ``auth`` (401/403/4401/4403), from ``core.verdict``'s categories. ``latency`` is
  the p95 of the last handshakes over a threshold. Each class opens and resolves its own
  incident, so "auth is broken" is never reported as "down".
- **Hysteresis.** An incident opens when ``open_after`` of the last ``window`` probes failed
  in its class, and resolves after ``close_after`` successes in a row: one lost probe never
  pages, and a flapping service does not resolve between two failures.
- **SLO.** The success ratio against an objective (default 99.9 %). A pair of windows fires
  when the burn rate (error ratio / error budget) is over the pair's factor in BOTH windows:
  the long window says the budget really burns, the short one that it still does (so the
  alert resolves soon after the fault ends). Defaults are the SRE workbook's fast pair
  (1 h / 5 min at 14.4) and slow pair (6 h / 30 min at 6); shorter windows suit staging.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "BurnAlert",
    "BurnPair",
    "Change",
    "CheckClass",
    "Health",
    "Hysteresis",
    "ProbeTracker",
    "RollingWindow",
    "SloPolicy",
    "TrackState",
    "Transition",
    "burn_alerts",
    "burn_rates",
    "environment_health",
    "failure_class",
    "fold",
    "format_window",
    "is_counted",
    "p95",
    "track",
]


class CheckClass(StrEnum):
    AVAILABILITY = "availability"
    AUTH = "auth"
    LATENCY = "latency"


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


# core.verdict categories (by value, so callers may pass strings from a record).
_AVAILABILITY = frozenset(
    {"unreachable", "timeout", "internal_error", "not_ready", "protocol", "check_failed"}
)
_AUTH = frozenset({"auth"})
_NOT_COUNTED = frozenset({"inconclusive"})


def failure_class(category: str) -> CheckClass | None:
    """The class a probe's verdict category fails, or ``None`` for a success.

    ``inconclusive`` (the probe could not run: no secret to mint from, a bad URL) is not the
    service's failure and returns ``None`` too; see :func:`is_counted`.

    Raises:
        ValueError: an unknown category.
    """
    value = str(category)
    if value == "ok" or value in _NOT_COUNTED:
        return None
    if value in _AUTH:
        return CheckClass.AUTH
    if value in _AVAILABILITY:
        return CheckClass.AVAILABILITY
    raise ValueError(f"unknown probe category {value!r}")


def is_counted(category: str) -> bool:
    """Whether the outcome says something about the service (everything but inconclusive)."""
    return str(category) not in _NOT_COUNTED


# -- hysteresis ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hysteresis:
    """``open_after`` failures in the last ``window`` probes open; ``close_after`` successes
    in a row resolve."""

    window: int = 5
    open_after: int = 3
    close_after: int = 2

    def __post_init__(self) -> None:
        if self.window < 1 or self.close_after < 1:
            raise ValueError("window and close_after must be at least 1")
        if not 1 <= self.open_after <= self.window:
            raise ValueError(
                f"open_after must be between 1 and window ({self.window}), got {self.open_after}"
            )


class Change(StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class TrackState:
    """One class of one environment: the last ``window`` results (``True`` = failed), the
    current run of successes, and since when an incident is open."""

    recent: tuple[bool, ...] = ()
    successes: int = 0
    open_since: float | None = None

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    @property
    def failures(self) -> int:
        return sum(self.recent)


def track(
    state: TrackState, failed: bool, now: float, policy: Hysteresis
) -> tuple[TrackState, Change | None]:
    """Feed one result; returns the new state and the change it caused, if any."""
    recent = (*state.recent, failed)[-policy.window :]
    successes = 0 if failed else state.successes + 1
    new = replace(state, recent=recent, successes=successes)
    if not state.is_open and sum(recent) >= policy.open_after:
        return replace(new, open_since=now), Change.OPENED
    if state.is_open and successes >= policy.close_after:
        # The failures that opened it are history: a new incident needs fresh ones.
        return replace(new, open_since=None, recent=recent[-successes:]), Change.RESOLVED
    return new, None


def p95(values: Iterable[float]) -> float | None:
    """The 95th percentile by nearest rank (``None`` for no values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


# -- rolling windows and burn rates ----------------------------------------------------------


class RollingWindow:
    """Probe results over time, for success ratios over any window up to ``horizon`` seconds.

    Keeps cumulative counts, so a ratio over a window is two binary searches, whatever the
    window's length. Results must come in time order (older ones are accepted but count as
    of the latest time).
    """

    def __init__(self, horizon: float) -> None:
        if horizon <= 0:
            raise ValueError("horizon must be positive")
        self.horizon = horizon
        # Arrays, not lists: a 6 h window at 1 s holds 21,600 results per endpoint.
        self._times = array("d")
        self._total = array("q")  # cumulative counts up to and including each entry
        self._bad = array("q")
        self._start = 0  # entries before it have left the horizon

    def add(self, now: float, ok: bool) -> None:
        if self._times and now < self._times[-1]:
            now = self._times[-1]
        total = self._total[-1] + 1 if self._total else 1
        bad = (self._bad[-1] if self._bad else 0) + (0 if ok else 1)
        self._times.append(now)
        self._total.append(total)
        self._bad.append(bad)
        self.prune(now)

    def prune(self, now: float) -> None:
        self._start = bisect.bisect_right(self._times, now - self.horizon, lo=self._start)
        if self._start > 1024 and self._start * 2 > len(self._times):
            del self._times[: self._start], self._total[: self._start], self._bad[: self._start]
            self._start = 0

    def __len__(self) -> int:
        return len(self._times) - self._start

    def counts(self, now: float, seconds: float) -> tuple[int, int]:
        """``(bad, total)`` for results in ``(now - seconds, now]``."""
        end = bisect.bisect_right(self._times, now, lo=self._start)
        begin = bisect.bisect_right(self._times, now - seconds, lo=self._start, hi=end)
        if end <= begin:
            return 0, 0
        base_total = self._total[begin - 1] if begin > 0 else 0
        base_bad = self._bad[begin - 1] if begin > 0 else 0
        return self._bad[end - 1] - base_bad, self._total[end - 1] - base_total

    def span(self, now: float) -> float:
        """How far back the kept results reach from ``now``."""
        return now - self._times[self._start] if len(self) else 0.0

    def oldest(self) -> float | None:
        return self._times[self._start] if len(self) else None


@dataclass(frozen=True)
class BurnPair:
    """Fires when the burn rate is at least ``factor`` over both windows."""

    name: str
    long: float
    short: float
    factor: float

    def __post_init__(self) -> None:
        if not 0 < self.short <= self.long:
            raise ValueError(
                f"{self.name}: windows must be positive with short <= long, got "
                f"{self.long:g} s / {self.short:g} s"
            )
        if self.factor <= 0:
            raise ValueError(f"{self.name}: factor must be positive")


@dataclass(frozen=True)
class SloPolicy:
    """The objective, the window pairs, and how much history a window needs to count.

    ``coverage``: a window is judged only once the results reach back over that share of
    it, so a single failure among the first few probes of a fresh monitor is not a burn rate
    of hundreds.
    """

    objective: float = 0.999
    pairs: tuple[BurnPair, ...] = (
        BurnPair("fast", 3600.0, 300.0, 14.4),
        BurnPair("slow", 21600.0, 1800.0, 6.0),
    )
    coverage: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.objective < 1:
            raise ValueError(f"objective must be between 0 and 1, got {self.objective}")
        if not 0 <= self.coverage <= 1:
            raise ValueError(f"coverage must be between 0 and 1, got {self.coverage}")

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    @property
    def horizon(self) -> float:
        return max((p.long for p in self.pairs), default=1.0)

    @property
    def windows(self) -> tuple[float, ...]:
        """Every distinct window, longest first."""
        return tuple(sorted({w for p in self.pairs for w in (p.long, p.short)}, reverse=True))


@dataclass(frozen=True)
class BurnAlert:
    pair: str
    factor: float
    long_rate: float
    short_rate: float
    long: float
    short: float

    def describe(self) -> str:
        return (
            f"SLO {self.pair} burn: {self.long_rate:.1f}x over {format_window(self.long)} and "
            f"{self.short_rate:.1f}x over {format_window(self.short)} (alert at {self.factor:g}x)"
        )


def format_window(seconds: float) -> str:
    """``300`` -> ``5m``, ``3600`` -> ``1h``, ``90`` -> ``90s``: the metric's window label."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _rate(window: RollingWindow, now: float, seconds: float, policy: SloPolicy) -> float | None:
    bad, total = window.counts(now, seconds)
    if total == 0 or window.span(now) < seconds * policy.coverage:
        return None
    return (bad / total) / policy.budget


def burn_rates(window: RollingWindow, now: float, policy: SloPolicy) -> dict[float, float | None]:
    """Burn rate per window length (``None`` while the window is not covered yet)."""
    return {w: _rate(window, now, w, policy) for w in policy.windows}


def burn_alerts(window: RollingWindow, now: float, policy: SloPolicy) -> list[BurnAlert]:
    """The pairs that fire now."""
    fired = []
    for pair in policy.pairs:
        long_rate = _rate(window, now, pair.long, policy)
        short_rate = _rate(window, now, pair.short, policy)
        if long_rate is None or short_rate is None:
            continue
        if long_rate >= pair.factor and short_rate >= pair.factor:
            fired.append(
                BurnAlert(pair.name, pair.factor, long_rate, short_rate, pair.long, pair.short)
            )
    return fired


# -- one environment -------------------------------------------------------------------------


def environment_health(
    open_classes: Iterable[CheckClass], recent_failures: int, burning: bool
) -> Health:
    """``down`` while an availability or auth incident is open; ``degraded`` with a latency
    incident, an SLO burn alert, or failures in the recent window below the threshold."""
    opened = set(open_classes)
    if CheckClass.AVAILABILITY in opened or CheckClass.AUTH in opened:
        return Health.DOWN
    if opened or burning or recent_failures > 0:
        return Health.DEGRADED
    return Health.OK


@dataclass(frozen=True)
class Transition:
    """An incident that opened or resolved, with what the probe that caused it said."""

    check: CheckClass
    change: Change
    at: float
    detail: str = ""
    opened_at: float | None = None
    """For a resolution: when the incident opened."""


@dataclass
class ProbeTracker:
    """Everything the monitor decides for one environment (or revision): one hysteresis
    track per class, the latency samples, and the SLO window.

    Not thread-safe; one per environment, fed in time order.
    """

    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    slo: SloPolicy = field(default_factory=SloPolicy)
    latency_threshold_ms: float = 1000.0
    latency_samples: int = 20
    tracks: dict[CheckClass, TrackState] = field(default_factory=dict)
    window: RollingWindow | None = None
    handshakes: deque[float] = field(default_factory=deque)
    last_detail: dict[CheckClass, str] = field(default_factory=dict)
    probes: int = 0

    def __post_init__(self) -> None:
        if self.window is None:
            self.window = RollingWindow(self.slo.horizon)
        self.handshakes = deque(self.handshakes, maxlen=self.latency_samples)
        for check in CheckClass:
            self.tracks.setdefault(check, TrackState())

    def observe(
        self,
        now: float,
        category: str,
        *,
        handshake_ms: float | None = None,
        detail: str = "",
    ) -> list[Transition]:
        """Feed one probe: its verdict category, its handshake time when it got that far.

        Returns:
            The incidents that opened or resolved because of it.
        """
        if not is_counted(category):
            return []
        self.probes += 1
        failed = failure_class(category)
        assert self.window is not None
        self.window.add(now, failed is None)
        changes = []
        if failed is not None:
            self.last_detail[failed] = detail
        # An auth denial shows the service answering (an availability success); a refused
        # connection never reached the token check, so it says nothing about auth.
        changes += self._feed(CheckClass.AVAILABILITY, failed is CheckClass.AVAILABILITY, now)
        if failed is not CheckClass.AVAILABILITY:
            changes += self._feed(CheckClass.AUTH, failed is CheckClass.AUTH, now)
        if handshake_ms is not None:
            self.handshakes.append(handshake_ms)
            slow = self.latency_p95 is not None and self.latency_p95 > self.latency_threshold_ms
            if slow:
                self.last_detail[CheckClass.LATENCY] = (
                    f"handshake p95 {self.latency_p95:.0f} ms over the last "
                    f"{len(self.handshakes)} probes (threshold {self.latency_threshold_ms:g} ms)"
                )
            changes += self._feed(CheckClass.LATENCY, slow, now)
        return changes

    def _feed(self, check: CheckClass, failed: bool, now: float) -> list[Transition]:
        before = self.tracks[check]
        after, change = track(before, failed, now, self.hysteresis)
        self.tracks[check] = after
        if change is None:
            return []
        detail = self.last_detail.get(check, "")
        return [Transition(check, change, now, detail, before.open_since)]

    @property
    def latency_p95(self) -> float | None:
        return p95(self.handshakes)

    def open_incidents(self) -> dict[CheckClass, float]:
        """Open incidents, by class, with the time each opened."""
        return {c: t.open_since for c, t in self.tracks.items() if t.open_since is not None}

    def burn_rates(self, now: float) -> dict[float, float | None]:
        assert self.window is not None
        return burn_rates(self.window, now, self.slo)

    def burn_alerts(self, now: float) -> list[BurnAlert]:
        assert self.window is not None
        return burn_alerts(self.window, now, self.slo)

    def health(self, now: float) -> Health:
        recent = sum(self.tracks[c].failures for c in (CheckClass.AVAILABILITY, CheckClass.AUTH))
        return environment_health(self.open_incidents(), recent, bool(self.burn_alerts(now)))

    def summary(self, now: float) -> dict[str, Any]:
        """The tracker's state as plain data (the analysis endpoint's ``checks``)."""
        rates = self.burn_rates(now)
        return {
            "health": str(self.health(now)),
            "probes": self.probes,
            "incidents": {
                str(c): {"open_since": t, "detail": self.last_detail.get(c, "")}
                for c, t in self.open_incidents().items()
            },
            "latency_p95_ms": None if self.latency_p95 is None else round(self.latency_p95, 1),
            "burn_rates": {
                format_window(w): None if r is None else round(r, 3) for w, r in rates.items()
            },
            "burn_alerts": [a.describe() for a in self.burn_alerts(now)],
        }


def fold(
    tracker: ProbeTracker, samples: Sequence[tuple[float, str, float | None]]
) -> list[Transition]:
    """Feed ``(now, category, handshake_ms)`` samples in order (history replay, simulation)."""
    changes: list[Transition] = []
    for now, category, handshake_ms in samples:
        changes += tracker.observe(now, category, handshake_ms=handshake_ms)
    return changes
