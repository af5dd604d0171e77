"""``safeship check [PATH]``: run the pre-deploy gates and report what will break the service.

Exit codes: 0 clean, 1 a finding blocks or a gate could not run, 2 usage or config error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import Manifest

__all__ = ["register"]

_FORMATS = ("text", "json", "sarif")
# The gates' names in the order they run (gates.GATES), spelled out so that --help does not
# import the gates.
GATE_NAMES = ("static", "legacy", "secrets", "imports", "boot", "deploy-config")


def _project_root(path: Path | None) -> Path | None:
    if path is None:
        return None
    root = path.expanduser().resolve()
    if not root.exists():
        raise UsageError(f"{path}: no such directory", hint="pass the project's directory")
    if not root.is_dir():
        raise UsageError(f"{path}: not a directory", hint="pass the project's directory")
    return root


def _require_python(root: Path) -> None:
    from ..gates import iter_python_files

    if next(iter(iter_python_files(root)), None) is None:
        raise UsageError(
            f"{root} is not a Python project: it contains no .py files",
            hint="pass the directory of the project to check (virtualenvs and hidden "
            "directories are not searched)",
        )


def _entries(root: Path, manifest: Manifest, given: list[str]) -> list[str]:
    """``--entry`` values as modules (``module:attr`` keeps its attribute).

    Raises:
        UsageError: an entry that no module or file of the project matches.
    """
    from ..gates.static.graph import entry_module, layout_for

    layout = layout_for(root, manifest)
    out = []
    for spec in given:
        found = entry_module(spec, layout)
        if found is None:
            roots = ", ".join(r or "." for r in layout.import_roots)
            raise UsageError(
                f"--entry {spec!r}: no module or file of {root} matches it "
                f"(modules resolve under {roots})",
                hint="pass a module (shop.main), module:attr (shop.main:app) or a file path "
                "(src/shop/main.py)",
            )
        module, attr = found
        out.append(f"{module}:{attr}" if attr else module)
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def check(
        path: Path | None = typer.Argument(
            None,
            metavar="PATH",
            help="Project directory (default: the manifest's directory, or cwd).",
        ),
        env: str | None = typer.Option(
            None,
            "--env",
            metavar="ENV",
            help="Target environment (default: $SAFESHIP_ENV, else development).",
        ),
        only: list[str] | None = typer.Option(
            None, "--only", metavar="|".join(GATE_NAMES), help="Run only this gate. Repeatable."
        ),
        skip: list[str] | None = typer.Option(
            None, "--skip", metavar="|".join(GATE_NAMES), help="Do not run this gate. Repeatable."
        ),
        entry: list[str] | None = typer.Option(
            None,
            "--entry",
            metavar="ENTRY",
            help="Entry for reachability: a module (myapp.main), module:attr (myapp.main:app, "
            "or an app factory) or a file (src/myapp/main.py).",
        ),
        baseline: Path | None = typer.Option(
            None, "--baseline", metavar="FILE", help="Baseline file: findings in it never block."
        ),
        write_baseline: bool = typer.Option(
            False, "--write-baseline", help="Record today's findings in the baseline file."
        ),
        output_format: str | None = typer.Option(
            None, "--format", metavar="|".join(_FORMATS), help="text (default), json or sarif."
        ),
        json_output: bool = typer.Option(False, "--json", help="Same as --format json."),
        force: bool = typer.Option(
            False, "--force", help="Allow skipping gates in a critical environment."
        ),
        reason: str | None = typer.Option(
            None,
            "--reason",
            metavar="TEXT",
            help="Why gates are skipped (required with --force; audited).",
        ),
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="List non-blocking findings too."
        ),
        python: str | None = typer.Option(
            None,
            "--python",
            metavar="PATH",
            help="The project's interpreter or venv (default: auto-detected: the manifest's "
            "python, .venv, VIRTUAL_ENV, uv or poetry).",
        ),
        python_version: str | None = typer.Option(
            None,
            "--python-version",
            metavar="X.Y",
            help="The Python version the code is written for (default: the manifest's "
            "python_version, requires-python, ruff's target-version, .python-version, "
            "then the interpreter's).",
        ),
        imports_strict: bool = typer.Option(
            False,
            "--imports-strict",
            help="Imports gate: import every module from a pristine interpreter, instead of "
            "into a copy of the started app.",
        ),
    ) -> None:
        """Run the gates (static, legacy, secrets, imports, boot) and report what blocks."""
        from rich.markup import escape

        from ..config import current_env, load_manifest
        from ..core.policy import plan_gates
        from ..deploy.audit import AuditLog, audit_path
        from ..gates import GATES, build_context, run_planned
        from ..gates.report import print_text, render_json, render_sarif
        from ..secrets import register_environment_secrets
        from ._output import console, emit_json, err_console

        if json_output and output_format not in (None, "json"):
            raise UsageError(
                f"--json and --format {output_format} ask for two formats",
                hint="pass one of them (--json is the same as --format json)",
            )
        fmt = "json" if json_output else output_format or "text"
        if fmt not in _FORMATS:
            raise UsageError(f"--format {fmt!r}: expected one of {', '.join(_FORMATS)}")
        root = _project_root(path)
        manifest = load_manifest(start=root)
        if root is None:
            root = manifest.root if manifest.path else Path.cwd().resolve()
        _require_python(root)
        target = env.strip() if env else current_env()
        critical = manifest.is_critical(target)  # also rejects an unknown environment
        # Before anything is printed or audited: the environment's secret values are redacted
        # from all of it (a --reason quoting one included).
        register_environment_secrets(
            {manifest.auth.secret, *manifest.secrets}, target, dict(os.environ)
        )
        plan = plan_gates(target, critical, only, skip or (), force, reason, tuple(GATES))
        if write_baseline and baseline is None and not manifest.gates.baseline:
            raise UsageError(
                "--write-baseline needs a baseline file",
                hint="pass --baseline FILE, or set gates.baseline in the manifest",
            )
        ctx = build_context(
            root,
            manifest,
            target,
            entries=_entries(root, manifest, entry or []),
            baseline_path=baseline.resolve() if baseline else None,
            write_baseline=write_baseline,
            python=python,
            python_version=python_version,
        )
        ctx.imports_strict = imports_strict
        for note in ctx.notes:
            err_console.print(f"[yellow]note:[/] {escape(note)}")
        audit = AuditLog(audit_path(manifest)) if plan.requires_audit else None
        report = run_planned(ctx, plan, audit=audit)
        if audit is not None:
            err_console.print(
                f"[yellow]warning:[/] skipped {', '.join(plan.skipped)} in critical environment "
                f"{escape(target)}; recorded in {escape(str(audit.path))}"
            )
        if fmt == "json":
            emit_json(render_json(report))
        elif fmt == "sarif":
            emit_json(render_sarif(report))
        else:
            print_text(report, console, verbose=verbose)
        raise typer.Exit(report.exit_code)
