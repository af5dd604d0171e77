"""Canary decisions: where the next new connection goes, and whether the candidate's own
traffic looks worse than the previous revision's.

Pure: counts in, answers out. The front asks :class:`WeightedChoice` for each accepted
connection; the deploy driver reads both revisions' metrics, subtracts what they held when the
step began, and asks :func:`compare` (then :func:`judge`, with the probe's verdict).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from .verdict import Category

__all__ = [
    "BAD_CLOSE_CODES",
    "Comparison",
    "Counts",
    "WeightedChoice",
    "compare",
    "judge",
]

BAD_CLOSE_CODES = frozenset({1011, 4401, 1013})
"""Closes that mean the revision failed its users: an internal error, a token it would not
accept, not ready."""

K = TypeVar("K", bound=Hashable)


class WeightedChoice(Generic[K]):
    """Smooth weighted round-robin (as nginx does it): over any run of ``sum(weights)`` picks
    each key gets exactly its weight, spread evenly, so even the first ten connections of a
    10 % step send one to the candidate. A random choice would send none to it one time in
    three."""

    def __init__(self, weights: Mapping[K, int]) -> None:
        self.weights = {key: weight for key, weight in weights.items() if weight > 0}
        if not self.weights:
            raise ValueError("at least one weight must be positive")
        self._total = sum(self.weights.values())
        self._current = dict.fromkeys(self.weights, 0)

    def pick(self) -> K:
        for key, weight in self.weights.items():
            self._current[key] += weight
        chosen = max(self._current, key=self._current.__getitem__)
        self._current[chosen] -= self._total
        return chosen


@dataclass(frozen=True)
class Counts:
    """One revision's WebSocket counters (cumulative, as its ``/metrics`` exposes them)."""

    handshakes: int = 0
    """Every handshake answered, accepted or denied."""
    denied: int = 0
    accepted: int = 0
    bad_closes: int = 0
    """Closes with a code in :data:`BAD_CLOSE_CODES`."""

    def since(self, earlier: Counts) -> Counts:
        """What happened after ``earlier`` (a restarted process starts again from zero)."""
        if self.handshakes < earlier.handshakes or self.bad_closes < earlier.bad_closes:
            return self
        return Counts(
            self.handshakes - earlier.handshakes,
            self.denied - earlier.denied,
            self.accepted - earlier.accepted,
            self.bad_closes - earlier.bad_closes,
        )

    @property
    def denial_rate(self) -> float | None:
        return self.denied / self.handshakes if self.handshakes else None

    @property
    def bad_close_rate(self) -> float | None:
        return self.bad_closes / self.accepted if self.accepted else None


@dataclass(frozen=True)
class Comparison:
    category: Category
    """``ok``, ``auth`` (denies more than the previous revision) or ``internal_error`` (more
    1011/4401/1013 closes)."""
    detail: str


def _rate(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "0/0"


def compare(
    new: Counts, old: Counts, *, min_connections: int = 5, tolerance: float = 0.05
) -> Comparison:
    """The candidate's denial and bad-close rates against the previous revision's, over the
    same step. Worse means more than ``tolerance`` (an absolute share) above the previous one;
    with fewer than ``min_connections`` handshakes on the candidate there is nothing to
    judge yet (``ok``, saying so). The detail names both rates either way.
    """
    rates = (
        f"denials {_rate(new.denied, new.handshakes)} vs {_rate(old.denied, old.handshakes)}; "
        f"1011/4401/1013 closes {_rate(new.bad_closes, new.accepted)} vs "
        f"{_rate(old.bad_closes, old.accepted)} (new vs previous revision)"
    )
    if new.handshakes < min_connections:
        return Comparison(Category.OK, f"too few connections to compare yet: {rates}")
    old_closes = old.bad_close_rate or 0.0
    if new.accepted and (new.bad_close_rate or 0.0) > old_closes + tolerance:
        return Comparison(Category.INTERNAL_ERROR, f"more failed connections: {rates}")
    if (new.denial_rate or 0.0) > (old.denial_rate or 0.0) + tolerance:
        return Comparison(Category.AUTH, f"more denied handshakes: {rates}")
    return Comparison(Category.OK, rates)


def judge(probe: Category | str, detail: str, comparison: Comparison | None) -> tuple[str, str]:
    """One canary observation from the probe of the candidate's own URL and, where both
    revisions expose metrics, the comparison: a failed probe stands; a passing probe fails
    when the candidate's users fare worse than the previous revision's."""
    probe = Category(probe)
    if comparison is None:
        return str(probe), detail
    if probe is not Category.OK:
        return str(probe), f"{detail}; {comparison.detail}"
    if comparison.category is not Category.OK:
        return str(comparison.category), comparison.detail
    return str(probe), f"{detail}; {comparison.detail}" if detail else comparison.detail
