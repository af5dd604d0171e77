"""What every gate produces: findings, a result per gate, and the report of a whole check.

Failures are data. A gate that cannot run at all (an engine missing, a crash) returns a
``GateResult`` with ``status="error"``; it does not raise, so the other gates still run.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from ..core.triage import Tier

__all__ = ["Finding", "GateResult", "GateStatus", "Report", "Tier", "number_duplicates"]


class GateStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # ran, and found something that blocks
    ERROR = "error"  # could not run; inconclusive, never "passed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    gate: str
    rule: str
    """Engine rule or gate-specific code: ``F821``, ``ty:unresolved-import``, ``import-error``,
    ``secret-missing``, ``secret-mismatch``, ``boot-failed``, ``legacy-reference``..."""
    message: str
    tier: Tier
    path: str | None = None
    """Relative to the checked project's root, POSIX separators."""
    line: int | None = None
    column: int | None = None
    source_line: str | None = None
    hint: str | None = None
    chain: tuple[str, ...] = ()
    """For reachable findings: the import chain from the entry point to this module."""
    symbol: str | None = None
    """The name at fault (undefined name, missing member, legacy name)."""
    scope: str | None = None
    """Enclosing definition, e.g. ``AgentRunner.run``; used by the baseline fingerprint."""
    blocking: bool = False
    in_baseline: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    occurrence: int = 0
    """Among findings that would share a fingerprint (the same rule and symbol on the same
    text in the same scope: twice on one line, or one line repeated), the n-th in source
    order (``number_duplicates``)."""

    @property
    def fingerprint(self) -> str:
        """Stable across line shifts and unrelated edits: built from the path, rule, symbol,
        enclosing scope, the stripped source line and the occurrence, never the line
        number; unique per finding once ``number_duplicates`` has run."""
        parts = [
            self.gate,
            self.rule,
            self.path or "",
            self.symbol or "",
            self.scope or "",
            (self.source_line or self.message).strip(),
        ]
        if self.occurrence:
            parts.append(str(self.occurrence))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tier"] = str(self.tier)
        data["chain"] = list(self.chain)
        data["fingerprint"] = self.fingerprint
        return data


def number_duplicates(findings: list[Finding]) -> list[Finding]:
    """Give each finding that shares a fingerprint with an earlier one (by path, line,
    column) its occurrence number, so that every fingerprint in ``findings`` is unique."""
    seen: dict[str, int] = {}
    out = []
    for finding in sorted(
        findings, key=lambda f: (f.path or "", f.line or 0, f.column or 0, f.rule)
    ):
        base = replace(finding, occurrence=0).fingerprint
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(replace(finding, occurrence=count))
    return out


@dataclass
class GateResult:
    gate: str
    status: GateStatus
    findings: list[Finding] = field(default_factory=list)
    duration: float = 0.0
    error: str | None = None
    """Why the gate could not run (status ``error``)."""
    skipped_reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    """Gate-specific counts, e.g. findings per tier, modules imported, references per name."""

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking and not f.in_baseline]

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "status": str(self.status),
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "skipped_reason": self.skipped_reason,
            "summary": self.summary,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class Report:
    root: str
    env: str
    critical: bool
    results: list[GateResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status in (GateStatus.PASSED, GateStatus.SKIPPED) for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 findings that block or a gate that could not run."""
        return 0 if self.ok else 1

    def result(self, gate: str) -> GateResult | None:
        return next((r for r in self.results if r.gate == gate), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "safeship.check/1",
            "root": self.root,
            "env": self.env,
            "critical": self.critical,
            "ok": self.ok,
            "gates": [r.as_dict() for r in self.results],
        }
