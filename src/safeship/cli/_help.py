"""``--help`` that names values in words.

Options show their ``metavar`` (``--only static|legacy|...``, ``--timeout SECONDS``) instead of
typer's Python types (``<list[str]>``, ``<float range>``). typer prints an argument's type after
its name even when it has a metavar, so the Arguments section is written here, from the
metavar alone. Every command uses this class (``cli/__init__.py`` sets it).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand

__all__ = ["HelpInWords", "TyperCommand"]


class HelpInWords(TyperCommand):
    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((param.metavar or (param.name or "").upper(), record[1]))
            elif param.param_type_name == "option":
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
