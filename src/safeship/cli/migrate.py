"""``safeship migrate --rename OLD=NEW [PATH]``: rewrite references to a legacy name.

Uses libcst's rename codemod, so other names with the same prefix, strings and comments are
left alone. ``--check`` changes nothing and exits 1 while any reference remains.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UsageError

if TYPE_CHECKING:
    from ..gates.legacy.gate import Reference

__all__ = ["register"]


def _references(refs: list[Reference]) -> list[dict[str, Any]]:
    return [
        {"name": r.name, "path": r.path, "line": r.line, "kind": r.kind, "source": r.source_line}
        for r in refs
    ]


def _print_remaining(refs: list[Reference]) -> None:
    from rich.markup import escape

    from ._output import console

    for ref in refs:
        console.print(
            f"  {escape(ref.path)}:{ref.line}  [dim]{escape(ref.kind)} of[/] "
            f"{escape(ref.name)}  [dim]│ {escape(ref.source_line)}[/]"
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def migrate(
        path: Path = typer.Argument(
            Path("."), metavar="PATH", help="File or directory to migrate."
        ),
        rename: list[str] | None = typer.Option(
            None,
            "--rename",
            metavar="OLD=NEW",
            help="OLD=NEW fully qualified names (default: the manifest's [legacy] table).",
        ),
        check: bool = typer.Option(
            False, "--check", help="Change nothing; exit 1 while any reference remains."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print a JSON report."),
    ) -> None:
        """Rename references to legacy names safely (imports, attributes and bare uses)."""
        from rich.markup import escape

        from ..config import load_manifest
        from ..gates.legacy.gate import find_references, parse_rename, rename_references
        from ._output import console, emit_json

        root = path.expanduser().resolve()
        if not root.exists():
            raise UsageError(f"{path}: no such file or directory")
        if rename:
            pairs = [parse_rename(spec) for spec in rename]
        else:
            manifest = load_manifest(start=root if root.is_dir() else root.parent)
            pairs = list(manifest.legacy.items())
        if not pairs:
            raise UsageError(
                "nothing to rename",
                hint="pass --rename OLD=NEW, or list names in the manifest's [legacy] table",
            )
        olds = [old for old, _ in pairs]
        renamed: list[dict[str, Any]] = []
        unparsable: set[str] = set()
        refused: dict[str, list[str]] = {}
        if not check:
            for old, new in pairs:
                outcome = rename_references(root, old, new)
                renamed.append({"old": old, "new": new, "changed": outcome.changed})
                unparsable.update(outcome.unparsable)
                refused.update(outcome.refused)
        skipped: list[str] = []
        remaining = find_references(root, olds, unparsable=skipped)
        unparsable.update(skipped)
        ok = not remaining and not unparsable and not refused
        if json_output:
            emit_json(
                {
                    "ok": ok,
                    "check": check,
                    "renamed": renamed,
                    "remaining": _references(remaining),
                    "counts": {old: sum(r.name == old for r in remaining) for old in olds},
                    "unparsable": sorted(unparsable),
                    "refused": [{"path": p, "undefined": n} for p, n in sorted(refused.items())],
                }
            )
            raise typer.Exit(0 if ok else 1)
        for item in renamed:
            changed = item["changed"]
            console.print(
                f"[bold]{escape(item['old'])}[/] → [bold]{escape(item['new'])}[/]: "
                f"{len(changed)} file(s) changed"
            )
            for rel in changed:
                console.print(f"  [green]changed[/] {escape(rel)}")
        for rel, names in sorted(refused.items()):
            console.print(
                f"  [magenta]not changed[/] {escape(rel)}: the rewrite would leave "
                f"{escape(', '.join(names))} undefined; migrate it by hand"
            )
        for rel in sorted(unparsable):
            console.print(f"  [magenta]not parsed[/] {escape(rel)} (syntax error; not migrated)")
        if remaining:
            files = len({r.path for r in remaining})
            console.print(f"[bold red]{len(remaining)} reference(s) remain[/] in {files} file(s):")
            _print_remaining(remaining)
        elif ok:
            console.print("[bold green]no references to legacy names remain[/]")
        raise typer.Exit(0 if ok else 1)
