"""The parent side of the imports gate's fork server.

One worker interpreter (``worker.py``) imports the modules, ``jobs`` children at a
time, and streams one JSON line per module. The parent reads them with a deadline. A worker
that dies, stops answering, or reports that a preload tainted it is replaced by a fresh one
for the modules still left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import ImportOutcome
from .plan import ImportPlan

STARTUP_TIMEOUTS = 3  # the startup's deadline in per-module timeouts (worker.STARTUP_TIMEOUTS)

__all__ = ["import_modules"]

WORKER = Path(__file__).resolve().with_name("worker.py")
_GRACE = 60.0  # beyond a module's deadline (preloading may run in between), before giving up
_PRELOAD_TIMEOUT = 10.0
_READY_TIMEOUT = 120.0
_MAX_WORKERS = 8  # replacements after a taint or a crash, before the rest is given up
_STACK_FRAME = re.compile(r'^\s*File "(.+)", line (\d+) in (.+)$')


@dataclass
class _Settings:
    python: str
    import_root: Path
    cwd: Path
    tree: Path
    environ: Mapping[str, str]
    preload: Sequence[str]
    first_party: Sequence[str]
    learn: bool
    timeout: float
    jobs: int
    pycache: str | None = None
    entries: Sequence[str] = ()
    more: Sequence[str] = ()
    python_flags: Sequence[str] = ()
    never: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    executed: int = 0
    interpreter: dict[str, Any] = field(default_factory=dict)
    startup: dict[str, Any] | None = None
    distributions: dict[str, list[str]] = field(default_factory=dict)


class _Worker:
    def __init__(self, settings: _Settings, modules: list[dict[str, Any]]) -> None:
        self.proc = subprocess.Popen(
            [settings.python, *settings.python_flags, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(settings.cwd),
            env=dict(settings.environ),
            start_new_session=True,
        )
        self._buf = b""
        config = {
            "root": str(settings.import_root),
            "preload": list(settings.preload),
            "first_party": list(settings.first_party),
            "never": sorted(settings.never),
            "learn": settings.learn,
            "preload_timeout": _PRELOAD_TIMEOUT,
            "timeout": settings.timeout,
            "jobs": settings.jobs,
            "pycache": settings.pycache,
            "tree": str(settings.tree),
            "entries": list(settings.entries),
            "more": list(settings.more),
            "modules": modules,
        }
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(config) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass

    def readline(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            data = json.loads(line)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def close(self) -> None:
        """Stop the worker and everything it started (its children share its session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                with contextlib.suppress(OSError):
                    pipe.close()


def _parse_stack(text: str) -> tuple[tuple[str, int, str, str], ...]:
    """Frames of the importing thread from a ``faulthandler`` dump, outermost first."""
    blocks = [b for b in re.split(r"\n(?=Thread |Current thread )", text) if "File " in b]
    chosen = next((b for b in blocks if "importlib._bootstrap" in b), blocks[0] if blocks else "")
    frames = []
    for line in chosen.splitlines():
        match = _STACK_FRAME.match(line)
        if not match:
            continue
        filename = match.group(1)
        if (
            filename.startswith("<frozen")
            or filename in (str(WORKER), str(WORKER.with_name("child.py")))
            or filename.endswith(os.path.join("importlib", "__init__.py"))
        ):
            continue
        frames.append((filename, int(match.group(2)), match.group(3), ""))
    return tuple(reversed(frames))


def _window(raw: dict[str, Any]) -> tuple[float, float] | None:
    try:
        start, end = raw["t"]
        return float(start), float(end)
    except (KeyError, TypeError, ValueError):
        return None


def _outcome(module: str, raw: dict[str, Any], timeout: float, phase: str) -> ImportOutcome:
    status = raw.get("status", "crashed")
    if raw.get("startup"):
        phase = "startup"
    wrote = tuple(str(p) for p in raw.get("wrote") or () if isinstance(p, str))
    if status == "ok":
        return ImportOutcome(module, "ok", phase=phase, window=_window(raw), wrote=wrote)
    if status == "error":
        frames = tuple((str(f[0]), int(f[1]), str(f[2]), str(f[3])) for f in raw.get("frames", []))
        missing = raw.get("missing")
        return ImportOutcome(
            module,
            "error",
            raw.get("type"),
            raw.get("message"),
            frames,
            phase=phase,
            missing=missing if isinstance(missing, str) else None,
            window=_window(raw),
            wrote=wrote,
        )
    if status == "hung":
        frames = _parse_stack(raw.get("stack", ""))
        if raw.get("startup"):
            timeout *= STARTUP_TIMEOUTS
        return ImportOutcome(
            module, "hung", frames=frames, detail=f"killed after {timeout:g}s", phase=phase
        )
    if "signal" in raw:
        detail = f"killed by signal {raw['signal']}"
    elif "exit_code" in raw:
        detail = f"exited with code {raw['exit_code']}"
    else:
        detail = "the interpreter died without reporting"
    return ImportOutcome(module, "crashed", detail=detail, phase=phase)


def _run_worker(
    settings: _Settings,
    todo: list[str],
    plan: Mapping[str, dict[str, Any]],
    out: dict[str, ImportOutcome],
) -> tuple[list[str], list[str] | None, bool]:
    """One worker over ``todo``. Returns the modules it imported, the preload that tainted it
    (if any), and whether it failed (died, stalled, or never got ready)."""
    modules = [{"name": m, **plan[m]} for m in todo]
    worker = _Worker(settings, modules)
    try:
        ready = worker.readline(_READY_TIMEOUT)
        if ready is None:
            return [], None, True
        settings.interpreter = {
            k: ready[k] for k in ("python", "version", "implementation") if k in ready
        }
        if ready.get("taint"):
            return [], ready["taint"], False
        preloaded = list(ready.get("preloaded", []))
        # Without entries every module starts from the pristine worker.
        phase = "lazy" if settings.entries else "fresh"
        while True:
            line = worker.readline(settings.timeout * STARTUP_TIMEOUTS + _GRACE)
            if line is None:
                return preloaded, None, True
            if line.get("done"):
                if isinstance(line.get("distributions"), dict):
                    settings.distributions.update(line["distributions"])
                return preloaded, line.get("taint"), False
            module = line.get("module")
            if line.get("entries") is not None:
                settings.startup = line
                if line.get("status") != "ok" and isinstance(module, str) and module not in plan:
                    continue  # an entry outside the checked package: reported by the gate
            if isinstance(module, str) and module in plan:
                out[module] = _outcome(module, line, settings.timeout, phase)
                with contextlib.suppress(TypeError, ValueError):
                    settings.executed += int(line.get("executed") or 0)
    finally:
        worker.close()


def import_modules(
    modules: Sequence[str],
    *,
    import_root: Path,
    environ: Mapping[str, str],
    timeout: float = 20.0,
    jobs: int | None = None,
    preload: Sequence[str] = (),
    first_party: Sequence[str] = (),
    learn: bool = True,
    spines: Mapping[str, str | None] | None = None,
    plan: ImportPlan | None = None,
    python: str | None = None,
    python_flags: Sequence[str] = (),
    entries: Sequence[str] = (),
    more: Sequence[str] = (),
    cache_dir: Path | None = None,
    tree: Path | None = None,
) -> tuple[list[ImportOutcome], dict[str, Any]]:
    """Import each module in a child forked from a first-party-free worker (or from the
    child that imported its spine dependency, see ``plan``).

    Args:
        modules: dotted module names, importable from ``import_root``.
        import_root: the ``sys.path`` entry (and working directory) of the worker.
        environ: the complete environment of the worker and its children.
        timeout: per-module deadline; a child still importing then is killed (``hung``).
        jobs: imports in flight at once (default: one per core).
        preload: non-first-party modules to import in the worker before forking.
        first_party: top-level names that must never be preloaded.
        learn: also preload what children turn out to import from outside the project.
        spines: module -> dependency it may start from; None/absent: a pristine process.
        plan: the whole plan (``plan_imports``); it overrides ``spines``, and also says
            where a module may start when its spine's import fails, and what to start first.
        python: interpreter for the worker (default: this one).
        python_flags: options for it (``-S``: without its site-packages).
        entries: the app's entry modules: imported first, in order, in one process (the
            startup); every module the startup did not import then starts from a copy of
            that process instead of the pristine worker. Empty: every module starts from the
            pristine worker (or a dependency's process, see ``plan``).
        more: when an entry fails, the modules the startup goes on importing, in order, in
            the same process (``ImportPlan.startup_order``), to find every module that
            breaks startup in one run.
        tree: the project's tree, whose writes each import reports (default ``import_root``).
        cache_dir: where bytecode caches are read and written (``sys.pycache_prefix``),
            never in the project's tree (default: a directory of this run).

    The worker runs with its working directory and ``HOME`` in a temporary directory of
    this run, removed afterwards.

    Returns:
        One outcome per module, in the order given, and facts about the run (``executed``:
        the first-party module bodies that ran, over all children). Never raises for a
        module's failure.
    """
    order = list(dict.fromkeys(modules))
    if plan is not None:
        spines = plan.spines
    schedule: dict[str, dict[str, Any]] = {}
    for m in order:
        spine = (spines or {}).get(m)
        schedule[m] = {
            "spine": spine,
            # Without a plan, only the spine itself is known to be a valid start.
            "reach": plan.reach.get(m, 0) if plan else int(spine is not None),
            "weight": plan.weight.get(m, 0) if plan else 0,
        }
    sandbox = Path(tempfile.mkdtemp(prefix="safeship-imports-"))
    environ = dict(environ)
    real_home = environ.get("HOME")
    if real_home and "PYTHONUSERBASE" not in environ:
        # HOME moves to the sandbox; the user's own site-packages stay where they were.
        environ["PYTHONUSERBASE"] = os.path.join(real_home, ".local")
    environ["HOME"] = str(sandbox)
    if "PWD" in environ:
        environ["PWD"] = str(sandbox)
    settings = _Settings(
        python=python or sys.executable,
        import_root=import_root,
        cwd=sandbox,
        tree=tree or import_root,
        environ=environ,
        entries=tuple(entries),
        more=tuple(more),
        python_flags=tuple(python_flags),
        preload=tuple(preload),
        first_party=tuple(first_party),
        learn=learn,
        timeout=timeout,
        jobs=max(1, jobs or os.cpu_count() or 1),
    )
    # Bytecode caches never go to the project's tree (nor are they skipped: without them
    # every child would compile every module it runs, again and again).
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        settings.pycache = str(cache_dir)
    else:
        settings.pycache = str(sandbox / "pycache")
    try:
        out, preloaded, workers = _run_workers(settings, order, schedule)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    for module in order:
        out.setdefault(
            module, ImportOutcome(module, "crashed", detail="the import worker stopped responding")
        )
    facts = {
        "workers": workers,
        "jobs": settings.jobs,
        "preloaded": sorted(preloaded),
        "restarts": workers - 1,
        "notes": settings.notes,
        "executed": settings.executed,
        "interpreter": settings.interpreter,
        "startup": settings.startup,
        "distributions": settings.distributions,
        "sandbox": str(sandbox),
    }
    return [out[m] for m in order], facts


def _run_workers(
    settings: _Settings, order: list[str], schedule: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, ImportOutcome], set[str], int]:
    """Workers, one after the other, until every module has an outcome or too many failed."""
    out: dict[str, ImportOutcome] = {}
    preloaded: set[str] = set()
    workers = 0
    while len(out) < len(order) and workers < _MAX_WORKERS:
        todo = [m for m in order if m not in out]
        workers += 1
        loaded, taint, failed = _run_worker(settings, todo, schedule, out)
        preloaded.update(loaded)
        if taint:
            settings.never.add(taint[0])
            settings.notes.append(f"not preloading {taint[0]}: it {taint[1]}")
        elif failed:
            stuck = [m for m in todo if m not in out]
            if len(stuck) == len(todo) and (settings.preload or settings.learn):
                settings.notes.append(
                    "the import worker did not get ready; retried without preloading"
                )
                settings.preload, settings.learn = (), False
            elif stuck:
                settings.notes.append("the import worker stopped answering; started a new one")
    return out, preloaded, workers
