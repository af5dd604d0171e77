"""``safeship deploy``, ``rollback``, ``status``, ``history`` and ``down``.

Exit codes: 0 the new revision serves (``deploy``), traffic is back (``rollback``), all is
well (``status``); 1 blocked, failed verification, rolled back, paused, or (``status``) the
serving revision is not ready; 2 usage, config or target error; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..deploy.pipeline import DeployResult

__all__ = ["register"]

# The deploy targets (deploy.targets.TARGETS) and the gates a deploy runs
# (core.policy.DEPLOY_GATES), spelled out so that --help imports neither.
TARGET_NAMES = ("local", "cloudrun", "kubernetes")
DEPLOY_GATE_NAMES = ("static", "legacy", "secrets")


def _finish(result: DeployResult, as_json: bool) -> None:
    from ._output import emit_json

    if as_json:
        emit_json(result.record)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(
        env: str | None = typer.Option(
            None,
            "--env",
            metavar="ENV",
            help="Environment to deploy to (default: $SAFESHIP_ENV, else development).",
        ),
        target: str | None = typer.Option(
            None,
            "--target",
            metavar="|".join(TARGET_NAMES),
            help="Where revisions run (default: [deploy] target, else local).",
        ),
        source: Path | None = typer.Option(
            None,
            "--source",
            metavar="DIR",
            help="Project directory to deploy (default: the manifest's directory).",
        ),
        image: str | None = typer.Option(
            None,
            "--image",
            metavar="IMAGE",
            help="A prebuilt image (targets that run images; not local).",
        ),
        skip: list[str] = typer.Option(
            [],
            "--skip",
            metavar="|".join(DEPLOY_GATE_NAMES),
            help="Skip this gate. Repeatable; audited.",
        ),
        force: bool = typer.Option(
            False, "--force", help="Deploy despite an unhealthy current revision or skipped gates."
        ),
        reason: str | None = typer.Option(
            None,
            "--reason",
            metavar="TEXT",
            help="Why --force: required with it, written to the audit log.",
        ),
        json_output: bool = typer.Option(False, "--json", help="Print the deploy record as JSON."),
    ) -> None:
        """Gates, start with no traffic, verify, switch, watch, promote or roll back, drain."""
        import asyncio

        from ..config import current_env, load_manifest
        from ..deploy.operations import deploy as run_deploy
        from ..deploy.pipeline import DeployRequest
        from ._output import console
        from .render import DeployProgress

        manifest = load_manifest()
        request = DeployRequest(
            env=env or current_env(),
            source=source if source is not None else manifest.root,
            skip=tuple(skip),
            force=force,
            reason=reason,
        )
        progress = None if json_output else DeployProgress(console)
        result = asyncio.run(
            run_deploy(manifest, request, target_name=target, image=image, on_event=progress)
        )
        _finish(result, json_output)

    @app.command()
    def rollback(
        json_output: bool = typer.Option(
            False, "--json", help="Print the rollback record as JSON."
        ),
    ) -> None:
        """Send traffic back to the previous good revision (at once when it still runs)."""
        import asyncio

        from ..config import load_manifest
        from ..deploy.operations import rollback as run_rollback
        from ._output import console
        from .render import DeployProgress

        manifest = load_manifest()
        progress = None if json_output else DeployProgress(console)
        _finish(asyncio.run(run_rollback(manifest, on_event=progress)), json_output)

    @app.command()
    def status(
        json_output: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    ) -> None:
        """The revisions, which one serves, and whether it is ready."""
        import asyncio

        from ..config import load_manifest
        from ..deploy.operations import status as run_status
        from ._output import console, emit_json
        from .render import render_status

        data = asyncio.run(run_status(load_manifest()))
        if json_output:
            emit_json(data)
        else:
            render_status(data, console)
        raise typer.Exit(0 if data["ok"] else 1)

    @app.command()
    def history(
        last: int | None = typer.Option(
            None, "--last", min=1, metavar="N", help="Only the N most recent (at least 1)."
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the deploys (with their full records) as JSON."
        ),
    ) -> None:
        """Past deploys and rollbacks, most recent first."""
        import asyncio

        from ..config import load_manifest
        from ..deploy.operations import history as run_history
        from ._output import console, emit_json
        from .render import render_history

        rows = asyncio.run(run_history(load_manifest(), last))
        if json_output:
            emit_json(rows)
        else:
            render_history(rows, console)

    @app.command()
    def down(
        json_output: bool = typer.Option(False, "--json", help="Print what was stopped as JSON."),
    ) -> None:
        """Stop the front and every revision of the local target."""
        import asyncio

        from ..config import load_manifest
        from ..deploy.operations import down as run_down
        from ._output import console, emit_json
        from .render import render_down

        done = asyncio.run(run_down(load_manifest()))
        if json_output:
            emit_json({"ok": True, "done": done})
        else:
            render_down(done, console)
