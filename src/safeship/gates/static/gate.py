"""The ``static`` gate: engine findings, triaged by what the service really runs.

ruff and ty report undefined names and missing first-party members; ``ruff analyze graph``
gives the import graph. The three start at once. ruff and the graph finish long before ty, so
their findings are triaged while ty still runs; ty's come last. Each finding gets a tier:
``breaks-startup`` when the name is evaluated while a module the entry points import is being
imported, ``breaks-on-call`` inside a reachable function body, ``unreachable``, or ``noise``.

Only files with findings in modules the service imports are parsed, each once, and their
trees are dropped as soon as their findings are located: thousands of live ASTs would cost
memory and make every garbage collection slower.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.triage import Facts, Where, is_test_path, triage
from ...errors import GateError
from ..baseline import (
    Baseline,
    apply_baseline,
    load_baseline,
    text_scope,
    write_baseline,
)
from ..model import Finding, GateResult, GateStatus, Tier
from . import engines
from .context import FileContext
from .engines import Diagnostic, EngineRun, EngineSpec
from .graph import (
    ImportGraph,
    Layout,
    ModuleMap,
    Reach,
    definitions,
    import_sites,
    project_layout,
    render_chain,
)

if TYPE_CHECKING:
    from ..runner import CheckContext

__all__ = ["DEFAULT_BASELINE", "StaticGate"]

DEFAULT_BASELINE = "safeship-baseline.json"
TIER_ORDER = (Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL, Tier.WARNING, Tier.UNREACHABLE, Tier.NOISE)
# Rules whose name may live elsewhere in the project (a lost import, a moved definition).
_HINTED_RULES = frozenset({"F821", "ty:import-not-found"})
Key = tuple[str, int, str]


class StaticGate:
    """The ``static`` gate. ``ruff``/``ty`` override the engine binaries (tests, pinning);
    ``timeout`` is each engine's deadline in seconds."""

    name = "static"

    def __init__(
        self,
        *,
        ruff: str | os.PathLike[str] | None = None,
        ty: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._ruff = ruff
        self._ty = ty
        self._timeout = engines.DEFAULT_TIMEOUT if timeout is None else timeout

    def run(self, ctx: CheckContext) -> GateResult:
        started = time.perf_counter()
        if not ctx.root.is_dir():
            return GateResult(
                self.name,
                GateStatus.ERROR,
                error=f"{ctx.root} is not a directory: pass the project's root directory",
            )
        try:
            layout = project_layout(ctx)
            specs = self.specs(layout, dict(ctx.manifest.legacy))
            result = _Run(ctx, layout).execute(specs, self._timeout)
        except (OSError, ValueError, GateError) as exc:
            result = GateResult(self.name, GateStatus.ERROR, error=f"static gate failed: {exc}")
        result.duration = time.perf_counter() - started
        return result

    def specs(self, layout: Layout, legacy: dict[str, str]) -> list[EngineSpec]:
        """The three engine commands for ``layout``."""
        roots = [str(layout.root / r) if r else str(layout.root) for r in layout.import_roots]
        ruff = engines.find_binary("ruff", self._ruff)
        ty = engines.find_binary("ty", self._ty)
        targets, exclude = layout.targets, layout.exclude
        ruff_argv = engines.ruff_command(targets, legacy, exclude)
        graph_argv = engines.graph_command(targets, roots, exclude)
        # The project's own environment, when it has one, knows its third-party packages.
        own_env = (layout.root / ".venv").is_dir() or "VIRTUAL_ENV" in os.environ
        ty_argv = engines.ty_command(targets, roots, exclude, None if own_env else sys.prefix)
        return [
            EngineSpec("ruff", "ruff", ruff, ruff_argv, engines.parse_ruff),
            EngineSpec("graph", "ruff", ruff, graph_argv, engines.parse_graph),
            EngineSpec("ty", "ty", ty, ty_argv, engines.parse_ty),
        ]


class _Run:
    """One run of the gate over one project: engines, triage, hints, then the baseline."""

    def __init__(self, ctx: CheckContext, layout: Layout) -> None:
        self.ctx = ctx
        self.layout = layout
        self.legacy = dict(ctx.manifest.legacy)
        self.modules = ModuleMap(layout.import_roots)
        self.graph: ImportGraph | None = None
        self.reach = Reach(complete=False)
        self.first_party: frozenset[str] = frozenset()
        self.sites: dict[str, dict[str, str | None]] = {}
        self.dynamic: dict[str, bool] = {}
        self.index: dict[str, list[str]] | None = None
        self.errors: list[str] = []
        self.dropped = {"third_party": 0, "duplicates": 0}
        self.summary: dict[str, Any] = {"dropped": self.dropped}

    def execute(self, specs: list[EngineSpec], timeout: float) -> GateResult:
        with engines.started_engines(specs, self.layout.root, timeout) as futures:
            ruff, graph = futures["ruff"].result(), futures["graph"].result()
            self._reachability(graph)
            # ty is still running: triage ruff's findings in the meantime.
            names = [d for d in ruff.diagnostics if d.rule != "TID251"]
            findings = self._hinted(self._triage(names))
            ty = futures["ty"].result()
        runs = {"ruff": ruff, "ty": ty, "graph": graph}
        self.summary["engines"] = {name: run.as_dict() for name, run in runs.items()}
        self.errors = [run.error for run in runs.values() if run.error] + self.errors
        if not (ruff.ok or ty.ok):
            return GateResult(
                "static", GateStatus.ERROR, error="; ".join(self.errors), summary=self.summary
            )
        keys = {_key(f) for f in findings}
        findings += self._hinted(self._triage(self._select_ty(ty.diagnostics, keys)))
        findings += self._legacy(ruff.diagnostics, findings)
        findings = self._baseline(findings)
        findings.sort(key=lambda f: (TIER_ORDER.index(f.tier), f.path or "", f.line or 0))
        return self._result(findings)

    # -- reachability ----------------------------------------------------------------

    def _reachability(self, run: EngineRun) -> None:
        modules: dict[str, Any] = {"entries": list(self.ctx.entries)}
        self.summary["modules"] = modules
        if not run.ok:
            modules["reachability"] = "unknown (no import graph): every module counts as reachable"
            self.first_party = self.modules.top_level_names(self._walk_files())
            return
        self.graph = graph = ImportGraph(run.graph, self.modules)
        self.first_party = self.modules.top_level_names(graph.files)
        found, missing = graph.resolve_entries(self.ctx.entries)
        modules["total"] = len(graph.files)
        if missing:
            roots = ", ".join(r or "." for r in self.layout.import_roots)
            self.errors.append(
                f"entry module(s) {', '.join(missing)} not found under {roots}: check "
                "service.app / service.entry_points in the manifest, or --entry"
            )
            modules["entries_missing"] = missing
        if not found:
            modules["reachability"] = "unknown (no entry module): every module counts as reachable"
            return
        self.reach = graph.reach(found)
        modules["reachable"] = len(self.reach.parents)
        modules["reachability"] = "complete"

    def _walk_files(self) -> list[str]:
        from ..runner import python_files

        root = self.layout.root
        return [
            path.relative_to(root).as_posix()
            for target in self.layout.targets
            for path in python_files(root / target, root=root)
        ]

    # -- selecting ty's findings ---------------------------------------------------------

    def _select_ty(self, diagnostics: list[Diagnostic], keys: set[Key]) -> list[Diagnostic]:
        """ty's findings about first-party names that ruff did not already report."""
        kept = []
        for diag in diagnostics:
            if _dkey(diag) in keys:
                self.dropped["duplicates"] += 1
            elif diag.owner_kind == "class":
                kept.append(diag)  # first-party or not is read from the file, in _triage
            elif diag.owner_kind in ("module", "import") and self._is_first_party(diag.owner):
                kept.append(diag)
            else:
                self.dropped["third_party"] += 1
        return kept

    def _is_first_party(self, dotted: str | None) -> bool:
        if dotted is None:
            return False
        return dotted.startswith(".") or dotted.split(".")[0] in self.first_party

    def _legacy(self, diagnostics: list[Diagnostic], findings: list[Finding]) -> list[Finding]:
        """ruff's TID251 legacy references, merged into a finding on the same name if any."""
        by_key = {_key(f): i for i, f in enumerate(findings)}
        kept = []
        for diag in diagnostics:
            if diag.rule != "TID251":
                continue
            index = by_key.get(_dkey(diag))
            if index is None:
                kept.append(diag)
                continue
            self.dropped["duplicates"] += 1
            hint = _legacy_hint(diag.symbol or "", self.legacy)
            findings[index] = replace(findings[index], hint=hint or findings[index].hint)
        return self._triage(kept)

    # -- triage, one file at a time ------------------------------------------------------

    def _triage(self, diagnostics: list[Diagnostic]) -> list[Finding]:
        by_path: dict[str, list[Diagnostic]] = defaultdict(list)
        for diag in diagnostics:
            by_path[diag.path].append(diag)
        out: list[Finding] = []
        for path, diags in by_path.items():
            text = _read(self.layout.root / path)
            lines = text.splitlines() if text is not None else []
            reachable = self.reach.is_reachable(path)
            is_test = is_test_path(path)
            # Tests and modules nobody imports are decided without their AST.
            needs_ast = text is not None and (
                (reachable and not is_test) or any(d.owner_kind == "class" for d in diags)
            )
            context = FileContext.parse(path, text or "") if needs_ast else None
            for diag in diags:
                if diag.owner_kind == "class":
                    origin = context.owner_origin(diag.line, diag.column) if context else None
                    if not self._is_first_party(origin):
                        self.dropped["third_party"] += 1
                        continue
                facts = context.locate(diag.line, diag.column) if context else Facts()
                out.append(self._finding(diag, facts, lines, reachable, is_test))
        return out

    def _finding(
        self, diag: Diagnostic, facts: Facts, lines: list[str], reachable: bool, is_test: bool
    ) -> Finding:
        if diag.rule == engines.SYNTAX_ERROR:
            facts = replace(facts, syntax_error=True, where=Where.MODULE, in_function=False)
        elif diag.rule == "TID251":
            facts = replace(facts, legacy_reference=True)
        elif diag.owner_kind in ("module", "import") and self._dynamic(diag.owner or ""):
            facts = replace(facts, target_dynamic=True)
        decision = triage(facts, reachable=reachable, is_test=is_test)
        chain: tuple[str, ...] = ()
        if self.reach.complete and decision.tier in (Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL):
            chain = render_chain(self.reach.chain(diag.path), self.modules, self._sites, diag.line)
        source = lines[diag.line - 1].rstrip() if 0 < diag.line <= len(lines) else None
        return Finding(
            gate="static",
            rule=diag.rule,
            message=f"{diag.message} ({decision.reason})",
            tier=decision.tier,
            path=diag.path,
            line=diag.line,
            column=diag.column,
            source_line=source,
            hint=_legacy_hint(diag.symbol or "", self.legacy) if diag.rule == "TID251" else None,
            chain=chain,
            symbol=diag.symbol,
            scope=text_scope(lines, diag.line),
            blocking=decision.tier in self.ctx.block_tiers,
            extra={"engine": diag.engine, "reason": decision.reason},
        )

    def _sites(self, path: str) -> dict[str, str | None]:
        if path not in self.sites:
            module = self.modules.module_of(path) or ""
            source = _read(self.layout.root / path) or ""
            self.sites[path] = import_sites(source, module, path.endswith("__init__.py"))
        return self.sites[path]

    def _dynamic(self, module: str) -> bool:
        """Whether the first-party module ``module`` defines names at runtime."""
        if module not in self.dynamic:
            self.dynamic[module] = False
            for candidate in self.modules.candidates(module.lstrip(".")):
                text = _read(self.layout.root / candidate)
                if text is not None:
                    facts = FileContext.parse(candidate, text)  # reads the text, parses nothing
                    self.dynamic[module] = facts.module_getattr or facts.globals_write
                    break
        return self.dynamic[module]

    # -- hints ---------------------------------------------------------------------------

    def _hinted(self, findings: list[Finding]) -> list[Finding]:
        """Say where a lost name lives: a legacy rename, or a definition elsewhere."""
        legacy_short = {old.rpartition(".")[2] for old in self.legacy}
        out = []
        for finding in findings:
            symbol = finding.symbol or ""
            wanted = (
                finding.hint is None
                and finding.rule in _HINTED_RULES
                and finding.tier in (Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL)
                and symbol.isidentifier()
            )
            if wanted and symbol in legacy_short:
                finding = replace(finding, hint=_legacy_hint(symbol, self.legacy))
            elif wanted:
                here = self.modules.module_of(finding.path or "")
                places = [m for m in self._definitions().get(symbol, []) if m != here][:3]
                if places:
                    imports = " or ".join(f"`from {m} import {symbol}`" for m in places)
                    hint = f"`{symbol}` is defined elsewhere in the project: add {imports}"
                    finding = replace(finding, hint=hint)
            out.append(finding)
        return out

    def _definitions(self) -> dict[str, list[str]]:
        if self.index is None:
            files = [p for p in (self.graph.files if self.graph else ()) if not is_test_path(p)]
            self.index = definitions(files, self.modules, lambda p: _read(self.layout.root / p))
        return self.index

    # -- baseline and result ---------------------------------------------------------------

    def _baseline(self, findings: list[Finding]) -> list[Finding]:
        path = self.ctx.baseline_path
        info: dict[str, Any] = {"path": str(path) if path else None}
        self.summary["baseline"] = info
        if self.ctx.write_baseline:
            path = path or self.layout.root / DEFAULT_BASELINE
            try:
                baseline = write_baseline(path, findings)
            except GateError as exc:
                self.errors.append(exc.message)
                return findings
            info.update(path=str(path), written=True, entries=len(baseline))
        elif path is not None:
            try:
                baseline = load_baseline(path)
            except GateError as exc:
                self.errors.append(f"{exc.message}; every finding counts as new")
                baseline = Baseline()
        else:
            return findings
        marked = apply_baseline(findings, baseline)
        known = sum(f.in_baseline for f in marked)
        info.update(known=known, new=len(marked) - known)
        return marked

    def _result(self, findings: list[Finding]) -> GateResult:
        tiers = {str(t): 0 for t in TIER_ORDER}
        for finding in findings:
            tiers[str(finding.tier)] += 1
        blocking = [f for f in findings if f.blocking and not f.in_baseline]
        self.summary.update(
            tiers=tiers,
            blocking=len(blocking),
            block_tiers=sorted(str(t) for t in self.ctx.block_tiers),
        )
        if blocking:
            status = GateStatus.FAILED
        elif self.errors:
            status = GateStatus.ERROR  # an engine did not run: inconclusive, never "passed"
        else:
            status = GateStatus.PASSED
        error = "; ".join(self.errors) or None
        return GateResult("static", status, findings, error=error, summary=self.summary)


def _key(finding: Finding) -> Key:
    return (finding.path or "", finding.line or 0, (finding.symbol or "").rpartition(".")[2])


def _dkey(diag: Diagnostic) -> Key:
    return (diag.path, diag.line, (diag.symbol or "").rpartition(".")[2])


def _legacy_hint(symbol: str, legacy: dict[str, str]) -> str | None:
    short = symbol.rpartition(".")[2]
    for old, new in sorted(legacy.items()):
        if old == symbol or old.rpartition(".")[2] == short:
            module, _, name = new.rpartition(".")
            how = f" (`from {module} import {name}`)" if module else ""
            return f"`{short}` is a legacy name: use {new}{how}"
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
