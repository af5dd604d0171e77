"""``safeship diagnose --env E``: why an environment fails, as a chain of observations.

Exit codes: 0 the environment passes its probes, 1 it fails (the chain says why), 2 usage or
config error, or the probes could not run (inconclusive).
"""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def diagnose(
        env: str | None = typer.Option(
            None,
            "--env",
            metavar="ENV",
            help="Environment to explain (default: $SAFESHIP_ENV, else development).",
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the chain as JSON (machine-readable)."
        ),
    ) -> None:
        """Explain a failing environment down to its root cause, in under 5 s."""
        import asyncio
        import os

        from ..config import current_env, load_manifest
        from ..monitor.diagnose import diagnose as run_diagnose

        manifest = load_manifest()
        name = env or current_env()
        chain, extra = asyncio.run(run_diagnose(manifest, name, os.environ))
        code = {"ok": 0, "failing": 1}.get(chain.status, 2)
        if json_output:
            from ._output import emit_json

            emit_json({**chain.as_dict(), **extra, "exit_code": code})
        else:
            _render(chain.as_dict(), extra)
        raise typer.Exit(code)


def _render(chain: dict[str, Any], extra: dict[str, Any]) -> None:
    from rich.markup import escape

    from ._output import console

    colour = {"ok": "green", "failing": "red"}.get(chain["status"], "yellow")
    where = extra.get("url") or ""
    console.print(
        f"[bold]{escape(chain['env'])}[/] ({escape(where)}): [{colour}]{chain['status']}[/]"
    )
    for index, link in enumerate(chain["chain"]):
        arrow = "  " if index == 0 else "-> "
        console.print(f"  {arrow}{escape(link['what'])} [dim]({link['source']})[/]")
    if chain["status"] != "ok":
        console.print(f"root cause: [bold]{chain['cause']}[/]")
    if chain.get("hint"):
        console.print(f"[dim]hint:[/] {escape(chain['hint'])}")
    if extra.get("probe_setup_error"):
        console.print(
            f"[yellow]probes ran without a token:[/] {escape(extra['probe_setup_error'])}"
        )
    console.print(f"[dim]diagnosed in {extra.get('elapsed_s', 0):.1f}s[/]")
