"""Scoring tool output against the seeded defects of a generated tree."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from _gen_tree import Defect

__all__ = ["Located", "Score", "score"]

# (path, line) of one reported finding, in the order the tool printed it.
Located = tuple[str, int]


@dataclass
class Score:
    tool: str
    findings: int
    found: int
    seeded: int
    startup_found: int
    startup_total: int
    must_read: int | None
    """Findings to read, in the tool's order, to have seen every startup-breaking defect;
    None when the tool misses some of them."""

    @property
    def recall(self) -> float:
        return self.found / self.seeded if self.seeded else 1.0

    def row(self) -> str:
        read = f"{self.must_read:>6}" if self.must_read is not None else "  n/a "
        miss = self.startup_total - self.startup_found
        note = f" (misses {miss} of the {self.startup_total})" if miss else ""
        return (
            f"{self.tool:<26} recall {self.found:>3}/{self.seeded:<3} ({self.recall:6.1%})  "
            f"findings {self.findings:>6}  read to see all startup-breaking: {read}{note}"
        )


def score(tool: str, ordered: Sequence[Located], defects: Iterable[Defect]) -> Score:
    """Match findings to defects by file and line (engines differ on columns and names)."""
    defects = list(defects)
    reported = set(ordered)
    found = [d for d in defects if (d.path, d.line) in reported]
    startup = [d for d in defects if d.tier == "breaks-startup"]
    startup_found = [d for d in startup if (d.path, d.line) in reported]
    must_read: int | None = None
    if len(startup_found) == len(startup):
        wanted = {(d.path, d.line) for d in startup}
        seen: set[Located] = set()
        for position, item in enumerate(ordered, start=1):
            if item in wanted:
                seen.add(item)
                if seen == wanted:
                    must_read = position
                    break
    return Score(
        tool=tool,
        findings=len(ordered),
        found=len(found),
        seeded=len(defects),
        startup_found=len(startup_found),
        startup_total=len(startup),
        must_read=must_read,
    )
