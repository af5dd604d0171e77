"""The static engines, run as subprocesses with deadlines: ruff, ty and ``ruff analyze graph``.

We write no type checker. Each engine is one command line and one parser of its JSON output;
whatever goes wrong (binary missing, crash, deadline, output that is not JSON) comes back as an
``EngineRun`` with a status and an error, never as an exception.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TIMEOUT",
    "RUFF_RULES",
    "SYNTAX_ERROR",
    "TY_CONFIG",
    "TY_RULES",
    "Diagnostic",
    "EngineRun",
    "EngineSpec",
    "find_binary",
    "graph_command",
    "parse_graph",
    "parse_ruff",
    "parse_ty",
    "ruff_command",
    "run_engines",
    "started_engines",
    "target_version",
    "ty_command",
]

DEFAULT_TIMEOUT = float(os.environ.get("SAFESHIP_STATIC_TIMEOUT", "300"))
RUFF_RULES = ("F821", "F822", "F823")
TY_RULES = ("import-not-found", "missing-attribute")
SYNTAX_ERROR = "invalid-syntax"
TY_CONFIG = """\
# safeship's own ty configuration: the project's ty.toml or [tool.ty] never changes the rules.
[analysis]
respect-type-ignore-comments = false
"""


@dataclass(frozen=True)
class Diagnostic:
    """One engine finding, before triage. ``path`` is project-relative, POSIX."""

    engine: str
    rule: str
    message: str
    path: str
    line: int
    column: int
    symbol: str | None = None
    owner: str | None = None
    """For ty: the module (``Module `m` has no member``) or class the member is missing from."""
    owner_kind: str | None = None
    """``module``, ``class``, ``object`` or ``import`` (a module that cannot be resolved)."""


@dataclass
class EngineRun:
    name: str
    status: str = "ok"
    """``ok``, ``missing``, ``crashed``, ``timeout`` or ``bad-output``."""
    version: str | None = None
    duration: float = 0.0
    error: str | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    graph: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "version": self.version,
            "duration_s": round(self.duration, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class EngineSpec:
    """One command to run. ``tool`` is the program (``ruff`` runs both ``ruff`` and ``graph``);
    ``binary`` is its path, None when it was not found."""

    name: str
    tool: str
    binary: str | None
    argv: tuple[str, ...]
    parse: Any
    """``(stdout, root) -> list[Diagnostic] | dict[str, list[str]]``; raises ValueError."""


def find_binary(name: str, override: str | os.PathLike[str] | None = None) -> str | None:
    """The engine binary: an explicit path, ``SAFESHIP_<NAME>``, the venv's, then PATH."""
    explicit = override or os.environ.get(f"SAFESHIP_{name.upper()}")
    if explicit:
        path = Path(explicit)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def target_version() -> str:
    """The running interpreter as ruff's ``--target-version``, for callers that know no
    project (the gate passes the project's own). Clamped to what ruff knows."""
    return f"py3{min(max(sys.version_info.minor, 7), 14)}"


def ruff_command(
    targets: Sequence[str],
    legacy: Mapping[str, str],
    exclude: Sequence[str] = (),
    target: str | None = None,
) -> tuple[str, ...]:
    """``target`` is ruff's ``--target-version`` (``py312``): the project's Python, so that
    syntax valid there is never a finding. ``--isolated`` and ``--ignore-noqa``: the
    project's configuration and ``# noqa`` comments never silence the gate (its baseline
    does)."""
    rules = [*RUFF_RULES, "TID251"] if legacy else list(RUFF_RULES)
    argv = ["check", "--isolated", "--no-cache", "--exit-zero", "--output-format", "json"]
    argv += ["--ignore-noqa", "--select", ",".join(rules)]
    argv += ["--target-version", target or target_version()]
    for old, new in sorted(legacy.items()):
        key = f"lint.flake8-tidy-imports.banned-api.{json.dumps(old)}.msg"
        argv += ["--config", f"{key} = {json.dumps(f'use {new}')}"]
    if exclude:
        argv += ["--extend-exclude", ",".join(exclude)]
    return (*argv, "--", *targets)


def graph_command(
    targets: Sequence[str], import_roots: Sequence[str], exclude: Sequence[str] = ()
) -> tuple[str, ...]:
    # TYPE_CHECKING imports never run, so they make nothing reachable.
    argv = ["analyze", "graph", "--isolated", "--direction", "dependencies"]
    argv += ["--detect-string-imports", "--min-dots", "1", "--no-type-checking-imports"]
    argv += ["--config", f"src = {json.dumps([r or '.' for r in import_roots])}"]
    if exclude:
        argv += ["--config", f"extend-exclude = {json.dumps(list(exclude))}"]
    return (*argv, "--", *targets)


def ty_command(
    targets: Sequence[str],
    import_roots: Sequence[str],
    exclude: Sequence[str] = (),
    python: str | None = sys.prefix,
    python_version: str | None = None,
    config_file: str | None = None,
) -> tuple[str, ...]:
    """``python`` is the environment third-party imports resolve in (the project's; an empty
    one when it has none); ``python_version`` the project's target (``3.12``).

    ``config_file`` is safeship's own ty configuration (``TY_CONFIG``): given explicitly, ty
    reads no ``ty.toml`` and no ``[tool.ty]``, so the project's overrides, excludes and
    extra paths never change what the gate finds."""
    argv = ["check", "--output-format", "gitlab", "--no-progress", "--color", "never"]
    argv += ["--exit-zero", "--ignore", "all"]
    if config_file:
        argv += ["--config-file", config_file]
    if python:
        argv += ["--python", python]
    if python_version:
        argv += ["--python-version", python_version]
    for rule in TY_RULES:
        argv += ["--error", rule]
    # The checked tree's import roots are first-party, whatever project holds it.
    argv += ["--config", f"environment.root = {json.dumps([r or '.' for r in import_roots])}"]
    for pattern in exclude:
        argv += ["--exclude", pattern]
    return (*argv, "--", *targets)


@contextmanager
def started_engines(
    specs: Sequence[EngineSpec], root: Path, timeout: float = DEFAULT_TIMEOUT
) -> Generator[dict[str, Future[EngineRun]]]:
    """Start every engine at once, each with its deadline; yield their futures.

    The caller can work on the first results while the slower engines still run. Leaving the
    block waits for all of them, which the deadlines bound.
    """
    with ThreadPoolExecutor(max_workers=max(len(specs), 1), thread_name_prefix="engine") as pool:
        yield {s.name: pool.submit(_run_one, s, root, timeout) for s in specs}


def run_engines(
    specs: Sequence[EngineSpec], root: Path, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, EngineRun]:
    """Run every engine at once (total time is the slowest, not the sum), each with a deadline."""
    with started_engines(specs, root, timeout) as futures:
        return {name: future.result() for name, future in futures.items()}


_VERSIONS: dict[str, str | None] = {}


def _version(binary: str) -> str | None:
    if binary not in _VERSIONS:
        try:
            done = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=15, check=False
            )
            _VERSIONS[binary] = done.stdout.strip().split()[-1] if done.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            return None
    return _VERSIONS[binary]


def _run_one(spec: EngineSpec, root: Path, timeout: float) -> EngineRun:
    run = EngineRun(spec.name)
    tool = spec.tool
    if spec.binary is None:
        run.status = "missing"
        run.error = (
            f"{spec.name}: the `{tool}` binary was not found (looked at SAFESHIP_{tool.upper()}, "
            f"{Path(sys.executable).parent}, PATH); install it with `pip install {tool}`"
        )
        return run
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [spec.binary, *spec.argv],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )
    except subprocess.TimeoutExpired:
        run.duration = time.perf_counter() - start
        run.status = "timeout"
        run.error = (
            f"{spec.name}: no answer within {timeout:.0f}s; killed (set SAFESHIP_STATIC_TIMEOUT)"
        )
        return run
    except OSError as exc:
        run.duration = time.perf_counter() - start
        run.status = "missing"
        run.error = f"{spec.name}: cannot run {spec.binary}: {exc.strerror or exc}"
        return run
    run.duration = time.perf_counter() - start
    run.version = _version(spec.binary)
    if done.returncode not in (0, 1):
        run.status = "crashed"
        run.error = f"{spec.name}: exited with code {done.returncode}: {_tail(done.stderr)}"
        return run
    try:
        parsed = spec.parse(done.stdout, root)
    except (ValueError, KeyError, TypeError) as exc:
        run.status = "bad-output"
        run.error = f"{spec.name}: output is not the expected JSON ({exc}): {_tail(done.stderr)}"
        return run
    if isinstance(parsed, dict):
        run.graph = parsed
    else:
        run.diagnostics = parsed
    return run


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output on stderr)"


def _relative(filename: str, root: Path) -> str:
    path = Path(filename)
    if path.is_absolute():
        try:
            path = path.relative_to(root)
        except ValueError:
            return path.as_posix()
    return path.as_posix()


_BACKTICKED = re.compile(r"`([^`]+)`")


def parse_ruff(stdout: str, root: Path) -> list[Diagnostic]:
    """ruff's ``--output-format json``. Syntax errors (code null or ``invalid-syntax``) become
    one ``invalid-syntax`` diagnostic per file: the first one is the one to fix."""
    items = json.loads(stdout or "[]")
    if not isinstance(items, list):
        raise ValueError("expected a JSON list")
    out: list[Diagnostic] = []
    syntax_seen: set[str] = set()
    for item in items:
        path = _relative(item["filename"], root)
        code = item.get("code")
        rule = SYNTAX_ERROR if code in (None, "invalid-syntax") else str(code)
        if rule == SYNTAX_ERROR:
            if path in syntax_seen:
                continue
            syntax_seen.add(path)
        names = _BACKTICKED.findall(item.get("message", ""))
        loc = item.get("location") or {}
        out.append(
            Diagnostic(
                engine="ruff",
                rule=rule,
                message=str(item.get("message", "")),
                path=path,
                line=int(loc.get("row") or 1),
                column=int(loc.get("column") or 1),
                symbol=names[0] if names and rule != SYNTAX_ERROR else None,
            )
        )
    return out


_TY_PATTERNS = (
    (re.compile(r"^Module `([^`]+)` has no member `([^`]+)`"), "module"),
    (re.compile(r"^Class `([^`]+)` has no attribute `([^`]+)`"), "class"),
    (re.compile(r"^Object of type `([^`]+)` has no attribute `([^`]+)`"), "object"),
)
_TY_UNRESOLVED = re.compile(r"^Cannot resolve imported module `([^`]+)`")


def parse_ty(stdout: str, root: Path) -> list[Diagnostic]:
    """ty's ``--output-format gitlab`` (Code Quality JSON); ``invalid-syntax`` is dropped,
    ruff reports it."""
    items = json.loads(stdout or "[]")
    if not isinstance(items, list):
        raise ValueError("expected a JSON list")
    out: list[Diagnostic] = []
    for item in items:
        rule = str(item["check_name"])
        if rule not in TY_RULES:
            continue
        message = str(item.get("description", "")).removeprefix(f"{rule}: ")
        begin = item["location"]["positions"]["begin"]
        owner = symbol = kind = None
        for pattern, what in _TY_PATTERNS:
            match = pattern.match(message)
            if match:
                owner, symbol, kind = match.group(1), match.group(2), what
                break
        else:
            match = _TY_UNRESOLVED.match(message)
            if match:
                owner, symbol, kind = match.group(1), match.group(1), "import"
        out.append(
            Diagnostic(
                engine="ty",
                rule=f"ty:{rule}",
                message=message,
                path=_relative(item["location"]["path"], root),
                line=int(begin.get("line") or 1),
                column=int(begin.get("column") or 1),
                symbol=symbol,
                owner=owner,
                owner_kind=kind,
            )
        )
    return out


def parse_graph(stdout: str, root: Path) -> dict[str, list[str]]:
    """``ruff analyze graph``: ``{file: [files it imports]}``."""
    data = json.loads(stdout or "{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return {
        _relative(src, root): sorted(_relative(dst, root) for dst in deps)
        for src, deps in data.items()
    }
