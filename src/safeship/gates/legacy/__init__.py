"""The legacy gate: banned names from ``[legacy]``, and the renames of ``safeship migrate``
(libcst)."""

from __future__ import annotations

from .gate import (
    LegacyGate,
    Reference,
    RenameOutcome,
    find_references,
    import_root_for,
    parse_rename,
    rename_references,
)

__all__ = [
    "LegacyGate",
    "Reference",
    "RenameOutcome",
    "find_references",
    "import_root_for",
    "parse_rename",
    "rename_references",
]
