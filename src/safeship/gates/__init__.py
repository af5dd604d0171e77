"""``safeship check``: the gates, their framework and their reports."""

from __future__ import annotations

from .model import Finding, GateResult, GateStatus, Report, Tier
from .runner import (
    GATES,
    CheckContext,
    Gate,
    build_context,
    entry_modules,
    is_test_path,
    iter_python_files,
    load_gate,
    python_files,
    result_from_findings,
    run_check,
    run_planned,
    target_environ,
)

__all__ = [
    "GATES",
    "CheckContext",
    "Finding",
    "Gate",
    "GateResult",
    "GateStatus",
    "Report",
    "Tier",
    "build_context",
    "entry_modules",
    "is_test_path",
    "iter_python_files",
    "load_gate",
    "python_files",
    "result_from_findings",
    "run_check",
    "run_planned",
    "target_environ",
]
