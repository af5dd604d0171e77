"""The static gate on real applications: false alarms, tier accuracy and time, checked by
running the applications.

For each pinned FastAPI/Starlette application published on PyPI (different sizes and
styles: an app class, an app factory called at import, a lifespan with a database and a
search engine, a ``uvicorn --factory`` factory with pydantic settings), it:

1. installs the release with its dependencies into a cached venv (``uv``), and unpacks the
   release's wheel as the project tree to check (downloaded at run time, never committed);
2. starts the unmodified app for real in that venv (``_real_oracle.py``: import the entry,
   call the factory, run the ASGI lifespan startup) and records whether and where it fails;
3. runs the static gate on the tree with ``--python`` (the venv) and once without any
   environment, times it beside ruff + ty on the same files in the same run, counts the
   findings per tier, and checks every ``breaks-startup`` finding against the real start: it
   is true only when startup fails at that line;
4. mutates the app by script the way half-done refactors happen -- one use of an imported
   name renamed, in one place only -- at module level, in a class base, in a route
   signature, in a function that runs at import (an app or settings factory), in a lifespan
   hook, in a request handler, and in a module imported only from a handler; starts each
   mutated app for real and prints the tier accuracy: ``breaks-startup`` must be exactly the
   mutations whose start really fails on the renamed name.

Where a mutation lands is read from the AST of the tree and from a trace of the unmodified
start (which functions and modules ran); what is true comes only from running the mutated
app. Other gates can be evaluated the same way: ``add_gate(name, run)`` (see ``GATES``).

Run: ``.venv/bin/python benchmarks/real_projects.py [--app NAME]... [--mutations N]``.
Cache: ``~/.cache/safeship-bench`` (``SAFESHIP_BENCH_CACHE``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _real_imports

from safeship.config import Manifest
from safeship.gates.model import GateResult, Tier
from safeship.gates.runner import CheckContext, build_context
from safeship.gates.static.engines import find_binary
from safeship.gates.static.gate import StaticGate

HERE = Path(__file__).parent
ORACLE = HERE / "_real_oracle.py"
FAKE_SEARCH = HERE / "_fake_search.py"
CACHE = Path(os.environ.get("SAFESHIP_BENCH_CACHE", Path.home() / ".cache" / "safeship-bench"))
START_DEADLINE = 240.0
TOOL_DEADLINE = 900.0
ROUTE_METHODS = frozenset(
    {"get", "post", "put", "delete", "patch", "head", "options", "websocket", "api_route"}
)
CATEGORIES = (
    "module level",
    "class base",
    "route signature",
    "factory at import",
    "lifespan hook",
    "request handler",
    "module imported from a handler",
)


@dataclass(frozen=True)
class App:
    """One pinned application and what it needs to start on this machine."""

    name: str
    version: str
    entry: str
    """``module:attr`` of the ASGI app, or of the factory when ``factory``."""
    package: str
    factory: bool = False
    extras: str = ""
    """Extras to install, e.g. ``[server]``."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables for starting it; ``{work}`` is a scratch directory, ``{search}`` the URL of a
    loopback search-engine stand-in."""
    files: dict[str, str] = field(default_factory=dict)
    """Files written into ``{work}`` before starting (a config file)."""
    setup: str | None = None
    """Python run in the venv, in ``{work}``, before each start (e.g. database migrations)."""
    repair: tuple[str, ...] = ()
    """Packages the release imports at startup without declaring them: installed (on the
    side, for the mutation runs only) when the unmodified start fails on them."""
    search: bool = False


APPS = (
    App(
        "rq-dashboard-fast",
        "0.9.2",
        "rq_dashboard_fast.rq_dashboard_fast:RedisQueueDashboard",
        "rq_dashboard_fast",
        factory=True,
    ),
    App(
        "opal-server",
        "0.9.9",
        "opal_server.main:app",
        "opal_server",
        repair=("aiofiles",),
    ),
    App(
        "argilla-server",
        "2.8.0",
        "argilla_server._app:app",
        "argilla_server",
        env={
            "ARGILLA_HOME_PATH": "{work}",
            "ARGILLA_DATABASE_URL": "sqlite+aiosqlite:///{work}/argilla.db",
            "ARGILLA_ELASTICSEARCH": "{search}",
            "ARGILLA_ENABLE_TELEMETRY": "0",
            "ARGILLA_REDIS_URL": "redis://127.0.0.1:6379/7",
        },
        setup=(
            "import alembic.config\n"
            "from argilla_server.database import ALEMBIC_CONFIG_FILE\n"
            "alembic.config.main(argv=['-c', ALEMBIC_CONFIG_FILE, '-x', 'x', 'upgrade', 'head'])\n"
        ),
        search=True,
    ),
    App(
        "tiled",
        "0.2.20",
        "tiled.server.app:app_factory",
        "tiled",
        factory=True,
        extras="[server]",
        env={"TILED_CONFIG": "{work}/config.yml"},
        files={
            "config.yml": ("trees:\n  - path: /\n    tree: tiled.examples.generated_minimal:tree\n")
        },
    ),
)

# -- gates under evaluation ------------------------------------------------------------------

GateRun = Callable[[CheckContext], GateResult]
Judge = Callable[[GateResult, "Mutation", "Start"], bool]
GATES: dict[str, GateRun] = {"static": lambda ctx: StaticGate().run(ctx)}
JUDGES: dict[str, Judge] = {}
"""gate -> whether its result has a mutation in the right tier, given the real start (by
default: ``breaks-startup`` exactly when the start fails on the renamed name)."""


def add_gate(name: str, run: GateRun, judge: Judge | None = None) -> None:
    """Evaluate another gate beside the static one: same apps, same real starts, same
    mutations; ``run`` gets the ``CheckContext`` of the tree (its ``project_env`` is the
    app's venv, or none) and returns the gate's result."""
    GATES[name] = run
    if judge is not None:
        JUDGES[name] = judge


add_gate(
    "imports",
    lambda ctx: _real_imports.run(ctx, APPS, CACHE),
    lambda result, mutation, real: _real_imports.judge(result, mutation, real, tier_at),
)


# -- installing --------------------------------------------------------------------------------


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", TOOL_DEADLINE)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def prepare(app: App) -> tuple[Path, Path]:
    """The app's venv (its release and dependencies) and its tree (the release's wheel
    unpacked), both cached."""
    base = CACHE / f"{app.name}-{app.version}"
    venv, tree, wheels = base / "venv", base / "tree", base / "wheel"
    uv = find_binary("uv")
    if not (venv / ".installed").exists():
        shutil.rmtree(venv, ignore_errors=True)
        spec = f"{app.name}{app.extras}=={app.version}"
        if uv:
            steps = [[uv, "venv", "-q", "-p", sys.executable, str(venv)]]
            steps.append([uv, "pip", "install", "-q", "-p", str(venv / "bin" / "python"), spec])
        else:
            steps = [[sys.executable, "-m", "venv", str(venv)]]
            steps.append([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", spec])
        for argv in steps:
            done = _run(argv)
            if done.returncode:
                raise SystemExit(f"{app.name}: `{' '.join(argv)}` failed: {done.stderr[-800:]}")
        (venv / ".installed").write_text("ok\n")
    if not (tree / ".unpacked").exists():
        shutil.rmtree(tree, ignore_errors=True)
        wheels.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary"]
        done = _run([*argv, ":all:", f"{app.name}=={app.version}", "-d", str(wheels)])
        found = sorted(wheels.glob("*.whl"))
        if done.returncode or not found:
            raise SystemExit(f"{app.name}: cannot download the wheel: {done.stderr[-800:]}")
        with zipfile.ZipFile(found[0]) as archive:
            archive.extractall(tree)
        (tree / ".unpacked").write_text("ok\n")
    return venv, tree


def repaired(app: App, venv: Path) -> Path | None:
    """A directory with the app's ``repair`` packages, for PYTHONPATH; None without any."""
    if not app.repair:
        return None
    target = CACHE / f"{app.name}-{app.version}" / "repair"
    if not (target / ".installed").exists():
        uv = find_binary("uv")
        python = str(venv / "bin" / "python")
        argv = (
            [uv, "pip", "install", "-q", "-p", python, "--target", str(target), *app.repair]
            if uv
            else [python, "-m", "pip", "install", "-q", "--target", str(target), *app.repair]
        )
        done = _run(argv)
        if done.returncode:
            raise SystemExit(f"{app.name}: cannot install {app.repair}: {done.stderr[-800:]}")
        (target / ".installed").write_text("ok\n")
    return target


# -- starting for real -------------------------------------------------------------------------


@dataclass
class Start:
    ok: bool
    phase: str
    error: str | None = None
    message: str = ""
    frames: list[tuple[str, int]] = field(default_factory=list)
    ran: set[tuple[str, int]] = field(default_factory=set)
    """(file, first line) of every project function that ran (traced starts only)."""
    lifespan: set[tuple[str, int]] = field(default_factory=set)
    lines: set[tuple[str, int]] = field(default_factory=set)
    """(file, line) of every line of the project that ran (traced starts only)."""
    modules: set[str] = field(default_factory=set)

    def fails_at(self, path: Path, line: int) -> bool:
        return not self.ok and (str(path), line) in self.frames

    def fails_on(self, name: str) -> bool:
        return not self.ok and name in f"{self.error}: {self.message}"


@contextmanager
def search_engine() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(FAKE_SEARCH), str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def start(
    app: App, venv: Path, tree: Path, *, extra: Path | None = None, trace: bool = False
) -> Start:
    """Import the entry, call the factory, run the lifespan startup, in the app's venv with
    ``tree`` first on the path; a fresh scratch directory each time."""
    with tempfile.TemporaryDirectory(prefix="safeship-bench-") as work, _search(app) as url:
        values = {"work": work, "search": url or ""}
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env.update({k: v.format(**values) for k, v in app.env.items()})
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (tree, extra) if p)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for name, text in app.files.items():
            Path(work, name).write_text(text.format(**values))
        python = str(venv / "bin" / "python")
        if app.setup:
            _run([python, "-c", app.setup], cwd=work, env=env, timeout=START_DEADLINE)
        argv = [python, str(ORACLE), app.entry, *(["--factory"] if app.factory else [])]
        if trace:
            argv += ["--trace", str(tree)]
        try:
            done = _run(argv, cwd=work, env=env, timeout=START_DEADLINE)
        except subprocess.TimeoutExpired:
            return Start(False, "timeout", "TimeoutExpired", f"no answer in {START_DEADLINE}s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return Start(False, "crashed", "Crash", done.stderr[-500:])
    data = json.loads(lines[-1])
    return Start(
        ok=data["ok"],
        phase=data["phase"],
        error=data.get("error"),
        message=data.get("message", ""),
        frames=[(str(f), int(n)) for f, n in data.get("frames", [])],
        ran={(str(f), int(n)) for f, n in data.get("ran", [])},
        lifespan={(str(f), int(n)) for f, n in data.get("lifespan", [])},
        lines={(str(f), int(n)) for f, n in data.get("lines", [])},
        modules=set(data.get("modules", [])),
    )


@contextmanager
def _search(app: App) -> Iterator[str | None]:
    if not app.search:
        yield None
        return
    with search_engine() as url:
        yield url


# -- the gate ------------------------------------------------------------------------------


@dataclass
class Run:
    result: GateResult
    seconds: float


def run_gate(name: str, tree: Path, app: App, venv: Path | None) -> Run:
    manifest = Manifest(root=tree)
    ctx = build_context(
        tree,
        manifest,
        "development",
        entries=[app.entry],
        base_environ={},
        python=str(venv) if venv else None,
    )
    started = time.perf_counter()
    result = GATES[name](ctx)
    return Run(result, time.perf_counter() - started)


def ruff_plus_ty(tree: Path, venv: Path | None) -> float:
    """ruff's undefined-name rules plus ty with its defaults, back to back, on the tree."""
    ruff, ty = find_binary("ruff"), find_binary("ty")
    started = time.perf_counter()
    _run(
        [
            str(ruff),
            "check",
            "--isolated",
            "--no-cache",
            "--select",
            "F821,F822,F823",
            "--exit-zero",
            "-q",
            str(tree),
        ]
    )
    python = ["--python", str(venv)] if venv else []
    _run([str(ty), "check", *python, "--exit-zero", "--no-progress", str(tree)])
    return time.perf_counter() - started


# -- mutations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    category: str
    path: str
    """Relative to the tree."""
    line: int
    column: int
    """0-based byte offset of the name, as in the AST."""
    name: str

    @property
    def renamed(self) -> str:
        return f"{self.name}_renamed"

    def describe(self) -> str:
        return f"{self.category}: {self.path}:{self.line} {self.name} -> {self.renamed}"


def find_mutations(
    tree: Path, app: App, baseline: Start, rng: random.Random, per: int
) -> tuple[list[Mutation], list[Mutation]]:
    """Use sites of imported names, by category, ``per`` picked in each (more in the others
    when a category has none); categories come from the AST and the unmodified start's
    trace (which functions ran at import or in the lifespan, which modules were imported)."""
    sites: dict[str, list[Mutation]] = {c: [] for c in (*CATEGORIES, "conditional")}
    package = tree / app.package.replace(".", "/")
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(tree).as_posix()
        try:
            module = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        dotted = rel[:-3].replace("/", ".").removesuffix(".__init__")
        lazy_module = dotted not in baseline.modules
        if lazy_module and not _imported_in_function(tree, app, dotted):
            continue  # a module nobody imports (a CLI, a script): another question
        for category, node in _uses(module, path, baseline, lazy_module):
            sites[category].append(Mutation(category, rel, node.lineno, node.col_offset, node.id))
    picked: list[Mutation] = []
    for category in CATEGORIES:
        unique = sorted(set(sites[category]), key=lambda m: (m.path, m.line, m.column))
        picked += rng.sample(unique, min(per, len(unique)))
    spare = [
        m
        for c in CATEGORIES
        for m in sorted(set(sites[c]), key=lambda m: (m.path, m.line))
        if m not in picked
    ]
    while len(picked) < 10 and spare:
        picked.append(spare.pop(rng.randrange(len(spare))))
    conditional = sorted(set(sites["conditional"]), key=lambda m: (m.path, m.line, m.column))
    return picked, rng.sample(conditional, min(2, len(conditional)))


def _imported_in_function(tree: Path, app: App, module: str) -> bool:
    """Whether some module of the package imports ``module`` inside a function."""
    short = module.rpartition(".")[2]
    for path in (tree / app.package.replace(".", "/")).rglob("*.py"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if short not in text:
            continue
        try:
            parsed = ast.parse(text)
        except SyntaxError:
            continue
        for func in ast.walk(parsed):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if (
                        isinstance(node, ast.ImportFrom)
                        and node.module
                        and (
                            node.module.endswith(module.partition(".")[2] or module)
                            or any(a.name == short for a in node.names)
                        )
                    ):
                        return True
                    if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
                        return True
    return False


def _uses(
    module: ast.Module, path: Path, baseline: Start, lazy_module: bool
) -> Iterator[tuple[str, ast.Name]]:
    imported = {
        alias.asname or alias.name
        for node in module.body
        if isinstance(node, ast.ImportFrom) and node.module != "__future__"
        for alias in node.names
        if alias.name != "*"
    }

    def loads(node: ast.AST | None) -> Iterator[ast.Name]:
        for child in ast.walk(node) if node is not None else ():
            if (
                isinstance(child, ast.Name)
                and isinstance(child.ctx, ast.Load)
                and child.id in imported
            ):
                yield child

    for statement in module.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
            continue  # guarded or conditional imports: not a plain rename
        if isinstance(statement, ast.ClassDef):
            for base in statement.bases:
                for name in loads(base):
                    yield ("module imported from a handler" if lazy_module else "class base"), name
        elif isinstance(statement, (ast.Assign, ast.Expr, ast.AnnAssign)):
            for name in loads(statement):
                yield ("module imported from a handler" if lazy_module else "module level"), name
    if lazy_module:
        return
    for func in ast.walk(module):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _function_uses(func, path, baseline, loads)


def _function_uses(
    func: ast.FunctionDef | ast.AsyncFunctionDef,
    path: Path,
    baseline: Start,
    loads: Callable[[ast.AST | None], Iterator[ast.Name]],
) -> Iterator[tuple[str, ast.Name]]:
    """Uses in a route's signature or body, and in the body of a function that ran at
    import or in the lifespan -- on a line that ran (a branch this configuration does not
    take is another case: ``conditional``)."""
    route = any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Attribute)
        and d.func.attr in ROUTE_METHODS
        for d in func.decorator_list
    )
    first = min([func.lineno, *(d.lineno for d in func.decorator_list)])
    keys = {(str(path), func.lineno), (str(path), first)}
    body = [n for stmt in func.body for n in loads(stmt) if not _in_nested_def(func, n)]
    # A route defined by code this configuration does not run (``if settings.SCOPES:``) is
    # never registered: that is the conditional case.
    registered = bool(
        {(str(path), func.lineno), *((str(path), d.lineno) for d in func.decorator_list)}
        & baseline.lines
    )
    if route and not registered:
        for arg in [*func.args.args, *func.args.kwonlyargs]:
            for name in loads(arg.annotation):
                yield "conditional", name
        return
    if route:
        for arg in [*func.args.args, *func.args.kwonlyargs]:
            for name in loads(arg.annotation):
                yield "route signature", name
        for default in [*func.args.defaults, *(d for d in func.args.kw_defaults if d)]:
            for name in loads(default):
                yield "route signature", name
        for name in body:
            yield "request handler", name
        return
    category = (
        "lifespan hook"
        if keys & baseline.lifespan
        else "factory at import"
        if keys & baseline.ran
        else None
    )
    if category is None:
        return
    for name in body:
        ran = (str(path), name.lineno) in baseline.lines
        yield (category if ran else "conditional"), name


def _in_nested_def(func: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(func):
        if (
            node is not func
            and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            and any(child is target for child in ast.walk(node))
        ):
            return True
    return False


def mutate(tree: Path, mutation: Mutation, into: Path) -> None:
    shutil.copytree(tree, into, symlinks=True)
    path = into / mutation.path
    lines = path.read_bytes().split(b"\n")
    row = lines[mutation.line - 1]
    name = mutation.name.encode()
    assert row[mutation.column : mutation.column + len(name)] == name, mutation
    lines[mutation.line - 1] = (
        row[: mutation.column] + mutation.renamed.encode() + row[mutation.column + len(name) :]
    )
    path.write_bytes(b"\n".join(lines))


def tier_at(result: GateResult, mutation: Mutation) -> Tier | None:
    """The most certain tier among the gate's findings on the mutated name."""
    order = list(Tier)
    tiers = [
        f.tier
        for f in result.findings
        if (f.path == mutation.path and f.line == mutation.line)
        or mutation.renamed in (f.symbol or "") + " " + f.message
    ]
    return min(tiers, key=order.index) if tiers else None


# -- one application -----------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def evaluate(app: App, mutations: int, seed: int, out: Report) -> dict[str, Any]:
    venv, tree = prepare(app)
    files = sum(1 for _ in (tree / app.package.replace(".", "/")).rglob("*.py"))
    out.say(f"== {app.name} {app.version}: {files} modules, entry {app.entry}")
    pristine = start(app, venv, tree, trace=True)
    where = (
        "starts"
        if pristine.ok
        else f"fails in {pristine.phase}: {pristine.error}: {pristine.message[:120]}"
    )
    out.say(f"   unmodified app, for real: {where}")
    figures: dict[str, Any] = {"app": app.name}
    baseline_time = float("inf")
    for gate in GATES:
        for label, env in (("with deps", venv), ("without deps", None)):
            # Best of two, alternating with ruff + ty so neither always runs on warm caches.
            runs = []
            for _ in range(2):
                runs.append(run_gate(gate, tree, app, env))
                if env is not None:
                    baseline_time = min(baseline_time, ruff_plus_ty(tree, venv))
            run = min(runs, key=lambda r: r.seconds)
            tiers = Counter(str(f.tier) for f in run.result.findings)
            startup = [f for f in run.result.findings if f.tier is Tier.BREAKS_STARTUP]
            false = [
                f for f in startup if not pristine.fails_at(tree / (f.path or ""), f.line or 0)
            ]
            ratio = run.seconds / baseline_time if env else float("nan")
            counts = ", ".join(f"{n} {t}" for t, n in sorted(tiers.items())) or "no findings"
            timing = f"{run.seconds:.2f}s" + (
                f" = {ratio:.2f}x ruff+ty ({baseline_time:.2f}s)" if env else ""
            )
            out.say(
                f"   {gate} {label}: {timing}; {counts}; false breaks-startup {len(false)} of {len(startup)}"
            )
            for finding in false:
                out.say(
                    f"      false: {finding.path}:{finding.line} {finding.rule} {finding.message[:140]}"
                )
            for finding in startup:
                if finding not in false:
                    out.say(
                        f"      true: {finding.path}:{finding.line} {finding.rule} (startup fails there)"
                    )
            figures[f"{gate} {label}"] = {
                "seconds": run.seconds,
                "tiers": dict(tiers),
                "false": len(false),
                "startup": len(startup),
            }
        figures["ruff+ty seconds"] = baseline_time
    if "imports" in GATES:
        figures.update(_real_imports.evaluate(app, venv, tree, out.say))
    extra = repaired(app, venv) if not pristine.ok else None
    if extra is not None:
        pristine = start(app, venv, tree, extra=extra, trace=True)
        state = (
            "starts" if pristine.ok else f"still fails: {pristine.error}: {pristine.message[:120]}"
        )
        out.say(
            f"   with {', '.join(app.repair)} installed on the side (undeclared by the release): {state}"
        )
    if not pristine.ok:
        out.say("   mutations skipped: the unmodified app does not start here")
        return figures
    if mutations == 0:
        return figures
    chosen, conditional = find_mutations(
        tree, app, pristine, random.Random(seed), max(1, mutations // len(CATEGORIES) + 1)
    )
    missing = [c for c in CATEGORIES if not any(m.category == c for m in chosen)]
    if missing:
        out.say(f"   no site in this app for: {', '.join(missing)}")
    right: Counter[str] = Counter()
    for mutation in chosen:
        for gate, correct in _mutant(app, venv, tree, extra, mutation, out).items():
            right[gate] += correct
    if conditional:
        out.say(
            "   informative, not counted: renames in a startup function on a line this "
            "configuration does not run"
        )
        for mutation in conditional:
            _mutant(app, venv, tree, extra, mutation, out)
    for gate in GATES:
        out.say(f"   {gate} tier accuracy: {right[gate]}/{len(chosen)}")
        figures[f"{gate} accuracy"] = (right[gate], len(chosen))
    return figures


def _mutant(
    app: App, venv: Path, tree: Path, extra: Path | None, mutation: Mutation, out: Report
) -> dict[str, bool]:
    """Start the mutated app for real and run every gate on it: gate -> tier right."""
    verdicts, right = [], {}
    with tempfile.TemporaryDirectory(prefix="safeship-mutant-") as scratch:
        mutant = Path(scratch) / "tree"
        mutate(tree, mutation, mutant)
        real = start(app, venv, mutant, extra=extra)
        truth = real.fails_on(mutation.renamed)
        for gate in GATES:
            result = run_gate(gate, mutant, app, venv).result
            tier = tier_at(result, mutation)
            judge = JUDGES.get(gate)
            right[gate] = (
                judge(result, mutation, real)
                if judge
                else tier is not None and (tier is Tier.BREAKS_STARTUP) == truth
            )
            verdicts.append(f"{gate} {tier or 'no finding'}{'' if right[gate] else ' ✗'}")
    really = "breaks startup" if truth else "starts"
    out.say(f"   {mutation.describe()}: really {really}; {'; '.join(verdicts)}")
    return right


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", action="append", help="only this app (repeatable)")
    parser.add_argument("--mutations", type=int, default=10, help="mutations per app (>= 10)")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--no-mutations", action="store_true", help="only the unmodified apps (time, tiers)"
    )
    parser.add_argument("--gate", action="append", help="only this gate (repeatable)")
    args = parser.parse_args(argv)
    for name in [g for g in GATES if args.gate and g not in args.gate]:
        del GATES[name]
    apps = [a for a in APPS if not args.app or a.name in args.app]
    out = Report()
    count = 0 if args.no_mutations else max(args.mutations, 10)
    summary = [evaluate(app, count, args.seed, out) for app in apps]
    out.say()
    out.say("summary")
    for figures in summary:
        parts = [figures["app"]]
        for gate in GATES:
            with_deps, without = (
                figures.get(f"{gate} with deps"),
                figures.get(f"{gate} without deps"),
            )
            if with_deps:
                ratio = with_deps["seconds"] / figures["ruff+ty seconds"]
                parts.append(
                    f"{gate}: {ratio:.2f}x ruff+ty, false breaks-startup {with_deps['false']} "
                    f"(with deps) / {without['false'] if without else '?'} (without)"
                )
            accuracy = figures.get(f"{gate} accuracy")
            if accuracy:
                parts.append(f"accuracy {accuracy[0]}/{accuracy[1]}")
            if gate == "imports" and "imports ratio" in figures:
                parts.append(
                    f"{figures['imports ratio']:.2f}x one interpreter (goal <= "
                    f"{_real_imports.RATIO_GOAL:g}x), tree "
                    + ("unchanged" if figures["imports tree unchanged"] else "CHANGED")
                )
        out.say("  " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
