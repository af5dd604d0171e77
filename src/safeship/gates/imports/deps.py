"""Missing third-party distributions: which one a missing module belongs to, and whether the
project declares it.

A module is mapped to its distribution by ``importlib.metadata.packages_distributions()``,
asked in the project's interpreter (a distribution may be installed there with a module
missing), then in this one (the project may lack what safeship has), then by a few
well-known names whose module differs from the distribution (``yaml`` is PyYAML), and last
by the module's own top-level name. Declarations are read from ``pyproject.toml`` (PEP 621
and poetry), ``requirements*.txt`` and ``setup.cfg``.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

from ..model import Finding, Tier
from ..runner import CheckContext
from .findings import ImportOutcome, own_frames, tier_of
from .redaction import Redactor

__all__ = [
    "declared_distributions",
    "dependency_findings",
    "distributions_of",
    "normalise_name",
    "split_missing",
    "what_to_do",
]

_PROBE_TIMEOUT = 20.0
_WELL_KNOWN = {
    "PIL": "Pillow",
    "attr": "attrs",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jose": "python-jose",
    "jwt": "PyJWT",
    "magic": "python-magic",
    "multipart": "python-multipart",
    "psycopg2": "psycopg2-binary",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PROBE = (
    "import json, sys\n"
    "from importlib.metadata import packages_distributions\n"
    "wanted = set(json.loads(sys.argv[1]))\n"
    "print(json.dumps({k: v for k, v in packages_distributions().items() if k in wanted}))\n"
)


def normalise_name(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions_of(
    modules: Iterable[str],
    python: str | None = None,
    flags: Sequence[str] = (),
    known: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """Top-level module name -> distribution name, for each of ``modules`` (dotted names).

    ``known``: what the project's interpreter already told (the import worker asks it at
    the end of its run); without it, ``python`` is asked."""
    tops = sorted({m.split(".")[0] for m in modules if m})
    found: dict[str, str] = {}
    if known is not None:
        found.update({k: v[0] for k, v in known.items() if k in tops and v})
    elif python and tops:
        try:
            done = subprocess.run(
                [python, *flags, "-c", _PROBE, json.dumps(tops)],
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT,
                check=False,
            )
            data = json.loads(done.stdout or "{}")
        except (OSError, ValueError, subprocess.TimeoutExpired):
            data = {}
        if isinstance(data, dict):
            found.update({k: v[0] for k, v in data.items() if isinstance(v, list) and v})
    if not flags:  # safeship's packages are the project's only when it runs with them
        own = packages_distributions()
        for top in tops:
            if top not in found and own.get(top):
                found[top] = own[top][0]
    for top in tops:
        found.setdefault(top, _WELL_KNOWN.get(top, top))
    return found


def declared_distributions(root: Path) -> dict[str, str]:
    """Normalised distribution name -> the file that declares it."""
    out: dict[str, str] = {}

    def add(requirements: Iterable[Any], where: str) -> None:
        for item in requirements:
            if not isinstance(item, str):
                continue
            match = _NAME.match(item)
            if match:
                out.setdefault(normalise_name(match.group(1)), where)

    pyproject = _toml(root / "pyproject.toml")
    project = pyproject.get("project", {})
    add(project.get("dependencies", []), "pyproject.toml")
    for extra in (project.get("optional-dependencies") or {}).values():
        add(extra if isinstance(extra, list) else [], "pyproject.toml")
    poetry = pyproject.get("tool", {}).get("poetry", {})
    add((poetry.get("dependencies") or {}).keys(), "pyproject.toml")
    for group in (poetry.get("group") or {}).values():
        if isinstance(group, dict):
            add((group.get("dependencies") or {}).keys(), "pyproject.toml")
    for path in sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        add((ln for ln in lines if not ln.lstrip().startswith(("-", "#"))), path.name)
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(setup_cfg, encoding="utf-8")
            requires = parser.get("options", "install_requires", fallback="")
        except (configparser.Error, UnicodeDecodeError):
            requires = ""
        add(requires.splitlines(), "setup.cfg")
    return out


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def split_missing(
    outcomes: Sequence[ImportOutcome], first_party: set[str]
) -> tuple[list[ImportOutcome], list[ImportOutcome]]:
    """Failures because a third-party module is missing, and the rest."""
    deps, rest = [], []
    for outcome in outcomes:
        missing = outcome.missing
        if outcome.status == "error" and missing and missing.split(".")[0] not in first_party:
            deps.append(outcome)
        else:
            rest.append(outcome)
    return deps, rest


def what_to_do(interpreter: Mapping[str, Any]) -> str:
    if interpreter.get("isolated"):
        return (
            "third-party modules are missing: no project environment was found, so none "
            "counts as installed; pass --python with the project's venv or interpreter"
        )
    return (
        f"third-party modules are missing from {interpreter['python']} "
        f"({interpreter['source']}): install the project's dependencies there "
        "(e.g. pip install -e . or -r requirements.txt), or pass --python with the "
        "environment that has them"
    )


def dependency_findings(
    outcomes: Sequence[ImportOutcome],
    files: Mapping[str, Path],
    ctx: CheckContext,
    strict: bool,
    python: str,
    flags: Sequence[str],
    interpreter: Mapping[str, Any],
    redact: Redactor,
    known: Mapping[str, Sequence[str]] | None = None,
) -> list[Finding]:
    """One finding per missing distribution, with the modules that need it."""
    if not outcomes:
        return []
    dists = distributions_of([o.missing or "" for o in outcomes], python, flags, known)
    declared = declared_distributions(ctx.root)
    groups: dict[str, list[ImportOutcome]] = {}
    for outcome in outcomes:
        top = (outcome.missing or "").split(".")[0]
        groups.setdefault(dists.get(top, top), []).append(outcome)
    findings = []
    for dist, members in sorted(groups.items()):
        tops = sorted({(o.missing or "").split(".")[0] for o in members})
        where = declared.get(normalise_name(dist)) or next(
            (declared[normalise_name(t)] for t in tops if normalise_name(t) in declared), None
        )
        modules = sorted(o.module for o in members)
        # Declared (or no project environment to judge by): the environment lacks it, as
        # the static gate says too. Undeclared: the code imports what it never asked for.
        environment = bool(where) or bool(interpreter.get("isolated"))
        if environment:
            tier, blocking = Tier.ENVIRONMENT, Tier.ENVIRONMENT in ctx.block_tiers
        else:
            tier, blocking = tier_of(members, strict, ctx.block_tiers)
        shown = ", ".join(modules[:5]) + (
            f" and {len(modules) - 5} more" if len(modules) > 5 else ""
        )
        declared_text = (
            f"declared in {where}"
            if where
            else "NOT declared by the project (pyproject.toml, requirements*.txt, setup.cfg)"
        )
        first = next((o for o in members if o.phase == "startup"), members[0])
        path = files.get(first.module)
        # Where the import of the missing module is: the last first-party frame.
        own = own_frames(first.frames, [ctx.root.resolve()])
        at = own[-1] if own else None
        findings.append(
            Finding(
                gate="imports",
                rule="import-missing-dependency" if environment else "import-undeclared-dependency",
                message=redact(
                    f"{dist} is not installed in {interpreter['python']}: "
                    f"{len(modules)} module(s) import {', '.join(tops)}: {shown}; "
                    f"{declared_text}"
                ),
                tier=tier,
                path=at[0]
                if at
                else path.relative_to(ctx.root).as_posix()
                if path and path.is_relative_to(ctx.root)
                else None,
                line=at[1] if at else None,
                source_line=redact(at[3]) or None if at else None,
                chain=tuple(f"{f}:{n} in {fn}" for f, n, fn, _ in own[-12:]),
                hint=(
                    f"install the project's dependencies into {interpreter['python']}, or pass "
                    "--python with the environment that has them"
                    if where
                    else f"add {dist} to the project's dependencies, then install it"
                ),
                symbol=dist,
                blocking=blocking,
                extra={
                    "distribution": dist,
                    "missing": tops,
                    "declared": where,
                    "modules": modules,
                    "phase": first.phase,
                },
            )
        )
    return findings
