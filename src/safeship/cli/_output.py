"""Shared rendering for commands: one console, JSON output, errors with hints.

The consoles soft-wrap: a message stays on one line however narrow the terminal, and in a CI
log, where rich would otherwise break lines at the 80 columns it assumes without a terminal,
a search for an error finds it whole. Rich is imported when a command first prints, not when
the CLI starts.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ..errors import SafeshipError

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console

__all__ = ["console", "emit_json", "err_console", "make_console", "print_error"]

_consoles: dict[str, Console] = {}


def make_console(*, stderr: bool = False, soft_wrap: bool = True) -> Console:
    """A console for the CLI's output: no highlighting, and no hard wrapping of messages.

    ``soft_wrap=False`` is for a view that lays text out inside a frame (a panel), which a
    soft-wrapping console would crop at the frame's edge; tables fold their cells either way.
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap)


def __getattr__(name: str) -> Any:
    # ``console`` and ``err_console`` are built on first use (PEP 562).
    if name in ("console", "err_console"):
        if name not in _consoles:
            _consoles[name] = make_console(stderr=name == "err_console")
        return _consoles[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout (machine output never goes through rich)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_error(exc: SafeshipError, *, as_json: bool = False) -> None:
    if as_json:
        emit_json({"ok": False, **exc.as_dict()})
        return
    from rich.markup import escape

    err = __getattr__("err_console")
    err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
    if exc.hint:
        err.print(f"[dim]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
