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

    # _Redacting implements the part of a text file that Console uses (write, flush, isatty).
    file: Any = _Redacting(stderr)
    return Console(file=file, highlight=False, soft_wrap=soft_wrap)


class _Redacting:
    """The console's file: every write goes through ``redact`` (a secret value the command
    read, a token, a URL password) before it reaches stdout or stderr, whichever is current
    at the time of the write (so redirection and capture keep working)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    @property
    def _target(self) -> Any:
        return sys.stderr if self._stderr else sys.stdout

    def write(self, text: str) -> int:
        from ..secrets import redact

        return self._target.write(redact(text))

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._target, "isatty", lambda: False)())

    def fileno(self) -> int:
        return int(self._target.fileno())

    @property
    def encoding(self) -> str:
        return str(getattr(self._target, "encoding", None) or "utf-8")


def __getattr__(name: str) -> Any:
    # ``console`` and ``err_console`` are built on first use (PEP 562).
    if name in ("console", "err_console"):
        if name not in _consoles:
            _consoles[name] = make_console(stderr=name == "err_console")
        return _consoles[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout (machine output never goes through rich), every
    string in it redacted before it is serialized."""
    text = json.dumps(_redacted(data), indent=2, sort_keys=False, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _redacted(value: Any) -> Any:
    from ..secrets import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def print_error(exc: SafeshipError, *, as_json: bool = False) -> None:
    if as_json:
        emit_json({"ok": False, **exc.as_dict()})
        return
    from rich.markup import escape

    err = __getattr__("err_console")
    err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
    if exc.hint:
        err.print(f"[dim]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
