"""The ``safeship`` command line. Each command lives in its own module with a
``register(app)`` function; this module only assembles them and maps errors to exit codes.

Command modules import what their command runs (rich, libcst, the gates, deploy, demo) inside
the command function: ``safeship --help`` then loads typer and little else.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import SafeshipError
from ._help import HelpInWords, TyperCommand

try:  # typer >= 0.26 vendors its own click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click import ClickException as _ClickException  # type: ignore[assignment]

__all__ = ["app", "main"]

app = typer.Typer(
    name="safeship",
    help="Safe-by-default deploys for real-time (WebSocket) ASGI services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"safeship {version('safeship')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Safe-by-default deploys for real-time (WebSocket) ASGI services."""


# One line per command module; adding a command touches this tuple and its own module.
_COMMAND_MODULES = (
    "demo",
    "probe",
    "check",
    "migrate",
    "audit",
    "deploy",
    "secrets",
    "token",
    "monitor",
    "diagnose",
    "cloudrun",
    "k8s",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def _help_in_words(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.cls is None or info.cls is TyperCommand:
            info.cls = HelpInWords
        elif not issubclass(info.cls, HelpInWords):
            raise TypeError(f"{info.cls.__name__}: derive command classes from HelpInWords")
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _help_in_words(group.typer_instance)


_help_in_words(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Exit codes: 0 ok, 1 findings or failed verification, 2 usage or config
    error, 3 startup failure."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # In non-standalone mode typer *returns* the code of ``typer.Exit(n)``.
        rv = app(args=args, standalone_mode=False, prog_name="safeship")
    except SafeshipError as exc:
        from ._output import print_error

        print_error(exc, as_json="--json" in args)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    except _ClickException as exc:  # usage errors: a bad option, a missing argument
        if "--json" in args:
            from ._output import emit_json

            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "safeship"
            emit_json(
                {
                    "ok": False,
                    "error": "UsageError",
                    "message": exc.format_message(),
                    "hint": f"see `{command} --help`",
                }
            )
        else:
            exc.show()
        return exc.exit_code
    return rv if isinstance(rv, int) else 0
