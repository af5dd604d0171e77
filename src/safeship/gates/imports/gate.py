"""The ``imports`` gate: import every module of the package in the project's interpreter.

By default the gate checks what the app will meet. One process imports the entry modules
(the app's startup, in its own order); a failure there breaks startup. Every module the
startup did not import is then imported into a copy of that process, forked from it: the
state a request handler's lazy import meets. With ``strict``, every module is imported from
a pristine interpreter instead, as if it were the only one.

A fork server (``worker.py``, standard library only, run by the project's interpreter) makes
this fast: no import pays ~30 ms for a new interpreter, and a module may start from the
process that imported one of its dependencies when that is equivalent (``plan``). Each
import has a deadline; a hang is killed with its process group and reported with the stack
it hung in. The imports run with their working directory and ``HOME`` in a temporary
directory; what they still write into the tree is reported (``trace``), and what they raise
is redacted before it is shown (``redaction``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model import GateResult, GateStatus
from ..runner import CheckContext, python_files, result_from_findings
from . import trace
from .deps import dependency_findings, split_missing, what_to_do
from .findings import ImportOutcome, outcomes_to_findings
from .plan import DEEP_LEVELS, ImportPlan, plan_imports, plan_spines
from .pool import import_modules
from .redaction import redactor_for

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


def _top_level_names(import_root: Path) -> set[str]:
    """Names importable from ``import_root`` itself: packages and modules, never other
    files (a stray ``http.log`` does not make the stdlib's ``http`` first-party)."""
    names: set[str] = set()
    try:
        entries = list(import_root.iterdir())
    except OSError:
        return names
    for path in entries:
        if path.is_dir():
            if _IDENT.match(path.name) and (
                (path / "__init__.py").is_file() or any(path.glob("*.py"))
            ):
                names.add(path.name)
        elif path.suffix in (".py", ".so", ".pyd") and _IDENT.match(path.name.split(".")[0]):
            names.add(path.name.split(".")[0])
    return names


def _entry_modules(entries: Sequence[str], root: Path, import_root: Path) -> list[str]:
    """Entries as module names: ``--entry`` may also name a file (``src/app/main.py``)."""
    out = []
    for entry in entries:
        if entry.endswith(".py") or "/" in entry or os.sep in entry:
            path = Path(entry) if Path(entry).is_absolute() else root / entry
            try:
                parts = list(path.resolve().relative_to(import_root.resolve()).parts)
            except ValueError:
                continue
            parts[-1] = parts[-1].removesuffix(".py")
            if parts[-1] == "__init__":
                parts.pop()
            entry = ".".join(parts)
        if entry and _MODULE.match(entry) and entry not in out:
            out.append(entry)
    return out


def _cache_dir(environ: Mapping[str, str]) -> Path:
    """Bytecode caches of the checked code, kept between runs, outside the project."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(environ.get("SAFESHIP_CACHE_DIR") or os.path.join(base, "safeship")) / "pycache"


def _forget_temporary_caches(cache_dir: Path, trees: Sequence[Path]) -> None:
    """Drop the bytecode caches of trees in the temporary directory (tests, scratch copies):
    kept, they would only pile up; the caches of the libraries stay."""
    temporary = Path(tempfile.gettempdir()).resolve()
    for tree in trees:
        tree = tree.resolve()
        if tree.is_relative_to(temporary):
            shutil.rmtree(cache_dir / tree.relative_to(tree.anchor), ignore_errors=True)


class ImportsGate:
    """Imports every module of the checked package, with the target environment's variables."""

    name = "imports"

    def __init__(
        self,
        *,
        python: str | None = None,
        preload: bool = True,
        reuse: bool = True,
        strict: bool | None = None,
    ) -> None:
        """Args:
        python: interpreter for the worker (default: the project's, ``ctx.project_env``).
        preload: import third-party modules once in the worker, before forking.
        reuse: start a module from the process that imported its dependency when that is
            equivalent to a fresh import (see ``plan``); False: always from the start state.
        strict: every module from a pristine interpreter, none from the started app
            (default: ``ctx.imports_strict``).
        """
        self.python = python
        self.preload = preload
        self.reuse = reuse
        self.strict = strict

    def _interpreter(self, ctx: CheckContext) -> tuple[str, list[str], str]:
        """The worker's interpreter, its options, and where it came from."""
        if self.python:
            return self.python, [], "given"
        env = ctx.project_env
        if env is not None and not env.isolated:
            return str(env.interpreter), [], env.interpreter_source
        if sys.prefix != sys.base_prefix:
            # safeship runs from its own venv, and no project environment was found: its
            # interpreter, without its site-packages, so none of its packages count.
            return sys.executable, ["-S"], "safeship's interpreter, without its packages"
        return sys.executable, [], "safeship's interpreter"

    def run(self, ctx: CheckContext) -> GateResult:
        manifest = ctx.manifest
        strict = bool(getattr(ctx, "imports_strict", False)) if self.strict is None else self.strict
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
        first_party = {name.split(".")[0] for name in files} | _top_level_names(import_root)
        entries = [] if strict else _entry_modules(ctx.entries, ctx.root, import_root)
        python, flags, source = self._interpreter(ctx)
        version = ctx.project_env.interpreter_version if ctx.project_env else None
        if version is not None and version < (3, 9) and not self.python:
            return GateResult(
                gate=self.name,
                status=GateStatus.ERROR,
                error=f"the project's interpreter {python} is Python "
                f"{version[0]}.{version[1]}: the imports gate needs 3.9 or later",
            )
        redact = redactor_for(ctx)
        started = time.perf_counter()
        texts = {path: text for path in files.values() if (text := _read(path)) is not None}
        # With entries the startup imports the app's third-party modules in its own order.
        preload = (
            preload_candidates(list(files.values()), first_party, texts)
            if self.preload and not entries
            else []
        )
        # In the app, a deep chain of lazy imports starts from the state it meets; only
        # strict mode keeps a fresh import's exact stack depth (see ``plan``).
        plan = plan_imports(
            found,
            {n: texts[p] for n, p in found if p in texts},
            deep_levels=None if entries else DEEP_LEVELS,
        )
        if not self.reuse:
            plan = ImportPlan(
                spines=dict.fromkeys(files), reach={}, cost={}, weight={}, deep=frozenset()
            )
        before = trace.snapshot(ctx.root)
        try:
            outcomes, facts = import_modules(
                list(files),
                import_root=import_root,
                environ=ctx.environ,
                timeout=manifest.gates.import_timeout,
                jobs=manifest.gates.import_jobs,
                preload=preload,
                first_party=sorted(first_party),
                # Learning what children import from outside the project preloads it into
                # the pristine worker, which the default mode only falls back on; a module
                # that imports the project back would only force a new worker.
                learn=self.preload and not entries,
                plan=plan,
                python=python,
                python_flags=flags,
                entries=entries,
                more=plan.startup_order(entries),
                cache_dir=_cache_dir(ctx.environ),
                tree=ctx.root,
            )
        except OSError as exc:  # the interpreter itself cannot be started
            return GateResult(
                gate=self.name,
                status=GateStatus.ERROR,
                error=f"cannot start the import worker ({python}): {exc}",
            )
        if not facts["interpreter"]:  # no worker ever got ready: nothing was imported
            return GateResult(
                gate=self.name,
                status=GateStatus.ERROR,
                error=f"the import worker does not run in {python}: it needs Python 3.9 or "
                "later, with its standard library; pass --python with the project's "
                "interpreter",
            )
        changes = trace.diff(before, trace.snapshot(ctx.root), ctx.root)
        _forget_temporary_caches(_cache_dir(ctx.environ), [ctx.root, import_root])
        elapsed = time.perf_counter() - started
        startup = facts.get("startup")
        outcomes = list(outcomes)
        if startup and startup.get("status") != "ok" and startup.get("module") not in files:
            # An entry outside the checked package failed: still the app's startup.
            outcomes.append(_startup_outcome(startup, manifest.gates.import_timeout))
        interpreter = {
            "python": facts["interpreter"].get("python") or python,
            "version": facts["interpreter"].get("version"),
            "source": source,
            "isolated": bool(flags),
        }
        # Without a startup there is no telling what breaks startup from what breaks on
        # call: every failure is an error, as in strict mode.
        judged_strict = strict or not entries
        deps, rest = split_missing(outcomes, first_party)
        findings = dependency_findings(
            deps,
            files,
            ctx,
            judged_strict,
            python,
            flags,
            interpreter,
            redact,
            facts.get("distributions") if facts["interpreter"] else None,
        )
        findings += outcomes_to_findings(
            rest,
            files,
            root=ctx.root,
            import_root=import_root,
            env=ctx.env,
            redact=redact,
            strict=judged_strict,
            block_tiers=ctx.block_tiers,
            python=python if not flags else f"{python} {' '.join(flags)}",
        )
        findings += trace.write_findings(changes, outcomes, startup, entries, ctx.root)
        counts = {
            s: sum(o.status == s for o in outcomes if o.module in files)
            for s in ("ok", "error", "hung", "crashed")
        }
        summary: dict[str, Any] = {
            "mode": "strict" if strict else ("startup" if entries else "fresh"),
            "interpreter": interpreter,
            "modules": len(files),
            **counts,
            # Modules imported by the startup, into a copy of the started app, or fresh.
            "phases": {
                phase: sum(o.phase == phase for o in outcomes if o.module in files)
                for phase in ("startup", "lazy", "fresh")
            },
            "jobs": facts["jobs"],
            "reused": sum(1 for spine in plan.spines.values() if spine),
            "preloaded": len(facts["preloaded"]),
            "worker_restarts": facts["restarts"],
            "executed": facts["executed"],
            "modules_per_s": round(len(files) / elapsed, 1) if elapsed > 0 else None,
        }
        if startup:
            summary["startup"] = {
                "entries": startup.get("entries", entries),
                "status": startup.get("status"),
                "modules": startup.get("loaded", 0),
                "threads": startup.get("threads", 0),
                "seconds": round(startup["t"][1] - startup["t"][0], 3)
                if isinstance(startup.get("t"), list)
                else None,
            }
        notes = list(facts["notes"])
        if not strict and not entries:
            notes.append(
                "no entry module (service.app, --entry): every module was imported from a "
                "fresh interpreter, as with --imports-strict"
            )
        if startup and startup.get("threads"):
            notes.append(
                f"the app's startup started {startup['threads']} thread(s); the modules "
                "imported after it were forked without them"
            )
        if deps:
            notes.append(what_to_do(interpreter))
        if changes:
            notes.append(
                f"the imports wrote {len(changes)} path(s) into the project's tree; they are "
                "left as they are"
            )
        if not files:
            notes.append("no importable modules found")
        if notes:
            summary["notes"] = redact.many(notes)
        return result_from_findings(self.name, findings, summary)


def _startup_outcome(line: Mapping[str, Any], timeout: float) -> ImportOutcome:
    from .pool import _outcome

    return _outcome(str(line.get("module")), dict(line), timeout, "startup")
