"""Speed of the imports gate: modules imported per second, each in a pristine interpreter state.

Generates a layered first-party package of ``--modules`` modules of about 300 lines each,
shaped like a FastAPI service: ``core`` (config, a route registry), ``models`` (pydantic
schemas and enums), ``db`` (dataclass repositories), ``services`` (classes with methods,
lazy imports inside functions) and ``api`` (decorated route functions). Each module imports
a few modules of the layers below at top level, so one import executes a bounded closure of
first-party modules, as in a real service. Then runs the imports gate on it, after
compiling its bytecode caches (as any later run finds them).

For comparison it times the same gate with every module started from a pristine process
(``reuse=False``), and the naive design -- a new interpreter per module -- on a sample.
Besides wall time it prints CPU time (of the gate and all its processes), because on a
shared machine the wall time mostly measures the other load, and how many first-party module
bodies ran per module (1.0 would be each body once; a fresh import of every module runs a
module's whole closure). Goal: >= 150 modules/s on a 2-core machine.

    python benchmarks/imports_speed.py [--modules 400] [--jobs N] [--naive-sample 30]
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from safeship.config import Manifest
from safeship.gates import build_context
from safeship.gates.imports.gate import ImportsGate

GENERATED = Path(__file__).resolve().parent / "_generated" / "imports_speed"
PACKAGE = "benchsvc"
# (layer, share of the modules, how many modules of each lower layer it imports)
LAYERS = (
    ("core", 0.05, {}),
    ("models", 0.20, {"core": 1}),
    ("db", 0.15, {"core": 1, "models": 1}),
    ("services", 0.35, {"core": 1, "models": 2, "db": 1}),
    ("api", 0.25, {"core": 1, "models": 1, "services": 1}),
)

ROUTING = '''"""A tiny route registry, like FastAPI's APIRouter."""

from collections.abc import Callable

ROUTES: list[tuple[str, str, Callable[..., object]]] = []


class Router:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def route(self, method: str, path: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
        def register(func: Callable[..., object]) -> Callable[..., object]:
            ROUTES.append((method, self.prefix + path, func))
            return func

        return register

    def get(self, path: str):
        return self.route("GET", path)

    def post(self, path: str):
        return self.route("POST", path)
'''

FUNCTION = '''

def {name}(items: list[dict[str, object]], limit: int = 10, *, strict: bool = False) -> list[str]:
    """Select and format up to ``limit`` items."""
    out: list[str] = []
    for item in items[:limit]:
        key = str(item.get("key", ""))
        if strict and not key:
            raise ValueError("missing key")
        value = item.get("value")
        if isinstance(value, (int, float)):
            out.append(f"{{key}}={{value:.2f}}")
        elif value is None:
            out.append(f"{{key}}=-")
        else:
            out.append(f"{{key}}={{value!r}}")
    return sorted(out)
'''

CLASS = '''

class {name}:
    """A unit of work with a small state machine."""

    retries = 3

    def __init__(self, name: str, config: dict[str, object] | None = None) -> None:
        self.name = name
        self.config = dict(config or {{}})
        self.state = "new"
        self.history: list[str] = []

    def start(self) -> None:
        if self.state != "new":
            raise RuntimeError(f"cannot start from {{self.state}}")
        self._move("running")

    def finish(self, ok: bool = True) -> None:
        self._move("done" if ok else "failed")

    def _move(self, state: str) -> None:
        self.history.append(f"{{self.state}}->{{state}}")
        self.state = state

    def describe(self) -> str:
        return f"{{type(self).__name__}}({{self.name!r}}, state={{self.state}})"

    def lazy_peer(self) -> str:
        from {package}.{peer} import __name__ as peer_name

        return peer_name
'''

MODEL = """

class {name}(BaseModel):
    id: int
    name: str
    tags: list[str] = []
    score: float = 0.0
    kind: {enum} = {enum}.A
"""

ROUTE = """

@router.{verb}("/{path}")
def {name}(item_id: int, q: str | None = None) -> dict[str, object]:
    service = {service}.Service0("{path}")
    service.start()
    return {{"id": item_id, "q": q, "service": service.describe()}}
"""


def _module(layer: str, index: int, deps: dict[str, list[str]], peer: str) -> str:
    lines = [
        f'"""Generated {layer} module {index}."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    lines += ["import enum", "import json", "from dataclasses import dataclass, field"]
    if layer == "models":
        lines.append("from pydantic import BaseModel")
    lines += [
        f"from {PACKAGE}.{dep.split('.')[0]} import {dep.split('.')[1]}"
        for ds in deps.values()
        for dep in ds
    ]
    if layer == "api":
        lines += [f"from {PACKAGE}.core.routing import Router", "", 'router = Router("/v1")']
    enum_name = f"Kind{index}"
    lines += ["", "", f"class {enum_name}(enum.Enum):", '    A = "a"', '    B = "b"', '    C = "c"']
    body = "\n".join(lines)
    if layer == "models":
        body += "".join(MODEL.format(name=f"Schema{index}_{n}", enum=enum_name) for n in range(2))
    if layer == "db":
        body += f"\n\n@dataclass\nclass Row{index}:\n    id: int\n    data: dict = field(default_factory=dict)\n"
    body += "".join(CLASS.format(name=f"Service{n}", package=PACKAGE, peer=peer) for n in range(2))
    body += "".join(FUNCTION.format(name=f"helper{n}") for n in range(7))
    if layer == "api":
        service = deps["services"][0].split(".")[-1]
        body += "".join(
            ROUTE.format(
                verb=("get", "post")[n % 2], path=f"r{index}_{n}", name=f"route{n}", service=service
            )
            for n in range(4)
        )
    body += f"\n\nSETTINGS = json.loads('{{\"module\": {index}}}')\n"
    return body


def generate(count: int, seed: int = 7) -> tuple[Path, float]:
    """Write the package; return its root and the mean number of first-party modules that
    one import executes (the module, its packages, and its top-level imports, transitively)."""
    rng = random.Random(seed)
    shutil.rmtree(GENERATED, ignore_errors=True)
    package = GENERATED / PACKAGE
    names: dict[str, list[str]] = {}
    closure: dict[str, set[str]] = {}
    for layer, share, _imports in LAYERS:
        (package / layer).mkdir(parents=True)
        (package / layer / "__init__.py").write_text("")
        names[layer] = [f"{layer}.m{i:04d}" for i in range(max(1, round(count * share)))]
    (package / "__init__.py").write_text('"""Generated service."""\n')
    (package / "core" / "routing.py").write_text(ROUTING)
    all_modules = [m for ms in names.values() for m in ms]
    for layer, _share, imports in LAYERS:
        for index, module in enumerate(names[layer]):
            deps = {low: rng.sample(names[low], n) for low, n in imports.items()}
            text = _module(layer, index, deps, rng.choice(all_modules))
            (package / f"{module.replace('.', '/')}.py").write_text(text)
            closure[module] = {module, layer}.union(
                *(closure[d] | {d.split(".")[0]} for ds in deps.values() for d in ds)
            )
            if layer == "api":
                closure[module] |= {"core.routing"}
    mean = 1 + sum(len(c) for c in closure.values()) / len(closure)
    return GENERATED, mean


def _cpu() -> float:
    """CPU seconds of this process and every descendant reaped so far (all gate processes
    are reaped): a load-independent measure on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def naive(root: Path, modules: list[str]) -> float:
    """Seconds per module with a fresh ``python -c 'import m'`` each."""
    started = time.perf_counter()
    for module in modules:
        subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=root,
            check=True,
            timeout=60,
            capture_output=True,
        )
    return (time.perf_counter() - started) / len(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=None, help="workers (default: cores)")
    parser.add_argument("--naive-sample", type=int, default=30)
    args = parser.parse_args()

    root, closure = generate(args.modules)
    files = list((root / PACKAGE).rglob("*.py"))
    lines = sum(len(p.read_text().splitlines()) for p in files)
    manifest = Manifest(root=root)
    if args.jobs:
        gates = manifest.gates.model_copy(update={"import_jobs": args.jobs})
        manifest = manifest.model_copy(update={"gates": gates})
    ctx = build_context(root, manifest, "development", entries=[f"{PACKAGE}.api"])
    cores = os.cpu_count() or 1
    print(
        f"tree: {len(files) - len(LAYERS) - 1} modules, {lines} lines; one import executes "
        f"{closure:.1f} first-party modules on average; {cores} cores"
    )
    # Bytecode caches, as any later run finds them (the gate's own run would not write them
    # where PYTHONDONTWRITEBYTECODE is set, as in many containers).
    compileall.compile_dir(str(root / PACKAGE), quiet=1, workers=cores)
    rates = {}
    for label, gate in (
        ("imports gate", ImportsGate()),
        (
            "imports gate, every module from a pristine worker (reuse=False)",
            ImportsGate(reuse=False),
        ),
    ):
        cpu_before = _cpu()
        started = time.perf_counter()
        result = gate.run(ctx)
        elapsed = time.perf_counter() - started
        cpu = _cpu() - cpu_before
        summary = result.summary
        if summary["ok"] != summary["modules"]:
            raise SystemExit(f"benchmark tree failed to import: {result.findings[:3]}")
        rates[label] = summary["modules"] / elapsed
        print(
            f"{label}: {summary['modules']} modules in {elapsed:.2f}s = "
            f"{rates[label]:.0f} modules/s ({summary['jobs']} at a time, "
            f"{summary['reused']} started from a dependency's process); "
            f"{cpu:.2f} CPU-s = {cpu / summary['modules'] * 1000:.1f} CPU-ms per module, "
            f"so {summary['modules'] / cpu * cores:.0f} modules/s on {cores} idle cores; "
            f"{summary['executed'] / summary['modules']:.1f} module bodies ran per module"
        )
    rate = rates["imports gate"]
    if args.naive_sample:
        sample = random.Random(1).sample(
            sorted(
                p.relative_to(root).with_suffix("").as_posix().replace("/", ".")
                for p in files
                if p.name != "__init__.py"
            ),
            min(args.naive_sample, len(files) - 1),
        )
        per = naive(root, sample)
        print(
            f"naive, one interpreter per module (sample of {len(sample)}): {1 / per:.0f} "
            f"modules/s sequential, at best {cores / per:.0f} modules/s on {cores} cores"
        )
    print(
        f"imports gate speed: {rate:.0f} modules/s (goal >= 150): "
        + ("PASS" if rate >= 150 else "BELOW GOAL")
    )


if __name__ == "__main__":
    main()
