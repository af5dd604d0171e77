"""Shared rendering for commands: one console, JSON output, errors with hints."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..errors import SafeshipError

__all__ = ["console", "emit_json", "err_console", "print_error"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout (machine output never goes through rich)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_error(exc: SafeshipError, *, as_json: bool = False) -> None:
    if as_json:
        emit_json({"ok": False, **exc.as_dict()})
        return
    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
    if exc.hint:
        err_console.print(f"[dim]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
