"""What the imports left behind in the checked tree.

The imports run with their working directory and ``HOME`` in a temporary directory and their
bytecode caches outside the tree, so a clean project's tree is left byte for byte as it was.
What a module still writes into the tree (a path built from its own ``__file__``) shows as a
difference between two snapshots of ``(path, size, mtime_ns)``, taken before and after. The
files are reported, never deleted: they are the project's, and the user decides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import Finding, Tier
from .findings import ImportOutcome

__all__ = ["Change", "diff", "snapshot", "write_findings"]

# Never the project's own state: version control, environments, caches of other tools (the
# gates run concurrently, and the static gate's engines may keep caches) and safeship's own.
_SKIP = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".safeship",
    }
)

Snapshot = dict[str, tuple[int, int, bool]]


@dataclass(frozen=True)
class Change:
    path: str
    """Relative to the root, POSIX separators."""
    kind: str
    """``created``, ``modified`` or ``deleted``."""
    mtime_ns: int | None
    is_dir: bool


def snapshot(root: Path) -> Snapshot:
    """``relative path -> (size, mtime_ns, is_dir)`` of everything under ``root``."""
    out: Snapshot = {}
    base = str(root)
    stack = [base]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            rel = os.path.relpath(entry.path, base).replace(os.sep, "/")
            if is_dir:
                if entry.name in _SKIP or os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    continue
                out[rel] = (0, 0, True)  # a directory's mtime moves with its files
                stack.append(entry.path)
            else:
                out[rel] = (st.st_size, st.st_mtime_ns, False)
    return out


def diff(before: Snapshot, after: Snapshot, root: Path) -> list[Change]:
    """Created, modified and deleted paths; a created directory stands for what it holds."""
    changes: list[Change] = []
    created_dirs: list[str] = []
    for rel in sorted(after):
        _size, mtime, is_dir = after[rel]
        if any(rel.startswith(d + "/") for d in created_dirs):
            continue
        old = before.get(rel)
        if old is None:
            if is_dir:
                created_dirs.append(rel)
                try:
                    mtime = os.stat(root / rel).st_mtime_ns
                except OSError:
                    mtime = 0
            changes.append(Change(rel, "created", mtime or None, is_dir))
        elif not is_dir and old != after[rel]:
            changes.append(Change(rel, "modified", mtime, False))
    gone: list[str] = []
    for rel in sorted(before):
        if rel in after or any(rel.startswith(d + "/") for d in gone):
            continue
        if before[rel][2]:
            gone.append(rel)  # a deleted directory stands for what it held
        changes.append(Change(rel, "deleted", None, before[rel][2]))
    return changes


def write_findings(
    changes: Sequence[Change],
    outcomes: Sequence[ImportOutcome],
    startup: Mapping[str, Any] | None,
    entries: Sequence[str],
    root: Path,
) -> list[Finding]:
    """One warning per path the imports wrote into the tree, naming the import that wrote
    it: as its audit hook saw, else by the file's time stamp against when each ran."""
    label = f"{', '.join(entries) or (startup or {}).get('module')} (the app's startup)"
    seen: dict[str, set[str]] = {}
    base = str(root.resolve())
    for outcome in outcomes:
        for path in outcome.wrote:
            seen.setdefault(outcome.module, set()).add(os.path.relpath(path, base))
    for path in (startup or {}).get("wrote") or ():
        seen.setdefault(label, set()).add(os.path.relpath(str(path), base))
    windows = [(o.module, o.window) for o in outcomes if o.window and o.phase != "startup"]
    if startup and startup.get("t"):
        windows.append((label, tuple(startup["t"])))
    findings = []
    for change in changes:
        rel = change.path.replace("/", os.sep)
        who = sorted(
            m
            for m, paths in seen.items()
            if any(p == rel or p.startswith(rel + os.sep) for p in paths)
        )
        what = "directory " if change.is_dir else ""
        message = f"importing {' or '.join(who[:3])} {change.kind} {what}{change.path} in the "
        message += "project's tree"
        if not who:
            # Not seen by the audit hook (strict mode has none; native code; or another
            # process, such as a gate running meanwhile): told by time, and said so. File
            # time stamps come from a clock coarser than the windows' (a few ms).
            when = (change.mtime_ns or 0) / 1e9
            who = sorted(m for m, w in windows if w and w[0] - 0.011 <= when <= w[1] + 0.001)
            during = f" while {' or '.join(who[:3])} was importing" if who else ""
            message = (
                f"{what}{change.path} was {change.kind} in the project's tree{during} "
                "(by an import, or by another process meanwhile)"
            )
        findings.append(
            Finding(
                gate="imports",
                rule="import-wrote-file",
                message=message,
                tier=Tier.WARNING,
                path=change.path,
                hint="write to a temporary or configured directory, at startup rather than "
                "at import; the gate leaves the path as it is",
                symbol=who[0] if who else None,
                extra={"change": change.kind, "importers": who},
            )
        )
    return findings
