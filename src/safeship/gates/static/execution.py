"""What runs when the app is imported and started, for the static gate's triage.

Modules are parsed lazily, as ``core.triage.startup_reach`` walks the startup call graph
from the entry modules: a module nothing at startup imports is never parsed here. The walk
answers, for a finding, whether its module body runs at startup, whether its function is
called at startup (transitively: ``app = create_app()``, a settings factory, a lifespan
hook), the chain of calls and imports that gets there, and -- when the graph cannot be
resolved statically -- why it may still run at startup.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from ...core.triage import Edge, Step, startup_reach
from .graph import ModuleMap
from .startup import Dynamic, ModuleUnits, read_units, skeleton

_V = TypeVar("_V")

__all__ = ["StartupGraph"]


class StartupGraph:
    """The startup call graph of one project.

    Args:
        files: the project's first-party files (project-relative POSIX paths).
        modules: their module names.
        entries: the entry modules; ``entry_attrs`` the ``module.attr`` of app factories
            (``uvicorn --factory``): called at startup when they are functions.
        read: the text of a file, None when unreadable.
    """

    def __init__(
        self,
        files: Iterable[str],
        modules: ModuleMap,
        entries: Sequence[str],
        entry_attrs: Sequence[str],
        read: Callable[[str], str | None],
    ) -> None:
        self.modules = modules
        self.read = read
        self.paths: dict[str, str] = {}
        # A package (pkg/__init__.py) wins over a module of the same name (pkg.py), as
        # in the import system.
        for path in sorted(files, key=lambda p: (not p.endswith("/__init__.py"), p)):
            module = modules.module_of(path)
            if module and module not in self.paths:
                self.paths[module] = path
        self.units: dict[str, ModuleUnits] = {}
        self.edges = _lazy_edges(self)
        self.aliases = _lazy_aliases(self)
        self.properties = _LazyProperties(self)
        self.entries = list(entries)
        self.entry_attrs = list(entry_attrs)
        self._reach: dict[str, Step] | None = None
        # The walk may run in a background thread (``walk_in_background``): one at a time.
        self._lock = threading.RLock()
        self._dynamic: dict[str | None, tuple[str, Dynamic]] | None = None

    # -- loading --------------------------------------------------------------------------

    def load(self, module: str) -> ModuleUnits | None:
        if module not in self.paths:
            return None
        with self._lock:
            return self._load(module)

    def _load(self, module: str) -> ModuleUnits | None:
        if module not in self.units:
            path = self.paths[module]
            text = self.read(path) or ""
            tree, ends = _parse(text, path)
            if tree is None:
                self.units[module] = ModuleUnits(module, edges={module: []})
            else:
                is_package = path.endswith("__init__.py") or path.endswith("__init__.pyi")
                try:
                    self.units[module] = read_units(
                        module, is_package, tree, text.splitlines(), ends
                    )
                except RecursionError:  # absurdly nested code: its body only, no edges
                    self.units[module] = ModuleUnits(module, edges={module: []})
        return self.units[module]

    def owner(self, name: str) -> str | None:
        """The longest module that is a prefix of ``name`` (``name`` itself included)."""
        head = name
        while head:
            if head in self.paths:
                return head
            head = head.rpartition(".")[0]
        return None

    # -- the walk -------------------------------------------------------------------------

    def walk_in_background(self) -> threading.Thread:
        """Start the walk in a thread of low CPU priority: it runs on what the engines leave
        free, and anything that needs it waits for it."""

        def walk() -> None:
            with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's own nice
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            _ = self.reach

        thread = threading.Thread(target=walk, name="startup-walk", daemon=True)
        thread.start()
        return thread

    @property
    def reach(self) -> dict[str, Step]:
        with self._lock:
            return self._walk()

    def _walk(self) -> dict[str, Step]:
        if self._reach is None:
            roots: list[str] = []
            for entry in self.entries:
                parts = entry.split(".")
                roots += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            for attr in self.entry_attrs:  # a factory function, or a class whose __init__ runs
                roots += [attr, f"{attr}.__init__"]
            # The walk makes many small objects and no cycles worth collecting meanwhile:
            # collections during it would only traverse them again and again.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._reach = startup_reach(
                    self.edges, self.aliases, roots, self.paths.keys(), self.properties
                )
            finally:
                if collecting:
                    gc.enable()
        return self._reach

    def module_runs_at_startup(self, path: str) -> bool:
        module = self.modules.module_of(path)
        return module is not None and module in self.reach

    def function_at(self, path: str, line: int) -> str | None:
        module = self.modules.module_of(path)
        units = self.load(module) if module else None
        return units.function_at(line) if units else None

    def runs_at_startup(self, unit: str) -> bool:
        return unit in self.reach

    def chain(self, unit: str, line: int) -> tuple[str, ...]:
        """``("shop.main:40 app = create_app()", "shop.factory.create_app:12")``."""
        out: list[str] = []
        current: str | None = unit
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            step = self.reach.get(current)
            if step is None or step.parent is None or step.edge is None:
                break
            out.append(_element(step.parent, step.edge))
            current = step.parent
        out.reverse()
        out.append(f"{unit}:{line}")
        return tuple(out)

    def may_run_at_startup(self, unit: str | None) -> str | None:
        """Why code that the walk did not reach may still run at startup, or None.

        A method may be called through dynamic dispatch (``obj.setup()`` on an object whose
        type is unknown); anything may run through a computed ``getattr``/``import_module``.
        """
        sites = self._dynamic_sites()
        if unit is not None and self._is_method(unit):
            name = unit.rpartition(".")[2]
            # Dunder methods run through their protocol (a call of the class, an operator),
            # which the graph follows or which is no dispatch on a name.
            if name in sites and not (name.startswith("__") and name.endswith("__")):
                where, site = sites[name]
                return (
                    f"may break startup: {where}:{site.line} `{site.text}` calls `.{name}()` "
                    "at startup on an object whose type is not known statically"
                )
        if None in sites:
            where, site = sites[None]
            return (
                f"may break startup: {where}:{site.line} `{site.text}` calls or imports a "
                "name computed at run time, which the call graph cannot follow"
            )
        return None

    def _is_method(self, unit: str) -> bool:
        parent = unit.rpartition(".")[0]
        module = self.owner(unit)
        units = self.load(module) if module else None
        return bool(units) and parent not in self.paths and parent not in units.functions  # type: ignore[union-attr]

    def _dynamic_sites(self) -> dict[str | None, tuple[str, Dynamic]]:
        if self._dynamic is None:
            found: dict[str | None, tuple[str, Dynamic]] = {}
            for unit in self.reach:
                module = self.owner(unit)
                units = self.units.get(module) if module else None
                for site in units.dynamic.get(unit, ()) if units else ():
                    found.setdefault(site.attribute, (unit, site))
            self._dynamic = found
        return self._dynamic


def _parse(text: str, path: str) -> tuple[ast.Module | None, dict[int, int]]:
    """The module's skeleton (function bodies elided), else the whole module; None when
    it does not parse."""
    elided = skeleton(text)
    if elided is not None:
        try:
            return ast.parse(elided[0], filename=path), elided[1]
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
    try:
        return ast.parse(text, filename=path), {}
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None, {}


def _element(unit: str, edge: Edge) -> str:
    return f"{unit}:{edge.line} {edge.text}" if edge.text else f"{unit}:{edge.line}"


class _LazyIndex(Mapping[str, _V]):
    """A name -> value index over the graph's modules that reads a module only when one of its
    names is asked for: ``find`` answers one name (None when absent), ``table`` gives a read
    module's whole table for iteration."""

    def __init__(
        self,
        graph: StartupGraph,
        find: Callable[[str], _V | None],
        table: Callable[[ModuleUnits], Mapping[str, Any]],
    ) -> None:
        self.graph, self._find, self._table = graph, find, table

    def __getitem__(self, name: str) -> _V:
        found = self._find(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        for units in list(self.graph.units.values()):
            yield from self._table(units)

    def __len__(self) -> int:
        return sum(len(self._table(u)) for u in self.graph.units.values())


def _lazy_edges(graph: StartupGraph) -> _LazyIndex[list[Edge]]:
    """Unit -> edges, parsing the unit's module the first time it is asked for."""

    def find(name: str) -> list[Edge] | None:
        module = graph.owner(name)
        units = graph.load(module) if module else None
        return units.edges_of(name) if units else None

    return _LazyIndex(graph, find, lambda units: units.edges)


def _lazy_aliases(graph: StartupGraph) -> _LazyIndex[str]:
    """``module.name`` -> what the import binding ``name`` in ``module`` refers to."""

    def find(name: str) -> str | None:
        module = name.rpartition(".")[0]
        if module not in graph.paths:
            return None
        units = graph.load(module)
        return units.aliases.get(name) if units else None

    return _LazyIndex(graph, find, lambda units: units.aliases)


class _LazyProperties(AbstractSet[str]):
    """The function units that are properties, reading their module when asked."""

    def __init__(self, graph: StartupGraph) -> None:
        self.graph = graph

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        module = self.graph.owner(name)
        units = self.graph.load(module) if module else None
        return bool(units) and name in units.properties  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[str]:
        for units in list(self.graph.units.values()):
            yield from units.properties

    def __len__(self) -> int:
        return sum(len(u.properties) for u in self.graph.units.values())
