"""Turn import outcomes into findings of the ``imports`` gate.

One broken module usually breaks every module that imports it, with the same error at the
same line; those are reported once, at the line that raised, listing the other modules.
Messages are compared with their random parts (addresses, hex ids, uuids) normalised, so a
failure that names an object's address is still reported once. Modules that fail because a
third-party distribution is missing are reported once per distribution (``deps``).
"""

from __future__ import annotations

import functools
import linecache
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..model import Finding, Tier

__all__ = ["ImportOutcome", "outcomes_to_findings"]

Frame = tuple[str, int, str, str]

_CHAIN_FRAMES = 6
_STARTUP_CHAIN_FRAMES = 12
# Random parts of exception messages. Each branch is a plain run of one character class:
# linear time on any message.
_RANDOM = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b0x[0-9a-fA-F]+\b"
    r"|\b(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}\b"
)
_HINTS = {
    "ModuleNotFoundError": "a module it imports is missing: install the dependency or fix the import",
    "ImportError": "a name it imports no longer exists there: fix the import",
    "NameError": "a name evaluated at import time is not defined: restore its import or definition",
    "AttributeError": "a member evaluated at import time does not exist: fix the reference",
    "SyntaxError": "the file does not parse: fix the syntax error",
}


@dataclass(frozen=True)
class ImportOutcome:
    module: str
    status: str
    """``ok``, ``error`` (raised), ``hung`` (killed at the deadline) or ``crashed`` (died)."""
    exc_type: str | None = None
    message: str | None = None
    frames: tuple[Frame, ...] = ()
    """``(file, line, function, source)``, outermost first."""
    detail: str | None = None
    phase: str = "fresh"
    """``startup`` (imported by the app's startup, or the entry that failed), ``lazy``
    (imported into a copy of the started app) or ``fresh`` (from a pristine interpreter)."""
    missing: str | None = None
    """The module a ``ModuleNotFoundError`` names (also when it caused another error)."""
    window: tuple[float, float] | None = None
    """When the import ran (wall clock), to tell which import wrote a file."""
    wrote: tuple[str, ...] = ()
    """Absolute paths in the project's tree the import wrote to, as its audit hook saw."""


def normalise(message: str | None) -> str:
    """``message`` with uuids, addresses and hex ids replaced: the part that tells two
    failures apart."""
    return _RANDOM.sub("…", message or "")


def _relative(filename: str, bases: Sequence[Path]) -> str | None:
    return _relative_to(filename, tuple(str(b) for b in bases))


@functools.lru_cache(maxsize=65536)
def _relative_to(filename: str, bases: tuple[str, ...]) -> str | None:
    # Plain string tests: a tree's failures carry tens of thousands of frames.
    if not os.path.isabs(filename):
        return None
    parts = filename.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return None
    for base in bases:
        prefix = base.rstrip(os.sep) + os.sep
        if filename.startswith(prefix):
            return filename[len(prefix) :].replace(os.sep, "/")
    return None


def own_frames(frames: Sequence[Frame], bases: Sequence[Path]) -> list[Frame]:
    """The frames in the project's tree, with paths relative to it, outermost first."""
    out = []
    for filename, line, func, source in frames:
        rel = _relative(filename, bases)
        if rel is not None:
            out.append((rel, line, func, source))
    return out


def _source(rel: str, line: int, bases: Sequence[Path]) -> str | None:
    for base in bases:
        text = linecache.getline(str(base / rel), line)
        if text:
            return text.strip() or None
    return None


def _hint(outcome: ImportOutcome, env: str, python: str = "python") -> str:
    if outcome.status == "hung":
        return (
            "module-level code blocks (network, lock, sleep, input): move it into a "
            "startup phase or a function"
        )
    if outcome.status == "crashed":
        return "the interpreter died while importing (os._exit, a signal, or a native crash)"
    short = (outcome.exc_type or "").rsplit(".", 1)[-1]
    specific = _HINTS.get(short)
    repro = f"reproduce with: SAFESHIP_ENV={env} {python} -c 'import {outcome.module}'"
    return f"{specific}; {repro}" if specific else repro


def _message(outcome: ImportOutcome, redact: Callable[[str], str]) -> str:
    if outcome.status == "error":
        return redact(f"importing {outcome.module} failed: {outcome.exc_type}: {outcome.message}")
    if outcome.status == "hung":
        return f"{outcome.module} hung while importing ({outcome.detail})"
    return redact(f"importing {outcome.module} crashed: {outcome.detail}")


def tier_of(
    outcomes: Sequence[ImportOutcome], strict: bool, block_tiers: Collection[Tier]
) -> tuple[Tier, bool]:
    """The tier of a failure shared by ``outcomes``, and whether it blocks: in strict mode
    every failure is an ``error`` that blocks; otherwise a failure of the app's startup
    breaks startup, and one met only by a module imported later breaks on call, each
    blocking as the environment's policy says."""
    if strict:
        return Tier.ERROR, True
    startup = any(o.phase == "startup" for o in outcomes)
    tier = Tier.BREAKS_STARTUP if startup else Tier.BREAKS_ON_CALL
    return tier, tier in block_tiers


def outcomes_to_findings(
    outcomes: Sequence[ImportOutcome],
    files: Mapping[str, Path],
    *,
    root: Path,
    import_root: Path,
    env: str,
    redact: Callable[[str], str] = lambda text: text,
    strict: bool = True,
    block_tiers: Collection[Tier] = (Tier.BREAKS_STARTUP,),
    python: str = "python",
) -> list[Finding]:
    """One finding per distinct failure, located at its last first-party frame."""
    bases = [root.resolve(), import_root.resolve()]
    groups: dict[tuple[object, ...], list[tuple[ImportOutcome, list[Frame]]]] = {}
    hung: dict[str, tuple[object, ...]] = {}
    late = []
    for outcome in outcomes:
        if outcome.status == "ok":
            continue
        own = own_frames(outcome.frames, bases)
        if (outcome.exc_type or "").endswith(".ImportHung"):
            late.append((outcome, own))  # it imports a module that hung: that one's finding
            continue
        loc = own[-1][:2] if own else None
        message = normalise(outcome.message)
        key: tuple[object, ...] = (outcome.status, outcome.exc_type, message, loc)
        if loc is None:
            key = (*key, outcome.module)
        groups.setdefault(key, []).append((outcome, own))
        if outcome.status == "hung":
            hung.setdefault(outcome.module, key)
    for outcome, own in late:
        culprit = (outcome.message or "").split(" ", 1)[0]
        key = hung.get(culprit) or ("error", outcome.exc_type, outcome.message, None)
        groups.setdefault(key, []).append((outcome, own))
    findings = []
    for members in groups.values():
        home = None
        for outcome, own in members:
            module_file = _relative(str(files.get(outcome.module, "")), bases)
            if own and module_file == own[-1][0]:
                home = (outcome, own)
                break
        # The startup's own failure, when there is one, is the one to tell.
        startup = [(o, f) for o, f in members if o.phase == "startup"]
        if startup:
            outcome, own = startup[0]
        else:
            outcome, own = home or members[0]
        tier, blocking = tier_of([o for o, _ in members], strict, block_tiers)
        frames = _STARTUP_CHAIN_FRAMES if tier is Tier.BREAKS_STARTUP else _CHAIN_FRAMES
        module_path = _relative(str(files.get(outcome.module, "")), bases)
        last = own[-1] if own else None
        others = sorted(o.module for o, _ in members if o.module != outcome.module)
        message = _message(outcome, redact)
        if others:
            shown = ", ".join(others[:5]) + (
                f" and {len(others) - 5} more" if len(others) > 5 else ""
            )
            message += f" (also breaks the import of {shown})"
        findings.append(
            Finding(
                gate="imports",
                rule=f"import-{outcome.status}",
                message=message,
                tier=tier,
                path=last[0] if last else module_path,
                line=last[1] if last else None,
                source_line=redact(last[3] or _source(last[0], last[1], bases) or "") or None
                if last
                else None,
                hint=_hint(outcome, env, python),
                chain=tuple(f"{f}:{n} in {fn}" for f, n, fn, _ in own[-frames:]),
                symbol=outcome.module,
                scope=last[2] if last and last[2] != "<module>" else None,
                blocking=blocking,
                extra={
                    "module": outcome.module,
                    "status": outcome.status,
                    "exception": outcome.exc_type,
                    "phase": outcome.phase,
                    "modules": sorted(o.module for o, _ in members),
                },
            )
        )
    findings.sort(key=lambda f: (f.path or "", f.line or 0, f.message))
    return findings
