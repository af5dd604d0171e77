"""``safeship secrets init --env E``: generate the environment's secrets and write them to
every local consumer (mode 0600), never showing a value."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    secrets_app = typer.Typer(
        name="secrets",
        help="Create the secrets an environment needs.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @secrets_app.command("init")
    def init_cmd(
        env: str = typer.Option(..., "--env", metavar="ENV", help="Environment to create for."),
        force: bool = typer.Option(False, "--force", help="Replace values that are already there."),
        json_output: bool = typer.Option(False, "--json", help="Print a JSON report."),
    ) -> None:
        """Generate a strong secret per declared secret and write it to the environment's
        env_file and every file:/dir: consumer, with mode 0600. Refuses to overwrite a value
        without --force. Prints names, places and fingerprints, never a value."""
        from rich.markup import escape

        from ..config import load_manifest
        from ..secrets.init import init_secrets
        from ._output import console, emit_json

        result = init_secrets(load_manifest(), env, force=force)
        if json_output:
            emit_json(result.as_dict())
            return
        for item in result.secrets:
            places = ", ".join(item.written) or "nowhere"
            console.print(
                f"[bold green]✓[/] {escape(item.name)} (fingerprint {item.fingerprint}) "
                f"written to {escape(places)}"
            )
            for consumer, todo in item.not_written:
                console.print(f"  {escape(consumer)}: {escape(todo)}")
        console.print("These files hold secrets: keep them out of version control.")

    app.add_typer(secrets_app)
