"""Which dependency ("spine") each module may be imported on top of, in the imports gate.

Importing module X in a fork of a process that has just imported its dependency D (and
nothing else first-party) leaves the same state as importing X fresh, provided that:

- X imports D at module level, before any other kind of top-level statement (code that
  runs before its imports, e.g. setting an environment variable, must run before D too);
- X is not in D's import closure: in a cycle, which module starts decides the outcome;
- every package above X that D does not import has an inert ``__init__`` (docstring,
  imports, dunder assignments), since it now runs after D instead of before;
- the order of X's top-of-file imports does not matter -- the assumption import sorters
  (isort, ruff's ``I001``) make whenever they reorder them.

Cycles always start from a pristine process. Among the valid dependencies the one with the
largest closure is chosen. At run time the worker also checks that D's import did not
already import X, and if it did, imports X from a pristine process.

Parsing is by regular expressions on the file's text, not ``ast``, so a few thousand files
cost milliseconds; a misread only makes a module start from a pristine process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["plan_spines"]

_STATEMENT = re.compile(
    r"^(?:import[ \t]+(?P<imp>[^\n#;]+)"
    r"|from[ \t]+(?P<dots>\.*)(?P<mod>[\w.]*)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n#;]+))",
    re.M,
)
_TRIPLE = re.compile(r'("""|\'\'\')[\s\S]*?\1')
_DUNDER = re.compile(r"^__\w+__\s*(?::[^=]+)?=")
_TYPE_CHECKING = re.compile(r"^if\s+(?:typing\.)?TYPE_CHECKING\s*:")


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


def _closures(graph: dict[str, list[str]], order: list[str]) -> dict[str, int]:
    """Bitset of each module's transitive closure (itself included), via Tarjan's SCCs."""
    index_of = {name: i for i, name in enumerate(order)}
    closure: dict[str, int] = {}
    counter = 0
    low: dict[str, int] = {}
    num: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
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
                bits = 0
                for member in members:
                    bits |= 1 << index_of[member]
                for member in members:
                    for child in graph.get(member, ()):
                        if child not in members:
                            bits |= closure[child]
                for member in members:
                    closure[member] = bits
    return closure


def plan_spines(modules: Sequence[tuple[str, Path]]) -> dict[str, str | None]:
    """For each module, the dependency whose fresh import it may start from, or None."""
    known = {name for name, _ in modules}
    info: dict[str, _Module] = {}
    for name, path in modules:
        mod = _Module(name, path.name == "__init__.py")
        parts = name.split(".")
        mod.ancestors = [
            a for a in (".".join(parts[:i]) for i in range(1, len(parts))) if a in known
        ]
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            info[name] = mod
            continue
        barrier, mod.inert = _head(text, whole=mod.is_package)
        strings = [m.span() for m in _TRIPLE.finditer(text)]
        for match in _STATEMENT.finditer(text):
            if any(start < match.start() < end for start, end in strings):
                continue  # "import x" inside a docstring
            targets = [t for t in _targets(match, mod, known) if t != name]
            if match.start() < barrier and targets and targets[-1] not in mod.head:
                mod.head.append(targets[-1])
            mod.deps.extend(t for t in targets if t not in mod.deps)
        info[name] = mod
    order = [name for name, _ in modules]
    graph = {name: [*m.ancestors, *m.deps] for name, m in info.items()}
    closure = _closures(graph, order)
    bit = {name: 1 << i for i, name in enumerate(order)}
    spines: dict[str, str | None] = {}
    for name, mod in info.items():
        impure = [a for a in mod.ancestors if not info[a].inert]
        candidates = [*mod.ancestors, *mod.head]
        best, best_size = None, 0
        for dep in candidates:
            reach = closure.get(dep, 0)
            if reach & bit[name] or not all(reach & bit[a] for a in impure if a != dep):
                continue
            size = reach.bit_count()
            if size > best_size:
                best, best_size = dep, size
        spines[name] = best
    return spines
