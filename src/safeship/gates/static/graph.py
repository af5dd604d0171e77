"""The first-party import graph: what the entry modules import, and through which chain.

The edges come from ``ruff analyze graph`` (file -> files it imports, including imports inside
functions). This module adds what the interpreter does implicitly -- importing ``a.b.c`` runs
``a/__init__.py`` and ``a/b/__init__.py`` first -- walks the graph breadth-first from the entry
modules, and keeps one shortest chain per reachable module. Whether an edge is lazy (the import
sits inside a function) is read from the importing module's text, only for modules on a chain
that is rendered.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..baseline import enclosing_blocks

if TYPE_CHECKING:
    from ...config import Manifest
    from ..runner import CheckContext

__all__ = [
    "ImportGraph",
    "Layout",
    "ModuleMap",
    "Reach",
    "definitions",
    "entry_module",
    "import_sites",
    "layout_for",
    "name_origin",
    "project_layout",
    "render_chain",
]


@dataclass(frozen=True)
class ModuleMap:
    """Maps project-relative POSIX paths to dotted module names and back.

    ``roots`` are the import roots (``sys.path`` entries) relative to the project root, most
    specific first; ``""`` is the project root itself.
    """

    roots: tuple[str, ...] = ("",)

    def module_of(self, path: str) -> str | None:
        """``pkg.mod`` for ``src/pkg/mod.py`` (string operations: called for every finding)."""
        stem, dot, suffix = path.rpartition(".")
        if not dot or suffix not in ("py", "pyi"):
            return None
        for root in self.roots:
            if root and not stem.startswith(root + "/"):
                continue
            parts = stem[len(root) + 1 :].split("/") if root else stem.split("/")
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts) if parts and all(parts) else None
        return None

    def candidates(self, module: str) -> list[str]:
        """The files that could hold ``module``, in import-root order."""
        rel = module.replace(".", "/")
        out = []
        for root in self.roots:
            base = f"{root}/{rel}" if root else rel
            out += [f"{base}/__init__.py", f"{base}.py"]  # a package wins, as on import
        return out

    def top_level_names(self, files: Iterable[str]) -> frozenset[str]:
        names = set()
        for path in files:
            module = self.module_of(path)
            if module:
                names.add(module.split(".")[0])
        return frozenset(names)


@dataclass(frozen=True)
class Layout:
    """What to check and how module names resolve, relative to the project root."""

    root: Path
    targets: tuple[str, ...]
    import_roots: tuple[str, ...]
    exclude: tuple[str, ...]


def project_layout(ctx: CheckContext) -> Layout:
    """The checked paths (the manifest's ``service.code``, else the root) and import roots
    (``service.app_dir``, ``src/`` when present, then the root)."""
    return layout_for(ctx.root, ctx.manifest)


def layout_for(root: Path, manifest: Manifest) -> Layout:
    """``project_layout`` from a root and a manifest."""
    root = root.resolve()
    targets: list[str] = []
    roots: list[str] = []
    if manifest.path is not None:
        code = _inside(root, manifest.code_dir) if manifest.service.code else None
        if code and (root / code).exists():
            targets.append(code)
        app_dir = _inside(root, manifest.resolve(manifest.service.app_dir))
        if app_dir:
            roots.append(app_dir)
    if (root / "src").is_dir() and "src" not in roots:
        roots.append("src")
    roots.append("")
    return Layout(root, tuple(targets or ["."]), tuple(roots), tuple(manifest.gates.exclude))


def entry_module(spec: str, layout: Layout) -> tuple[str, str | None] | None:
    """An entry as given -- a module (``shop.main``), ``module:attr``, or a file path
    (``src/shop/main.py``) -- as ``(module, attr)``; None when no file of the project holds
    that module."""
    spec = spec.strip()
    module, _, attr = spec.partition(":")
    modules = ModuleMap(layout.import_roots)
    if module.endswith((".py", ".pyi")) or "/" in module or "\\" in module:
        path = Path(module)
        if not path.is_absolute():
            path = (Path.cwd() / path) if (Path.cwd() / path).exists() else layout.root / path
        try:
            rel = path.resolve().relative_to(layout.root).as_posix()
        except ValueError:
            return None
        found = modules.module_of(rel) if path.is_file() else None
        return (found, attr or None) if found else None
    if not module or not all(part.isidentifier() for part in module.split(".")):
        return None
    for candidate in modules.candidates(module):
        if (layout.root / candidate).is_file():
            return module, attr or None
    return None


def _inside(root: Path, path: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(root).as_posix()
    except ValueError:
        return None
    return None if rel == "." else rel


@dataclass
class Reach:
    """The result of walking the graph from the entry files."""

    parents: dict[str, str | None] = field(default_factory=dict)
    """Reachable file -> the file it was first reached from (None for an entry)."""
    complete: bool = True
    """False when reachability is unknown (no graph or no entry): every file counts as reachable."""

    def is_reachable(self, path: str) -> bool:
        return not self.complete or path in self.parents

    def chain(self, path: str) -> list[str]:
        """Files from an entry to ``path``, both included; empty when not reachable."""
        if path not in self.parents:
            return []
        out = [path]
        seen = {path}
        parent = self.parents[path]
        while parent is not None and parent not in seen:
            out.append(parent)
            seen.add(parent)
            parent = self.parents[parent]
        return out[::-1]


@dataclass
class ImportGraph:
    edges: dict[str, list[str]]
    modules: ModuleMap

    def __post_init__(self) -> None:
        self._add_package_edges()

    @property
    def files(self) -> set[str]:
        return set(self.edges)

    def _add_package_edges(self) -> None:
        """Importing ``a.b`` runs ``a/__init__.py``: an edge from each module to its package."""
        known = set(self.edges)
        for targets in list(self.edges.values()):
            known.update(targets)
        for path in list(known):
            parent = _package_init(path)
            while parent is not None and parent not in known and parent != path:
                parent = _package_init(parent)
            if parent is not None and parent != path:
                deps = self.edges.setdefault(path, [])
                if parent not in deps:
                    deps.append(parent)
        for path in known:
            self.edges.setdefault(path, [])

    def resolve_entries(self, entries: Sequence[str]) -> tuple[list[str], list[str]]:
        """Entry module names -> (files found, module names not found)."""
        found, missing = [], []
        for module in entries:
            path = next((p for p in self.modules.candidates(module) if p in self.edges), None)
            if path is None:
                missing.append(module)
            else:
                found.append(path)
        return found, missing

    def reach(self, entry_files: Sequence[str]) -> Reach:
        """Breadth-first from the entries: one shortest chain per reachable file."""
        parents: dict[str, str | None] = {}
        queue: deque[str] = deque()
        for entry in entry_files:
            if entry not in parents:
                parents[entry] = None
                queue.append(entry)
        while queue:
            current = queue.popleft()
            for target in sorted(self.edges.get(current, ())):
                if target not in parents:
                    parents[target] = current
                    queue.append(target)
        return Reach(parents=parents)


def _package_init(path: str) -> str | None:
    pure = PurePosixPath(path)
    directory = pure.parent if pure.name != "__init__.py" else pure.parent.parent
    if str(directory) in ("", "."):
        return None
    return str(directory / "__init__.py")


_IMPORT = re.compile(
    r"^([ \t]*)(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(.*)|import[ \t]+(.*))$", re.M
)
_STRING_MODULE = re.compile(r"""["']([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)["']""")


def import_sites(source: str, module: str, is_package: bool) -> dict[str, str | None]:
    """Every module name a module imports -> the function it is imported in, None at top level.

    Top level wins when a module is imported in both places. String constants that look like
    dotted module names count too (``importlib.import_module("pkg.x")``). Read from the text
    (import lines and indentation), not parsed: it runs for every module on a rendered chain.
    """
    package = module if is_package else module.rpartition(".")[0]
    lines = source.splitlines()
    sites: dict[str, str | None] = {}
    offsets = _line_offsets(source)

    def record(name: str, line: int, indented: bool) -> None:
        where = _function_of(lines, line) if indented else None
        if name not in sites or (sites[name] is not None and where is None):
            sites[name] = where

    for match in _IMPORT.finditer(source):
        line = bisect_right(offsets, match.start())
        indented = bool(match.group(1))
        if match.group(4) is not None:  # import a.b as c, d
            for part in _names(match.group(4)):
                record(part, line, indented)
            continue
        base = _absolute(match.group(2).lstrip(".") or None, _dots(match.group(2)), package)
        if base is None:
            continue
        record(base, line, indented)
        names = match.group(3)
        follow = line
        while "(" in names and ")" not in names and follow < len(lines):
            names += " " + lines[follow]  # from x import (\n a,\n b)
            follow += 1
        for name in _names(names.replace("(", " ").replace(")", " ")):
            record(f"{base}.{name}" if base else name, line, indented)
    for match in _STRING_MODULE.finditer(source):
        line = bisect_right(offsets, match.start())
        record(match.group(1), line, bool(lines[line - 1][:1].isspace()))
    return sites


def _line_offsets(source: str) -> list[int]:
    offsets = [0]
    index = source.find("\n")
    while index >= 0:
        offsets.append(index + 1)
        index = source.find("\n", index + 1)
    return offsets


def _names(text: str) -> list[str]:
    text = text.split("#", 1)[0]
    return [p.split(" as ")[0].strip() for p in text.split(",") if p.strip() not in ("", "\\")]


def _dots(module: str) -> int:
    return len(module) - len(module.lstrip("."))


def _function_of(lines: list[str], line: int) -> str | None:
    """``Loader.load`` when ``line`` sits in a function (a method here); None in a class body
    or at module level, which run at import."""
    blocks = enclosing_blocks(lines, line)
    defs = [i for i, (kind, _) in enumerate(blocks) if kind == "def"]
    return ".".join(name for _, name in blocks[: defs[-1] + 1]) if defs else None


def _absolute(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base)


def render_chain(
    files: Sequence[str],
    modules: ModuleMap,
    sites_of: Callable[[str], Mapping[str, str | None]],
    line: int | None,
) -> tuple[str, ...]:
    """``("app.main", "app.init (inside _register)", "app.agents.goals:119")`` for a chain
    of files, full dotted names.

    An element says ``(inside F)`` when the next module is imported inside its function ``F``.
    """
    out = []
    for i, path in enumerate(files):
        name = modules.module_of(path) or path
        if i + 1 < len(files):
            target = modules.module_of(files[i + 1])
            scope = sites_of(path).get(target) if target else None
            out.append(f"{name} (inside {scope})" if scope else name)
        else:
            out.append(f"{name}:{line}" if line else name)
    return tuple(out)


_DEFINITION = re.compile(
    r"^(?:async[ \t]+def|def|class)[ \t]+(\w+)|^(\w+)[ \t]*(?::[^=\n]*)?=(?!=)", re.M
)


def definitions(
    files: Iterable[str], modules: ModuleMap, read: Callable[[str], str | None]
) -> dict[str, list[str]]:
    """Top-level names of first-party modules -> the modules defining them.

    A text scan (a regex over column-0 ``def``/``class``/assignments), not a parse: it runs
    over every module, so it must stay cheap.
    """
    index: dict[str, list[str]] = {}
    for path in sorted(files):
        module = modules.module_of(path)
        text = read(path) if module else None
        if not text:
            continue
        for match in _DEFINITION.finditer(text):
            index.setdefault(match.group(1) or match.group(2), []).append(module or "")
    return index


def name_origin(tree: ast.Module, pos: tuple[int, int]) -> str | None:
    """The dotted origin of the root name of the attribute expression starting at ``pos``
    (line, byte column): what an import bound it to, ``"."`` for a class of this module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (node.lineno, node.col_offset) == pos:
            root: ast.expr = node
            while isinstance(root, ast.Attribute):
                root = root.value
            return _bindings(tree).get(root.id) if isinstance(root, ast.Name) else None
    return None


def _bindings(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = "." * node.level + (node.module or "")
            sep = "" if module.endswith(".") else "."
            for alias in node.names:
                if alias.name != "*":
                    out[alias.asname or alias.name] = f"{module}{sep}{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                out[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ClassDef):
            out.setdefault(node.name, ".")
    return out
