"""The ``legacy`` gate and ``safeship migrate``: find and rename references to legacy names.

References are found by qualified name (libcst's ``FullyQualifiedNameProvider``), not by
text, so strings, comments, local variables that happen to share the name, and other names
with the same prefix (``OldNameFactory``) are never counted or rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    FullyQualifiedNameProvider,
    MetadataWrapper,
    PositionProvider,
    QualifiedNameSource,
)

from ..model import Finding, GateResult, Tier
from ..runner import CheckContext, python_files, result_from_findings
from .rename import (
    RenameOutcome,
    import_root_for,
    import_targets,
    matches,
    mentions,
    module_info,
    parse_rename,
    rel_path,
    rename_references,
)

__all__ = [
    "LegacyGate",
    "Reference",
    "RenameOutcome",
    "find_references",
    "import_root_for",
    "parse_rename",
    "rename_references",
]


@dataclass(frozen=True)
class Reference:
    name: str
    """The legacy name referred to (a key of ``[legacy]``)."""
    path: str
    """Relative to the scanned root, POSIX."""
    line: int
    column: int
    kind: str
    """``import``, ``attribute`` or ``name``."""
    source_line: str


class _ReferenceVisitor(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (FullyQualifiedNameProvider, PositionProvider)

    def __init__(self, names: Sequence[str], package: str) -> None:
        super().__init__()
        self.names = names
        self.package = package
        self.found: list[tuple[str, int, int, str]] = []

    def _add(self, name: str, node: cst.CSTNode, kind: str) -> None:
        pos = self.get_metadata(PositionProvider, node).start
        self.found.append((name, pos.line, pos.column, kind))

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            hit = matches(get_full_name_for_node(alias.name) or "", self.names)
            if hit:
                self._add(hit, alias, "import")
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        module, targets = import_targets(node, self.package)
        module_hit = matches(module, self.names)
        if module_hit:  # `from legacy.module import x` refers to the legacy module itself
            self._add(module_hit, node, "import")
            return False
        aliases = node.names if not isinstance(node.names, cst.ImportStar) else ()
        for alias, target in zip(aliases, targets, strict=True):
            hit = matches(target, self.names)
            if hit:
                self._add(hit, alias, "import")
        return False

    def _qualified(self, node: cst.CSTNode, kind: str) -> bool:
        for qname in self.get_metadata(FullyQualifiedNameProvider, node, set()):
            # Definitions and uses inside the defining module are LOCAL: the legacy name may
            # be kept there as a compatibility alias, which is not a reference to migrate.
            if qname.source is not QualifiedNameSource.IMPORT:
                continue
            hit = matches(qname.name, self.names)
            if hit:
                self._add(hit, node, kind)
                return False  # count `a.b.Old.attr` once, not once per part
        return True

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        return self._qualified(node, "attribute")

    def visit_Name(self, node: cst.Name) -> bool:
        return self._qualified(node, "name")


def find_references(
    root: Path,
    names: Iterable[str],
    *,
    import_root: Path | None = None,
    exclude: Sequence[str] = (),
    unparsable: list[str] | None = None,
) -> list[Reference]:
    """Every reference to ``names`` in the ``.py`` files under ``root``, sorted by location.

    Args:
        root: directory (or one file) to scan.
        names: fully qualified legacy names (classes, functions or modules).
        import_root: the ``sys.path`` entry module names are computed from, for files under
            it; other files use the directory above their top-level package.
        exclude: globs relative to ``root`` to leave out.
        unparsable: if given, receives the relative paths of files that mention a name but
            could not be parsed (their references are not counted).
    """
    wanted = tuple(dict.fromkeys(names))
    root = Path(root).resolve()
    base = Path(import_root).resolve() if import_root else None
    refs: list[Reference] = []
    if not wanted:
        return refs
    for path in python_files(root, root=root, exclude=exclude):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not mentions(text, wanted):
            continue
        rel = rel_path(path, root if root.is_dir() else root.parent)
        try:
            module = cst.parse_module(text)
        except cst.ParserSyntaxError:
            if unparsable is not None:
                unparsable.append(rel)
            continue
        info = module_info(path, base)
        visitor = _ReferenceVisitor(wanted, info.package)
        try:
            MetadataWrapper(module, cache={FullyQualifiedNameProvider: info}).visit(visitor)
        except Exception:  # libcst metadata can fail on exotic code; never crash the gate
            if unparsable is not None:
                unparsable.append(rel)
            continue
        lines = text.splitlines()
        for name, line, column, kind in visitor.found:
            source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            refs.append(Reference(name, rel, line, column, kind, source))
    refs.sort(key=lambda r: (r.path, r.line, r.column))
    return refs


class LegacyGate:
    """Counts and lists references to each name in the manifest's ``[legacy]`` table.

    Findings are warnings: they tell how much migration is left, they do not block unless
    the environment's policy lists the ``warning`` tier.
    """

    name = "legacy"

    def run(self, ctx: CheckContext) -> GateResult:
        legacy: Mapping[str, str] = ctx.manifest.legacy
        if not legacy:
            return result_from_findings(
                self.name, [], {"names": 0, "references": {}, "note": "no [legacy] names"}
            )
        import_root = (
            ctx.manifest.resolve(ctx.manifest.service.app_dir) if ctx.manifest.path else None
        )
        # The manifest's `code` is what the service runs; tests and fixtures elsewhere in the
        # repository may mention legacy names on purpose, and scanning them costs the most.
        scanned = _code_dir(ctx)
        unparsable: list[str] = []
        refs = find_references(
            ctx.root / scanned if scanned else ctx.root,
            legacy,
            import_root=import_root,
            exclude=ctx.manifest.gates.exclude,
            unparsable=unparsable,
        )
        if scanned:
            refs = [replace(ref, path=f"{scanned}/{ref.path}") for ref in refs]
            unparsable = [f"{scanned}/{rel}" for rel in unparsable]
        blocking = Tier.WARNING in ctx.block_tiers
        findings = [
            Finding(
                gate=self.name,
                rule="legacy-reference",
                message=f"{ref.kind} of legacy name {ref.name}",
                tier=Tier.WARNING,
                path=ref.path,
                line=ref.line,
                column=ref.column + 1,
                source_line=ref.source_line,
                hint=f"use {legacy[ref.name]}; `safeship migrate --rename "
                f"{ref.name}={legacy[ref.name]}` rewrites every reference",
                symbol=ref.name,
                blocking=blocking,
            )
            for ref in refs
        ]
        findings.extend(
            Finding(
                gate=self.name,
                rule="legacy-unparsable",
                message="file mentions a legacy name but could not be parsed; "
                "its references were not counted",
                tier=Tier.WARNING,
                path=rel,
                hint="fix the syntax error (the static gate reports it)",
            )
            for rel in unparsable
        )
        counts = {name: 0 for name in legacy}
        files: dict[str, set[str]] = {name: set() for name in legacy}
        for ref in refs:
            counts[ref.name] += 1
            files[ref.name].add(ref.path)
        summary = {
            "names": len(legacy),
            "references": counts,
            "files": {name: len(paths) for name, paths in files.items()},
            "total": len(refs),
            "unparsable": len(unparsable),
            "scanned": scanned or ".",
        }
        return result_from_findings(self.name, findings, summary)


def _code_dir(ctx: CheckContext) -> str | None:
    """The manifest's ``service.code`` relative to the checked root, when it lies inside it."""
    manifest = ctx.manifest
    if manifest.path is None or not manifest.service.code:
        return None
    root = ctx.root.resolve()
    try:
        rel = manifest.code_dir.resolve().relative_to(root).as_posix()
    except ValueError:
        return None
    return rel if rel != "." and (root / rel).is_dir() else None
