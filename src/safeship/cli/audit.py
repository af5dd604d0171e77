"""``safeship audit verify|show``: check and read the tamper-evident audit log.

``verify`` exits 0 when the chain is intact (or there is no audit log yet) and 1 when it is
broken or missing, naming each broken line; it says when the log is unkeyed or not anchored.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import UsageError

__all__ = ["register"]

_PATH_HELP = "Audit log file (default: <state_dir>/audit.jsonl under the manifest's directory)."


def _log_path(path: Path | None) -> Path:
    from ..config import load_manifest
    from ..deploy.audit import audit_path

    return path.expanduser().resolve() if path else audit_path(load_manifest())


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(
        name="audit",
        help="Verify and read the audit log of skipped checks and deploys.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @audit_app.command("verify")
    def verify_cmd(
        path: Path | None = typer.Option(None, "--path", metavar="FILE", help=_PATH_HELP),
        json_output: bool = typer.Option(False, "--json", help="Print a JSON report."),
    ) -> None:
        """Check the chain, its key and its anchor; exit 1 and name what was tampered with."""
        from rich.markup import escape

        from ..deploy.audit import verify
        from ._output import console, emit_json

        log = _log_path(path)
        result = verify(log)
        if json_output:
            emit_json(result.as_dict())
        elif result.status == "no_log":
            console.print(f"no audit log yet at {escape(str(log))} (nothing was audited)")
        elif result.ok:
            if result.keyed:
                how = "keyed"
            elif result.unkeyed < result.entries:
                how = "macs not checked: no audit key"
            else:
                how = "unkeyed: hash chain only"
            how += f", anchored at seq {result.anchored}" if result.anchored else ", not anchored"
            console.print(
                f"[bold green]✓ audit log intact[/] ({how}): {result.entries} entries in "
                f"{escape(str(log))}; head {result.head}"
            )
        else:
            console.print(f"[bold red]✗ audit log broken[/]: {escape(str(log))}")
            for problem in result.problems:
                console.print(f"  {escape(problem)}")
        if not json_output:
            for note in result.notes if result.status != "no_log" else ():
                console.print(f"  [yellow]note:[/] {escape(note)}")
        raise typer.Exit(0 if result.ok else 1)

    @audit_app.command("show")
    def show_cmd(
        path: Path | None = typer.Option(None, "--path", metavar="FILE", help=_PATH_HELP),
        last: int | None = typer.Option(
            None, "--last", metavar="N", help="Only the last N entries."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
    ) -> None:
        """Print the entries, oldest first."""
        from rich.markup import escape

        from ..deploy.audit import AuditLog
        from ._output import console, emit_json

        if last is not None and last < 1:
            raise UsageError(f"--last {last}: expected a positive number")
        log = _log_path(path)
        entries = AuditLog(log).entries()
        if last is not None:
            entries = entries[-last:]
        if json_output:
            emit_json({"path": str(log), "entries": entries})
            return
        if not entries:
            console.print(f"no entries in {escape(str(log))}")
            return
        for entry in entries:
            why = f"  [dim]why:[/] {escape(str(entry.get('why')))}" if entry.get("why") else ""
            what = json.dumps(entry.get("what", {}), sort_keys=True)
            console.print(
                f"[bold]#{entry.get('seq')}[/] {escape(str(entry.get('ts')))} "
                f"{escape(str(entry.get('who')))} [cyan]{escape(str(entry.get('event')))}[/] "
                f"{escape(what)}{why}"
            )

    app.add_typer(audit_app, name="audit")
