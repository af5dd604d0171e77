"""The ``imports`` gate: import every module of the package in a fresh interpreter state.

A fork server makes this fast: a worker interpreter (``worker.py``) imports nothing
first-party and forks a child per module, several at a time, so no import sees what another
module's import did and none pays ~30 ms for a new interpreter. A module may start from the
child that imported one of its dependencies when that is equivalent to a fresh import
(``plan``), which spares it re-importing that dependency's closure. Each child has a
deadline; a hang is killed with its process group and reported with the stack it hung in.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model import GateResult, GateStatus
from ..runner import CheckContext, python_files, result_from_findings
from .findings import ImportOutcome, outcomes_to_findings
from .plan import ImportPlan, plan_imports, plan_spines
from .pool import import_modules

__all__ = [
    "ImportOutcome",
    "ImportPlan",
    "ImportsGate",
    "discover_modules",
    "import_modules",
    "plan_imports",
    "plan_spines",
    "preload_candidates",
]

_NEVER_PRELOAD = frozenset({"__future__", "__main__", "antigravity", "this"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TOP_IMPORT = re.compile(
    r"^(?:import[ \t]+([^#\n;]+)|from[ \t]+([A-Za-z_][\w.]*)[ \t]+import)", re.M
)


def discover_modules(
    import_root: Path,
    package_dirs: Sequence[Path],
    *,
    root: Path,
    exclude: Sequence[str] = (),
) -> list[tuple[str, Path]]:
    """``(module name, file)`` for every importable ``.py`` under ``package_dirs``, excluding
    tests, ``__main__`` and the ``exclude`` globs; names are relative to ``import_root``."""
    found: dict[str, Path] = {}
    for directory in package_dirs:
        for path in python_files(directory, root=root, exclude=exclude, include_tests=False):
            try:
                parts = list(path.relative_to(import_root).with_suffix("").parts)
            except ValueError:
                continue
            if parts and parts[-1] == "__init__":
                parts.pop()
            if not parts or parts[-1] == "__main__" or not all(_IDENT.match(p) for p in parts):
                continue
            found.setdefault(".".join(parts), path)
    return sorted(found.items())


def preload_candidates(
    files: Sequence[Path], first_party: set[str], texts: Mapping[Path, str] | None = None
) -> list[str]:
    """Third-party (and standard library) modules imported at module level by ``files``:
    imported once in the worker, since they are not the code under test. ``texts``: the
    files' contents, when the caller has read them already."""
    names: dict[str, None] = {}
    for path in files:
        text = texts.get(path) if texts is not None else None
        if text is None:
            text = _read(path)
        if text is None:
            continue
        for match in _TOP_IMPORT.finditer(text):
            if match.group(1):
                targets = [t.strip().split(" as ")[0].strip() for t in match.group(1).split(",")]
            else:
                targets = [match.group(2)]
            for target in targets:
                target = target.strip("() \t\\")
                top = target.split(".")[0]
                if _MODULE.match(target) and top not in first_party and top not in _NEVER_PRELOAD:
                    names[target] = None
    return list(names)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _redact(text: str) -> str:
    try:
        from ...secrets import redact
    except ImportError:  # pragma: no cover - part of every build
        return text
    return redact(text)


class ImportsGate:
    """Imports every module of the checked package, with the target environment's variables."""

    name = "imports"

    def __init__(
        self, *, python: str | None = None, preload: bool = True, reuse: bool = True
    ) -> None:
        """Args:
        python: interpreter for the worker (default: this one).
        preload: import third-party modules once in the worker, before forking.
        reuse: start a module from the process that imported its dependency when that is
            equivalent to a fresh import (see ``plan``); False: always pristine.
        """
        self.python = python
        self.preload = preload
        self.reuse = reuse

    def run(self, ctx: CheckContext) -> GateResult:
        manifest = ctx.manifest
        import_root = manifest.resolve(manifest.service.app_dir) if manifest.path else ctx.root
        if manifest.path and (manifest.service.code or manifest.service.app):
            package_dirs = [manifest.code_dir]
        elif ctx.entries:
            tops = dict.fromkeys(e.split(".")[0] for e in ctx.entries)
            package_dirs = [
                p
                for top in tops
                for p in (import_root / top, import_root / f"{top}.py")
                if p.exists()
            ]
        else:
            package_dirs = [ctx.root]
        missing = [p for p in package_dirs if not p.exists()]
        if missing or not package_dirs:
            where = missing[0] if missing else import_root
            return GateResult(
                gate=self.name,
                status=GateStatus.ERROR,
                error=f"package directory {where} does not exist",
                summary={"modules": 0},
            )
        found = discover_modules(
            import_root, package_dirs, root=ctx.root, exclude=manifest.gates.exclude
        )
        files = {name: path for name, path in found}
        first_party = {name.split(".")[0] for name in files}
        first_party.update(p.stem for p in import_root.iterdir() if _IDENT.match(p.stem))
        started = time.perf_counter()
        texts = {path: text for path in files.values() if (text := _read(path)) is not None}
        preload = (
            preload_candidates(list(files.values()), first_party, texts) if self.preload else []
        )
        plan = plan_imports(found, {n: texts[p] for n, p in found if p in texts})
        if not self.reuse:
            plan = ImportPlan(
                spines=dict.fromkeys(files), reach={}, cost={}, weight={}, deep=frozenset()
            )
        try:
            outcomes, facts = import_modules(
                list(files),
                import_root=import_root,
                environ=ctx.environ,
                timeout=manifest.gates.import_timeout,
                jobs=manifest.gates.import_jobs,
                preload=preload,
                first_party=sorted(first_party),
                learn=self.preload,
                plan=plan,
                python=self.python,
            )
        except OSError as exc:  # the interpreter itself cannot be started
            return GateResult(
                gate=self.name,
                status=GateStatus.ERROR,
                error=f"cannot start the import worker ({self.python or sys.executable}): {exc}",
            )
        elapsed = time.perf_counter() - started
        findings = outcomes_to_findings(
            outcomes, files, root=ctx.root, import_root=import_root, env=ctx.env, redact=_redact
        )
        counts = {
            s: sum(o.status == s for o in outcomes) for s in ("ok", "error", "hung", "crashed")
        }
        summary: dict[str, Any] = {
            "modules": len(outcomes),
            **counts,
            "jobs": facts["jobs"],
            "reused": sum(1 for spine in plan.spines.values() if spine),
            "preloaded": len(facts["preloaded"]),
            "worker_restarts": facts["restarts"],
            "executed": facts["executed"],
            "modules_per_s": round(len(outcomes) / elapsed, 1) if elapsed > 0 else None,
        }
        if facts["notes"]:
            summary["notes"] = facts["notes"]
        if not outcomes:
            summary["notes"] = [*summary.get("notes", []), "no importable modules found"]
        return result_from_findings(self.name, findings, summary)
