"""``safeship demo`` (being built)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(json_output: bool = typer.Option(False, "--json", help="Print a JSON report.")) -> None:
        """Replay the staging incident and show safeship preventing it."""
        raise typer.Exit(2)
