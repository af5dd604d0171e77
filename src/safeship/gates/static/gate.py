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

import itertools
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.triage import Decision, Facts, Runs, Where, is_test_path, triage
from ...errors import GateError
from ..baseline import (
    Baseline,
    apply_baseline,
    load_baseline,
    text_scope,
    write_baseline,
)
from ..model import Finding, GateResult, GateStatus, Tier, number_duplicates
from ..project_env import ProjectEnv, resolve_project_env
from . import engines
from .context import FileContext
from .engines import Diagnostic, EngineRun, EngineSpec
from .environment import Declared, declared_distributions, distribution_of, resolves_in
from .execution import StartupGraph
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
TIER_ORDER = (
    Tier.BREAKS_STARTUP,
    Tier.BREAKS_ON_CALL,
    Tier.WARNING,
    Tier.ENVIRONMENT,
    Tier.UNREACHABLE,
    Tier.NOISE,
)
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
            project = ctx.project_env or resolve_project_env(
                ctx.root,
                manifest_python=ctx.manifest.python,
                manifest_python_version=ctx.manifest.python_version,
                manifest_root=ctx.manifest.root,
                environ={},
            )
            layout = project_layout(ctx)
            with tempfile.TemporaryDirectory(prefix="safeship-static-") as work:
                specs = self.specs(layout, dict(ctx.manifest.legacy), project, Path(work))
                result = _Run(ctx, layout, project).execute(specs, self._timeout)
        except (OSError, ValueError, GateError) as exc:
            result = GateResult(self.name, GateStatus.ERROR, error=f"static gate failed: {exc}")
        result.duration = time.perf_counter() - started
        return result

    def specs(
        self, layout: Layout, legacy: dict[str, str], project: ProjectEnv, work: Path
    ) -> list[EngineSpec]:
        """The three engine commands for ``layout``, in the project's Python.

        ``work`` is a scratch directory for safeship's own ty configuration and, when the
        project has no environment, an empty one (third-party imports resolve nowhere,
        rather than in safeship's own environment)."""
        roots = [str(layout.root / r) if r else str(layout.root) for r in layout.import_roots]
        ruff = engines.find_binary("ruff", self._ruff)
        ty = engines.find_binary("ty", self._ty)
        targets, exclude = layout.targets, layout.exclude
        ruff_argv = engines.ruff_command(targets, legacy, exclude, project.ruff_target)
        graph_argv = engines.graph_command(targets, roots, exclude)
        config = work / "ty.toml"
        config.write_text(engines.TY_CONFIG, encoding="utf-8")
        python = str(project.prefix) if not project.isolated else str(_empty_env(work, project))
        ty_argv = engines.ty_command(targets, roots, exclude, python, project.target, str(config))
        return [
            EngineSpec("ruff", "ruff", ruff, ruff_argv, engines.parse_ruff),
            EngineSpec("graph", "ruff", ruff, graph_argv, engines.parse_graph),
            EngineSpec("ty", "ty", ty, ty_argv, engines.parse_ty),
        ]


class _Run:
    """One run of the gate over one project: engines, triage, hints, then the baseline."""

    def __init__(self, ctx: CheckContext, layout: Layout, project: ProjectEnv) -> None:
        self.ctx = ctx
        self.layout = layout
        self.project = project
        self.startup: StartupGraph | None = None
        self._declared: Declared | None = None
        self.missing: dict[str, list[Diagnostic]] = {}
        self.contexts: dict[str, FileContext] = {}
        self.resolved: dict[str, bool] = {}
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
        self.summary: dict[str, Any] = {"dropped": self.dropped, "python": project.as_dict()}

    def execute(self, specs: list[EngineSpec], timeout: float) -> GateResult:
        # All three start at once. ty could check only what the entries reach, once the
        # graph says what that is; measured, waiting for the graph and passing thousands of
        # paths cost more than the unreachable files save (ty's time goes mostly to the
        # third-party code the reachable files use).
        with engines.started_engines(specs, self.layout.root, timeout) as futures:
            graph = futures["graph"].result()
            self._reachability(graph)
            # The startup is walked, and ruff's findings triaged, while ty runs: on what the
            # engines leave free, rather than after ty for its findings.
            walker = self.startup.walk_in_background() if self.startup is not None else None
            ruff = futures["ruff"].result()
            names = [d for d in ruff.diagnostics if d.rule != "TID251"]
            findings = self._hinted(self._triage(names))
            ty = futures["ty"].result()
            if walker is not None:
                walker.join()
        runs = {"ruff": ruff, "ty": ty, "graph": graph}
        self.summary["engines"] = {name: run.as_dict() for name, run in runs.items()}
        self.errors = [run.error for run in runs.values() if run.error] + self.errors
        if not (ruff.ok or ty.ok):
            return GateResult(
                "static", GateStatus.ERROR, error="; ".join(self.errors), summary=self.summary
            )
        keys = {_key(f) for f in findings}
        findings += self._hinted(self._triage(self._select_ty(ty.diagnostics, keys)))
        findings += self._environment()
        findings += self._legacy(ruff.diagnostics, findings)
        findings = self._baseline(number_duplicates(findings))
        findings.sort(key=lambda f: (TIER_ORDER.index(f.tier), f.path or "", f.line or 0))
        return self._result(findings)

    # -- reachability ----------------------------------------------------------------

    def _reachability(self, run: EngineRun) -> None:
        modules: dict[str, Any] = {"entries": list(self.ctx.entries)}
        self.summary["modules"] = modules
        if not run.ok:
            modules["reachability"] = "unknown (no import graph): every module counts as reachable"
            self.first_party = self._first_party(self._walk_files())
            return
        self.graph = graph = ImportGraph(run.graph, self.modules)
        self.first_party = self._first_party(graph.files)
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
        entries = [e for e in self.ctx.entries if e not in missing]
        self.startup = StartupGraph(
            [p for p in graph.files if not is_test_path(p)],
            self.modules,
            entries,
            _entry_attrs(self.ctx),
            lambda p: _read(self.layout.root / p),
        )

    def _first_party(self, files: Iterable[str]) -> frozenset[str]:
        """Top-level names the project's own code provides. A top-level folder without
        ``__init__.py`` (a migrations folder named ``alembic/``) is a namespace portion:
        it provides nothing when a distribution of that name is installed or declared,
        as the import system prefers a regular package found anywhere on the path."""
        names = set()
        for path in files:
            module = self.modules.module_of(path)
            if not module:
                continue
            top = module.split(".")[0]
            if (
                "." not in module
                or self._is_regular_package(path, top)
                or not (
                    resolves_in(top, self.project.site_packages)
                    or self._declared_set().declares(top)
                    or self._declared_set().declares(distribution_of(top, self._declared_set()))
                )
            ):
                names.add(top)
        return frozenset(names)

    def _is_regular_package(self, path: str, top: str) -> bool:
        for root in self.layout.import_roots:
            base = self.layout.root / root / top if root else self.layout.root / top
            if path.startswith(f"{root}/{top}/" if root else f"{top}/"):
                return (base / "__init__.py").is_file() or (base / "__init__.pyi").is_file()
        return True

    def _declared_set(self) -> Declared:
        if self._declared is None:
            self._declared = declared_distributions(self.layout.root)
        return self._declared

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
        """ty's findings about first-party names that ruff did not already report; its
        unresolved third-party imports are set aside for ``_environment``."""
        kept = []
        search = self._search_paths()
        for diag in diagnostics:
            if _dkey(diag) in keys:
                self.dropped["duplicates"] += 1
            elif diag.owner_kind == "class":
                kept.append(diag)  # first-party or not is read from the file, in _triage
            elif diag.owner_kind == "module" and self._resolves(
                f"{diag.owner}.{diag.symbol}", search
            ):
                # pkgutil.extend_path / namespace packages: the submodule is another
                # directory's portion of the same package.
                self.dropped["merged_namespace"] = self.dropped.get("merged_namespace", 0) + 1
            elif diag.owner_kind == "import" and self._resolves(diag.owner or "", search):
                self.dropped["merged_namespace"] = self.dropped.get("merged_namespace", 0) + 1
            elif diag.owner_kind in ("module", "import") and self._is_first_party(diag.owner):
                kept.append(diag)
            elif diag.owner and diag.owner.split(".")[0] in sys.stdlib_module_names:
                # The standard library: typeshed's stubs, not the code, lack a private name.
                self.dropped["third_party"] += 1
            elif (
                diag.owner_kind in ("module", "import")
                and diag.owner
                and not diag.owner.startswith(".")
            ):
                top = diag.owner.split(".")[0]
                if diag.owner_kind == "import" or not resolves_in(top, self.project.site_packages):
                    # Not installed (ty may have found a folder of that name instead).
                    self.missing.setdefault(top, []).append(diag)
                elif not self.project.isolated:
                    kept.append(diag)  # installed, and it has no such member: a real error
                else:
                    self.dropped["third_party"] += 1
            else:
                self.dropped["third_party"] += 1
        return kept

    def _resolves(self, module: str, search: list[Path]) -> bool:
        if module not in self.resolved:
            self.resolved[module] = resolves_in(module, search)
        return self.resolved[module]

    def _search_paths(self) -> list[Path]:
        roots = [self.layout.root / r if r else self.layout.root for r in self.layout.import_roots]
        return [*roots, *self.project.site_packages]

    def _is_first_party(self, dotted: str | None) -> bool:
        if dotted is None:
            return False
        return dotted.startswith(".") or dotted.split(".")[0] in self.first_party

    def _decide(self, diag: Diagnostic) -> Decision:
        """The tier an import site would get: where it runs decides what a missing
        distribution breaks."""
        text = _read(self.layout.root / diag.path)
        reachable = self.reach.is_reachable(diag.path)
        is_test = is_test_path(diag.path)
        facts = Facts()
        if text is not None and reachable and not is_test:
            if diag.path not in self.contexts:
                self.contexts[diag.path] = FileContext.parse(diag.path, text)
            facts = self.contexts[diag.path].locate(diag.line, diag.column)
        return self._decision(diag, facts, reachable, is_test)

    # -- environment ---------------------------------------------------------------------

    def _environment(self) -> list[Finding]:
        """One ``environment`` finding per declared distribution that the environment
        lacks; an undeclared one is a finding at each import site that can run."""
        out: list[Finding] = []
        declared = self._declared_set()
        where = (
            "the analysis has no project environment (pass --python)"
            if self.project.isolated
            else f"it is not installed in {self.project.prefix}"
        )
        by_distribution: dict[str, list[Diagnostic]] = {}
        for top, sites in sorted(self.missing.items()):
            by_distribution.setdefault(distribution_of(top, declared), []).extend(sites)
        for distribution, sites in by_distribution.items():
            sites.sort(key=lambda d: (d.path, d.line))
            is_declared = declared.declares(distribution)
            if not is_declared and not self.project.isolated:
                decided = [(d, self._decide(d)) for d in sites]
                live = [(d, dec) for d, dec in decided if dec.tier in _LIVE_TIERS]
                self.dropped["third_party"] += len(sites) - len(live)
                for diag, decision in live:
                    out.append(self._undeclared(diag, decision, distribution))
                continue
            # One finding per distribution: where it is first imported by code that can run.
            first = next((d for d in sites if self._decide(d).tier in _LIVE_TIERS), None)
            if first is None:
                self.dropped["third_party"] += len(sites)
                continue
            importers = sorted(
                {
                    self.modules.module_of(d.path) or d.path
                    for d in sites
                    if not is_test_path(d.path)
                }
            )
            said = (
                f"declared in {', '.join(declared.sources)}"
                if is_declared
                else "not declared by the project (it may come with another dependency)"
            )
            shown = ", ".join(importers[:5]) + (" ..." if len(importers) > 5 else "")
            out.append(
                Finding(
                    gate="static",
                    rule="missing-distribution",
                    message=(
                        f"`{distribution}` cannot be resolved: {where}; imported by {shown} "
                        f"({said})"
                    ),
                    tier=Tier.ENVIRONMENT,
                    path=first.path,
                    line=first.line,
                    column=first.column,
                    symbol=distribution,
                    hint=(
                        "install the project's dependencies in its environment and pass it "
                        "with --python (or [tool.safeship] python)"
                    ),
                    blocking=Tier.ENVIRONMENT in self.ctx.block_tiers,
                    extra={
                        "distribution": distribution,
                        "declared": is_declared,
                        "importers": importers,
                        "environment": None if self.project.isolated else str(self.project.prefix),
                    },
                )
            )
        return out

    def _undeclared(self, diag: Diagnostic, decision: Decision, distribution: str) -> Finding:
        at = "imported at startup" if decision.tier is Tier.BREAKS_STARTUP else "imported"
        message = (
            f"`{diag.owner}` is {at} but not a declared dependency, and not installed in "
            f"{self.project.prefix} ({decision.reason})"
        )
        finding = self._finding(
            replace(diag, rule="undeclared-dependency", message=message), decision
        )
        hint = f"declare `{distribution}` in the project's dependencies (pyproject.toml)"
        return replace(finding, message=message, hint=hint)

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
                decision = self._decision(diag, facts, reachable, is_test)
                out.append(self._finding(diag, decision))
        return out

    def _decision(self, diag: Diagnostic, facts: Facts, reachable: bool, is_test: bool) -> Decision:
        if diag.rule == engines.SYNTAX_ERROR:
            facts = replace(facts, syntax_error=True, where=Where.MODULE, in_function=False)
        elif diag.rule == "TID251":
            facts = replace(facts, legacy_reference=True)
        elif diag.owner_kind in ("module", "import") and self._dynamic(diag.owner or ""):
            facts = replace(facts, target_dynamic=True)
        if diag.owner_kind == "module" and not self._is_first_party(diag.owner):
            facts = replace(facts, installed_member=True)
        kwargs: dict[str, Any] = {}
        graph = self.startup
        target = self.project.target_version
        # What runs at startup moves a finding only between breaks-startup and breaks-on-call:
        # the others (noise, unreachable, a legacy warning) never need the walk.
        live = triage(facts, reachable=reachable, is_test=is_test, target=target).tier in (
            Tier.BREAKS_STARTUP,
            Tier.BREAKS_ON_CALL,
        )
        if graph is not None and reachable and not is_test and live:
            at_startup = graph.module_runs_at_startup(diag.path)
            kwargs["module_runs"] = Runs.AT_STARTUP if at_startup else Runs.ON_CALL
            if not at_startup:
                kwargs["module_via"] = self._lazy_via(diag.path)
            unit = None
            if facts.in_function and not (facts.function or "").endswith("<lambda>"):
                unit = graph.function_at(diag.path, diag.line)
                if unit is not None and graph.runs_at_startup(unit):
                    kwargs["function_runs"] = Runs.AT_STARTUP
                    kwargs["function_via"] = " → ".join(graph.chain(unit, diag.line)[:-1])
                else:
                    kwargs["function_runs"] = Runs.ON_CALL
            if not at_startup or kwargs.get("function_runs") is Runs.ON_CALL:
                kwargs["may_break_startup"] = graph.may_run_at_startup(unit)
            if not at_startup and kwargs["may_break_startup"]:
                kwargs["named_by"] = self._named_by_string(diag.path)
        return triage(facts, reachable=reachable, is_test=is_test, target=target, **kwargs)

    def _named_by_string(self, path: str) -> str | None:
        """The module that brings ``path`` into the graph only by writing its dotted name as
        a string (a registry of plugins, ``AGENT_MODULES = {"echo": "app.agents.echo"}``),
        when that module runs at startup; None otherwise. Such a module is what a computed
        ``import_module(name)`` at startup loads."""
        files = self.reach.chain(path)
        if len(files) < 2:
            return None
        parent, child = files[-2], files[-1]
        module = self.modules.module_of(child)
        owner = self.modules.module_of(parent)
        if not module or not owner or not self.startup:
            return None
        if self._sites(parent).get(module) is not None or not self.startup.module_runs_at_startup(
            parent
        ):
            return None
        text = _read(self.layout.root / parent) or ""
        return owner if f'"{module}"' in text or f"'{module}'" in text else None

    def _lazy_via(self, path: str) -> str:
        """``(imported inside `shop.api.read_item`)``: where the import chain turns lazy."""
        files = self.reach.chain(path)
        for parent, child in itertools.pairwise(files):
            target = self.modules.module_of(child)
            scope = self._sites(parent).get(target) if target else None
            module = self.modules.module_of(parent) or parent
            # The first lazy import on the chain that startup code does not run.
            if scope and not (self.startup and self.startup.runs_at_startup(f"{module}.{scope}")):
                return f"(inside `{module}.{scope}`)"
        return "(not by the code that runs at startup)"

    def _finding(self, diag: Diagnostic, decision: Decision) -> Finding:
        chain: tuple[str, ...] = ()
        if self.reach.complete and decision.tier in (Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL):
            chain = self._chain(diag, decision)
        lines = (_read(self.layout.root / diag.path) or "").splitlines()
        source = lines[diag.line - 1].rstrip() if 0 < diag.line <= len(lines) else None
        extra: dict[str, Any] = {"engine": diag.engine, "reason": decision.reason}
        if decision.may_break_startup:
            extra["may_break_startup"] = decision.may_break_startup
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
            extra=extra,
        )

    def _chain(self, diag: Diagnostic, decision: Decision) -> tuple[str, ...]:
        """Calls and imports from an entry to the finding, full dotted names and lines,
        ending with the error that would be raised."""
        error = _error_of(diag)
        graph = self.startup
        if graph is not None and decision.tier is Tier.BREAKS_STARTUP:
            module = self.modules.module_of(diag.path) or diag.path
            unit = (
                graph.function_at(diag.path, diag.line)
                if decision.reason.find("runs at startup") >= 0
                else None
            )
            target = unit or module
            if graph.runs_at_startup(target):
                return (*graph.chain(target, diag.line), error)
        files = self.reach.chain(diag.path)
        return (*render_chain(files, self.modules, self._sites, diag.line), error)

    def _sites(self, path: str) -> dict[str, str | None]:
        if path not in self.sites:
            module = self.modules.module_of(path) or ""
            source = _read(self.layout.root / path) or ""
            self.sites[path] = import_sites(source, module, path.endswith("__init__.py"))
        return self.sites[path]

    def _dynamic(self, module: str) -> bool:
        """Whether the module ``module`` (first-party, or installed in the environment)
        defines names at runtime: a module ``__getattr__``, ``globals()`` writes, or a
        module object that replaces itself in ``sys.modules`` (lazy exports)."""
        if module not in self.dynamic:
            self.dynamic[module] = False
            name = module.lstrip(".")
            rel = name.replace(".", "/")
            candidates = [self.layout.root / c for c in self.modules.candidates(name)]
            for site in self.project.site_packages:
                candidates += [site / f"{rel}.py", site / rel / "__init__.py"]
            for candidate in candidates:
                text = _read(candidate)
                if text is not None:
                    facts = FileContext.parse(str(candidate), text)  # reads, parses nothing
                    installed = not str(candidate).startswith(str(self.layout.root))
                    self.dynamic[module] = (
                        facts.module_getattr
                        or facts.globals_write
                        or "sys.modules[__name__]" in text
                        # an installed package's lazy-export class: not ours to read closely
                        or (installed and "def __getattr__(" in text)
                    )
                    break
            else:  # compiled only: its names cannot be read statically
                self.dynamic[module] = any(
                    next(site.glob(f"{rel}*.so"), None)
                    or next(site.glob(f"{rel}/__init__*.so"), None)
                    for site in self.project.site_packages
                )
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
            # Only the project's own modules: a folder that shadows nothing (a migrations
            # folder named like a distribution) is no place to import a name from.
            files = [
                p
                for p in (self.graph.files if self.graph else ())
                if not is_test_path(p)
                and (self.modules.module_of(p) or "").split(".")[0] in self.first_party
            ]
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


def _empty_env(work: Path, project: ProjectEnv) -> Path:
    """A venv with nothing installed: where ty resolves third-party imports when the project
    has no environment (never safeship's own, whose packages are not the project's)."""
    major, minor = project.target_version
    env = work / "empty-env"
    (env / "lib" / f"python{major}.{minor}" / "site-packages").mkdir(parents=True)
    (env / "pyvenv.cfg").write_text(
        f"home = {Path(project.interpreter).parent}\ninclude-system-site-packages = false\n"
        f"version = {major}.{minor}.0\n",
        encoding="utf-8",
    )
    return env


_LIVE_TIERS = frozenset({Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL, Tier.UNREACHABLE})


def _entry_attrs(ctx: CheckContext) -> list[str]:
    """``module.attr`` of the app's factory or object (``service.app``, ``--entry m:a``)."""
    specs = [ctx.manifest.service.app or "", *getattr(ctx, "entry_specs", ())]
    return [spec.replace(":", ".") for spec in specs if spec.count(":") == 1]


def _error_of(diag: Diagnostic) -> str:
    if diag.rule == engines.SYNTAX_ERROR:
        return "SyntaxError"
    if diag.rule in ("F821", "F822"):
        return f"NameError: {diag.symbol}"
    if diag.rule == "F823":
        return f"UnboundLocalError: {diag.symbol}"
    if diag.owner_kind == "import" or diag.rule == "undeclared-dependency":
        return f"ModuleNotFoundError: {diag.owner or diag.symbol}"
    if diag.owner_kind == "module" and diag.rule == "ty:import-not-found":
        return f"ImportError: cannot import {diag.symbol} from {diag.owner}"
    return f"AttributeError: {diag.symbol}"


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
