"""The imports gate: every first-party module is imported in a real interpreter.

``worker.py`` and ``child.py`` run inside the checked project's interpreter and use only the
standard library; they are loaded by path, never imported as part of this package."""

from __future__ import annotations

from .gate import ImportsGate

__all__ = ["ImportsGate"]
