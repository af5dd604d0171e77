"""Renaming references to a legacy name (``safeship migrate``), and the name-resolution
helpers the legacy gate shares with it.

The rewrite is libcst's ``RenameCommand``, made safe for two of its gaps: relative imports
(turned absolute first, where they reach the name) and files that also import the old
module by path (where it can drop the new name's import; added back, or the file is left
alone rather than broken).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.commands.rename import RenameCommand
from libcst.codemod.visitors import AddImportsVisitor, ImportItem
from libcst.helpers import (
    ModuleNameAndPackage,
    calculate_module_and_package,
    get_full_name_for_node,
)
from libcst.metadata import MetadataWrapper, ScopeProvider

from ...errors import UsageError
from ..runner import python_files

__all__ = [
    "RenameOutcome",
    "import_root_for",
    "import_targets",
    "matches",
    "mentions",
    "module_info",
    "parse_rename",
    "rel_path",
    "rename_references",
]

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass
class RenameOutcome:
    changed: list[str] = field(default_factory=list)
    unparsable: list[str] = field(default_factory=list)
    refused: list[tuple[str, list[str]]] = field(default_factory=list)
    """Files left untouched because the rewrite would leave these names undefined."""


def parse_rename(spec: str) -> tuple[str, str]:
    """``"pkg.mod.Old=pkg.mod.New"`` -> ``("pkg.mod.Old", "pkg.mod.New")``.

    Raises:
        UsageError: not two dotted names separated by ``=``.
    """
    old, sep, new = (part.strip() for part in spec.partition("="))
    if not sep or not _DOTTED.match(old) or not _DOTTED.match(new):
        raise UsageError(
            f"--rename {spec!r}: expected OLD=NEW with fully qualified dotted names",
            hint="e.g. --rename myapp.db.DatabaseSessionManager=myapp.db.SessionManager",
        )
    if old == new:
        raise UsageError(f"--rename {spec!r}: OLD and NEW are the same name")
    return old, new


def matches(qname: str, names: Sequence[str]) -> str | None:
    for name in names:
        if qname == name or qname.startswith(name + "."):
            return name
    return None


def _absolute(package: str, level: int, module: str) -> str:
    """The absolute module of ``from <level dots><module> import ...`` inside ``package``."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    base = parts[: len(parts) - (level - 1)] if level - 1 <= len(parts) else []
    return ".".join([*base, module] if module else base)


def import_targets(node: cst.ImportFrom, package: str) -> tuple[str, list[str]]:
    module = get_full_name_for_node(node.module) if node.module else ""
    absolute = _absolute(package, len(node.relative), module or "")
    if isinstance(node.names, cst.ImportStar):
        return absolute, []
    targets = []
    for alias in node.names:
        name = get_full_name_for_node(alias.name) or ""
        targets.append(f"{absolute}.{name}" if absolute else name)
    return absolute, targets


def import_root_for(path: Path) -> Path:
    """The ``sys.path`` entry that holds ``path``: the first directory above it (or it
    itself) that is not a package, i.e. has no ``__init__.py``."""
    directory = Path(path).resolve()
    if directory.is_file():
        directory = directory.parent
    while (directory / "__init__.py").exists() and directory.parent != directory:
        directory = directory.parent
    return directory


def module_info(path: Path, import_root: Path | None) -> ModuleNameAndPackage:
    """Module and package of ``path``: relative to ``import_root`` when the file is under it,
    else to the nearest directory above its package (needed to resolve relative imports)."""
    base = import_root if import_root and path.is_relative_to(import_root) else None
    try:
        return calculate_module_and_package(str(base or import_root_for(path)), str(path))
    except ValueError:  # not under the base: treat it as a top-level module
        return ModuleNameAndPackage(name=path.stem, package="")


def mentions(text: str, names: Iterable[str]) -> bool:
    # A reference always spells the last component literally; skip parsing files without it.
    return any(name.rsplit(".", 1)[-1] in text for name in names)


def rel_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class _AbsolutizeImports(cst.CSTTransformer):
    """Turn relative imports that reach the legacy name into absolute ones, because the
    rename codemod only understands absolute imports."""

    def __init__(self, old: str, package: str) -> None:
        super().__init__()
        self.old = old
        self.package = package

    def leave_ImportFrom(
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.ImportFrom:
        if not updated_node.relative:
            return updated_node
        module, targets = import_targets(updated_node, self.package)
        related = [module, *targets]
        if not module or not any(
            t == self.old or self.old.startswith(t + ".") or t.startswith(self.old + ".")
            for t in related
        ):
            return updated_node
        expr = cst.parse_expression(module)
        assert isinstance(expr, cst.Name | cst.Attribute)
        return updated_node.with_changes(relative=(), module=expr)


def _unbound(module: cst.Module) -> set[str]:
    """Names read somewhere in ``module`` that nothing binds (not even a builtin)."""
    scopes = MetadataWrapper(module).resolve(ScopeProvider)
    unbound: set[str] = set()
    for scope in {s for s in scopes.values() if s is not None}:
        for access in scope.accesses:
            if not access.referents and isinstance(access.node, cst.Name):
                unbound.add(access.node.value)
    return unbound


def _rename_module(
    tree: cst.Module, old: str, new: str, info: ModuleNameAndPackage, filename: str
) -> tuple[cst.Module, set[str]]:
    """Rewrite one module; return it and the names the rewrite left undefined."""

    def context() -> CodemodContext:
        return CodemodContext(
            filename=filename, full_module_name=info.name, full_package_name=info.package
        )

    before = _unbound(tree)
    absolute = tree.visit(_AbsolutizeImports(old, info.package))
    updated = RenameCommand(context(), old, new).transform_module(absolute)
    missing = _unbound(updated) - before
    new_module, _, short = new.rpartition(".")
    if missing == {short} and new_module:
        # RenameCommand can drop the import of the new name when the file also imports the
        # old module by path (``import pkg.mod``); add it back rather than break the file.
        item = ImportItem(new_module, short)
        updated = AddImportsVisitor(context(), [item]).transform_module(updated)
        missing = _unbound(updated) - before
    return updated, missing


def rename_references(
    root: Path,
    old: str,
    new: str,
    *,
    write: bool = True,
    import_root: Path | None = None,
    exclude: Sequence[str] = (),
) -> RenameOutcome:
    """Rewrite every reference to ``old`` as ``new`` with libcst's ``RenameCommand``.

    Returns:
        The files changed (or that would change, with ``write=False``), those that mention
        the name but could not be parsed, and those left alone because the rewrite would
        have left a name undefined.
    """
    root = Path(root).resolve()
    scan_root = root if root.is_dir() else root.parent
    base = Path(import_root).resolve() if import_root else None
    outcome = RenameOutcome()
    for path in python_files(root, root=scan_root, exclude=exclude):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not mentions(text, (old,)):
            continue
        rel = rel_path(path, scan_root)
        info = module_info(path, base)
        try:
            updated, missing = _rename_module(cst.parse_module(text), old, new, info, str(path))
        except cst.ParserSyntaxError:
            outcome.unparsable.append(rel)
            continue
        if missing:
            outcome.refused.append((rel, sorted(missing)))
            continue
        if updated.code != text:
            outcome.changed.append(rel)
            if write:
                path.write_text(updated.code, encoding="utf-8")
    return outcome
