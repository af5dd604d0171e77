"""The static gate: ruff and ty find names that no longer exist, and the triage says whether
each one breaks the app's startup, breaks a call, or cannot be reached."""

from __future__ import annotations

from .gate import DEFAULT_BASELINE, StaticGate

__all__ = ["DEFAULT_BASELINE", "StaticGate"]
