"""Which dependency ("spine") each module may be imported on top of, in the imports gate.

Importing module X in a fork of a process that has just imported its dependency D (and
nothing else first-party) leaves the same state as importing X fresh, provided that:

- X imports D at module level, before any other kind of top-level statement (code that
  runs before its imports, e.g. setting an environment variable, must run before D too);
- X is not in D's import closure: in a cycle, which module starts decides the outcome;
- every package above X that D does not import has an inert ``__init__`` (docstring,
  imports, dunder assignments), since it now runs after D instead of before;
- the order of X's top-of-file imports does not matter -- the assumption import sorters
  (isort, ruff's ``I001``) make whenever they reorder them;
- X's fresh import does not nest so deep that the recursion limit could matter: started
  from D, D's imports no longer run nested inside X's, so a fresh ``RecursionError`` could
  pass unnoticed. Modules whose import chains may nest more than ``DEEP_LEVELS`` imports
  deep always start from a pristine process.

Cycles always start from a pristine process. Among the valid dependencies the one with the
largest closure is chosen. D's own spine, and its spine in turn, are valid starting points
for X as long as they hold every package above X that is not inert (``reach``): the worker
falls back on them when D's import failed. At run time the worker also checks that D's
import did not already import X, and if it did, imports X from a pristine process.

Parsing is by regular expressions on the file's text, not ``ast``, so a few thousand files
cost a fraction of a second; a misread only makes a module start from a pristine process.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEEP_LEVELS", "ImportPlan", "plan_imports", "plan_spines"]

DEEP_LEVELS = 60
"""Nested imports beyond which a fresh import may reach the recursion limit: a nested
import costs about 7 of the default limit's 1000 frames, and module bodies need room too."""

_STATEMENT = re.compile(
    r"^(?:import[ \t]+(?P<imp>[^\n#;]+)"
    r"|from[ \t]+(?P<dots>\.*)(?P<mod>[\w.]*)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n#;]+))",
    re.M,
)
_TRIPLE = re.compile(r'("""|\'\'\')[\s\S]*?\1')
_DUNDER = re.compile(r"^__\w+__\s*(?::[^=]+)?=")
_TYPE_CHECKING = re.compile(r"^if\s+(?:typing\.)?TYPE_CHECKING\s*:")


@dataclass(frozen=True)
class ImportPlan:
    """How the worker schedules the imports (see the module docstring)."""

    spines: dict[str, str | None]
    """module -> the dependency whose process it starts from; None: a pristine process."""
    reach: dict[str, int]
    """module -> how many steps up its chain of spines it may start from (0 when pristine)."""
    cost: dict[str, int]
    """module -> estimated first-party module bodies its import runs, its own included."""
    weight: dict[str, int]
    """module -> its cost plus the heaviest chain of modules that start from it: the
    worker starts heavy chains first, so the longest one does not finish last, alone."""
    deep: frozenset[str]
    """modules whose imports may nest deeper than ``DEEP_LEVELS``: always pristine."""
    graph: dict[str, list[str]] = field(default_factory=dict)
    """module -> the first-party modules importing it runs first: its packages, then its
    top-level imports in source order."""

    def startup_order(self, entries: Sequence[str]) -> list[str]:
        """What importing ``entries`` imports, as this plan reads it, each module after
        everything it imports (the order of the source, depth first)."""
        out: list[str] = []
        seen: set[str] = set()
        for entry in entries:
            if entry not in self.graph or entry in seen:
                continue
            seen.add(entry)
            stack = [(entry, iter(self.graph.get(entry, ())))]
            while stack:
                name, children = stack[-1]
                for child in children:
                    if child not in seen and child in self.graph:
                        seen.add(child)
                        stack.append((child, iter(self.graph.get(child, ()))))
                        break
                else:
                    stack.pop()
                    out.append(name)
        return out


class _Module:
    __slots__ = ("ancestors", "deps", "head", "inert", "is_package", "name")

    def __init__(self, name: str, is_package: bool) -> None:
        self.name = name
        self.is_package = is_package
        self.deps: list[str] = []  # first-party modules any top-level import executes
        self.head: list[str] = []  # modules imported before any other statement, in order
        self.inert = True
        self.ancestors: list[str] = []


def _names(text: str) -> list[str]:
    text = text.strip().strip("()")
    return [part.split(" as ")[0].strip() for part in text.replace("\\\n", " ").split(",")]


def _targets(match: re.Match[str], mod: _Module, known: set[str]) -> list[str]:
    """First-party modules an import statement executes, most specific last."""
    found: list[str] = []

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in known and name not in found:
                found.append(name)

    if match.group("imp"):
        for dotted in _names(match.group("imp")):
            add(dotted)
        return found
    level = len(match.group("dots"))
    base = match.group("mod")
    if level:
        package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
        parts = package.split(".") if package else []
        if level - 1 > len(parts):
            return []
        anchor = ".".join(parts[: len(parts) - (level - 1)])
        base = f"{anchor}.{base}".strip(".") if base else anchor
    if not base:
        return []
    add(base)
    for name in _names(match.group("names")):
        if f"{base}.{name}" in known:
            add(f"{base}.{name}")
    return found


def _head(text: str, whole: bool) -> tuple[int, bool]:
    """Offset where the import prefix ends (first statement that is not an import, a
    docstring, a dunder assignment or a TYPE_CHECKING block), and whether the module has no
    other top-level statement at all (inert; only known when ``whole`` file is scanned)."""
    offset = 0
    barrier: int | None = None
    inert = True
    in_string: str | None = None
    depth = 0
    for line in text.splitlines(keepends=True):
        start = offset
        offset += len(line)
        if in_string:
            if line.count(in_string) % 2:
                in_string = None
            continue
        stripped = line.strip()
        for quote in ('"""', "'''"):
            if line.count(quote) % 2:
                in_string = quote
        if depth > 0:
            depth += line.count("(") - line.count(")")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            continue  # inside a block, or a continuation
        if stripped.startswith(("import ", "from ")):
            depth = max(0, line.count("(") - line.count(")"))
            continue
        if stripped[0] in "\"'" or stripped.startswith(("r'", 'r"', "b'", 'b"')):
            continue  # a docstring or a bare string
        if _DUNDER.match(stripped):
            continue
        if _TYPE_CHECKING.match(stripped):
            continue  # its body is indented and never runs
        inert = False
        if barrier is None:
            barrier = start
        if not whole:
            break
    return (barrier if barrier is not None else len(text)), inert


def _strings(text: str) -> tuple[list[int], list[int]]:
    """Start and end offsets of the triple-quoted strings, as ``_TRIPLE.finditer`` finds
    them, with ``str.find`` (several times faster than the regular expression)."""
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    double = text.find('"""')
    single = text.find("'''")
    while double >= 0 or single >= 0:
        at = double if single < 0 or (0 <= double < single) else single
        close = text.find(text[at : at + 3], at + 3)
        if close < 0:
            pos = at + 1
        else:
            starts.append(at)
            ends.append(close + 3)
            pos = close + 3
        if 0 <= double < pos:
            double = text.find('"""', pos)
        if 0 <= single < pos:
            single = text.find("'''", pos)
    return starts, ends


def _statements(text: str) -> list[re.Match[str]]:
    """Top-level import statements: ``_STATEMENT`` tried only where a line starts with
    ``import`` or ``from`` (scanning for those is much faster than a multiline pattern)."""
    found = []
    for keyword in ("import", "from"):
        if text.startswith(keyword):
            match = _STATEMENT.match(text, 0)
            if match:
                found.append(match)
        needle = "\n" + keyword
        pos = text.find(needle)
        while pos >= 0:
            match = _STATEMENT.match(text, pos + 1)
            if match:
                found.append(match)
            pos = text.find(needle, pos + 1)
    found.sort(key=lambda m: m.start())
    return found


def _parse(name: str, text: str | None, is_package: bool, known: set[str]) -> _Module:
    mod = _Module(name, is_package)
    parts = name.split(".")
    mod.ancestors = [a for a in (".".join(parts[:i]) for i in range(1, len(parts))) if a in known]
    if text is None:
        return mod
    barrier, mod.inert = _head(text, whole=is_package)
    starts, ends = _strings(text)
    for match in _statements(text):
        at = match.start()
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and at < ends[i]:
            continue  # "import x" inside a docstring
        targets = [t for t in _targets(match, mod, known) if t != name]
        if at < barrier and targets and targets[-1] not in mod.head:
            mod.head.append(targets[-1])
        mod.deps.extend(t for t in targets if t not in mod.deps)
    return mod


def _components(graph: dict[str, list[str]], order: list[str]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), dependencies before dependents."""
    counter = 0
    low: dict[str, int] = {}
    num: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in order:
        if root in num:
            continue
        work = [(root, iter(graph.get(root, ())))]
        num[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in num:
                    num[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], num[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == num[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                out.append(members)
    return out


def plan_imports(
    modules: Sequence[tuple[str, Path]],
    texts: Mapping[str, str] | None = None,
    *,
    deep_levels: int | None = DEEP_LEVELS,
) -> ImportPlan:
    """Plan every module's starting point (see the module docstring).

    Args:
        modules: ``(module name, file)`` pairs, as ``discover_modules`` returns them.
        texts: the files' contents by module name, when the caller has read them already.
        deep_levels: nesting beyond which a module starts pristine; None: never.
    """
    known = {name for name, _ in modules}
    info: dict[str, _Module] = {}
    for name, path in modules:
        text = texts.get(name) if texts is not None else None
        if text is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = None
        info[name] = _parse(name, text, path.name == "__init__.py", known)
    order = [name for name, _ in modules]
    graph = {name: [*m.ancestors, *m.deps] for name, m in info.items()}
    # Closures as bitsets, and the longest chain of nested imports, per component.
    bit = {name: 1 << i for i, name in enumerate(order)}
    closure: dict[str, int] = {}
    levels: dict[str, int] = {}
    component: dict[str, int] = {}
    for index, members in enumerate(_components(graph, order)):
        bits = 0
        nested = 0
        inside = set(members)
        for member in members:
            component[member] = index
            bits |= bit[member]
            for child in graph[member]:
                if child not in inside:
                    bits |= closure[child]
                    nested = max(nested, levels[child])
        for member in members:
            closure[member] = bits
            levels[member] = nested + len(members)
    deep = frozenset(
        name for name in order if deep_levels is not None and levels[name] > deep_levels
    )
    size = {name: closure[name].bit_count() for name in order}
    spines: dict[str, str | None] = {}
    for name, mod in info.items():
        if name in deep:
            spines[name] = None
            continue
        best, best_size = None, 0
        for dep in (*mod.ancestors, *mod.head):
            # In a cycle with X (same component), D's closure holds X itself.
            if component[dep] == component[name] or size[dep] <= best_size:
                continue
            if _holds_impure(closure[dep], mod, info, bit, skip=dep):
                best, best_size = dep, size[dep]
        spines[name] = best
    reach: dict[str, int] = {}
    cost: dict[str, int] = {}
    for name, mod in info.items():
        spine = spines[name]
        own = closure[name]
        cost[name] = (own & ~closure[spine]).bit_count() if spine else own.bit_count()
        steps = 0
        while spine is not None and _holds_impure(closure[spine], mod, info, bit, skip=spine):
            steps += 1
            spine = spines[spine]
        reach[name] = steps
    children: dict[str, list[str]] = {}
    for name, spine in spines.items():
        if spine is not None:
            children.setdefault(spine, []).append(name)
    weight: dict[str, int] = {}
    for name in _spine_order(spines, order, children):
        weight[name] = cost[name] + max((weight[c] for c in children.get(name, ())), default=0)
    return ImportPlan(spines=spines, reach=reach, cost=cost, weight=weight, deep=deep, graph=graph)


def _holds_impure(
    reach: int, mod: _Module, info: Mapping[str, _Module], bit: Mapping[str, int], skip: str
) -> bool:
    """Whether a process holding ``reach`` already ran every package above ``mod`` whose
    ``__init__`` is not inert (those must run before ``mod``, as in a fresh import)."""
    return all(reach & bit[a] for a in mod.ancestors if a != skip and not info[a].inert)


def _spine_order(
    spines: Mapping[str, str | None], order: list[str], children: Mapping[str, list[str]]
) -> list[str]:
    """Modules with every module that starts from them before them (spines form a forest)."""
    out: list[str] = []
    stack = [name for name in reversed(order) if spines[name] is None]
    while stack:
        name = stack.pop()
        out.append(name)
        stack.extend(children.get(name, ()))
    return list(reversed(out))


def plan_spines(
    modules: Sequence[tuple[str, Path]], texts: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """For each module, the dependency whose fresh import it may start from, or None."""
    return plan_imports(modules, texts).spines
