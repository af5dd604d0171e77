"""Generate a first-party service package for ``gate_speed.py``, with seeded defects.

The tree (``svc/`` plus ``tests/``) has modules of about 300 lines in the shapes real services
have: enums, pydantic models, dataclasses, service classes, FastAPI routes with ``Depends``,
cross-module imports at top level and inside functions, ``TYPE_CHECKING`` blocks and quoted
forward references. Reachability is a tree from ``svc.main`` plus random extra edges (always to
a later module, so there are no import cycles); ``svc/plugins`` is reached only through imports
inside functions; ``svc/legacy`` is never imported.

Every seeded defect is recorded as ground truth (path, line, name, intended tier). Besides the
defects, the tree carries *harmless* findings the engines also report -- quoted forward
references nothing evaluates, sloppy tests, dead legacy code -- as a messy codebase does.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _shapes import DefectPlan, ModuleSpec, render_module

__all__ = ["Defect", "Tree", "generate"]

# How the seeded defects spread over the tiers (60 in total, 20 breaking startup).
TIER_PLAN = {"breaks-startup": 20, "breaks-on-call": 15, "unreachable": 10, "noise": 15}
STARTUP_KINDS = (
    "module-level",
    "class-body",
    "decorator",
    "default",
    "annotation",
    "fastapi-string",
    "pydantic-future",
    "ty-import",
    "ty-enum-module-level",
    "annotation",
)
ON_CALL_KINDS = ("body-name", "ty-enum-body", "ty-module-attr-body", "body-name", "lazy-body")
UNREACHABLE_KINDS = ("unreachable-module-level", "unreachable-body", "unreachable-annotation")
NOISE_KINDS = (
    "quoted",
    "future-plain",
    "type-checking-import",
    "guarded-import",
    "globals-write",
    "getattr-all",
    "local-annotation",
    "test-code",
    "main-guard",
)


@dataclass
class Defect:
    path: str
    line: int
    name: str
    tier: str
    kind: str


@dataclass
class Tree:
    root: Path
    entry: str
    modules: int
    lines: int
    defects: list[Defect] = field(default_factory=list)
    harmless: int = 0

    def save(self) -> None:
        data = {**asdict(self), "root": str(self.root)}
        (self.root / "ground_truth.json").write_text(json.dumps(data, indent=1))


def _roles(total: int) -> dict[str, int]:
    tests = max(2, total * 2 // 100)
    legacy = max(4, total * 8 // 100)
    plugins = max(4, total * 3 // 100)
    return {"tests": tests, "legacy": legacy, "plugins": plugins}


def generate(root: Path, modules: int = 5000, seed: int = 4) -> Tree:
    """Write the tree under ``root`` (replaced if present) and return its ground truth."""
    rng = random.Random(seed)
    if root.exists():
        shutil.rmtree(root)
    counts = _roles(modules)
    # svc/__init__.py, svc/main.py, plugins/ and legacy/ __init__.py, and one __init__.py
    # per core subpackage of ``per_package`` modules count as modules too.
    per_package = 100
    n_core = modules - sum(counts.values()) - 4
    while n_core + -(-n_core // per_package) > modules - sum(counts.values()) - 4:
        n_core -= 1
    specs: list[ModuleSpec] = []
    for i in range(n_core):
        specs.append(ModuleSpec(i, f"svc.c{i // per_package:02d}.m{i:05d}", "core"))
    for i in range(counts["plugins"]):
        specs.append(ModuleSpec(n_core + i, f"svc.plugins.p{n_core + i:05d}", "plugin"))
    base = n_core + counts["plugins"]
    for i in range(counts["legacy"]):
        specs.append(ModuleSpec(base + i, f"svc.legacy.l{base + i:05d}", "legacy"))
    base += counts["legacy"]
    for i in range(counts["tests"]):
        specs.append(ModuleSpec(base + i, f"tests.test_m{base + i:05d}", "test"))
    _wire(specs, rng)
    _seed_defects(specs, rng)
    tree = Tree(root=root, entry="svc.main", modules=0, lines=0)
    for spec in specs:
        lines, recorded, harmless = render_module(spec, rng)
        _write(root, spec.module, lines)
        tree.lines += len(lines)
        tree.harmless += harmless
        tree.defects += [
            Defect(spec.path, line, name, tier, kind) for line, name, tier, kind in recorded
        ]
    packages = {s.module.rpartition(".")[0] for s in specs if s.kind != "test"}
    for package in sorted(packages | {"svc"}):
        _write(root, f"{package}.__init__", ['"""Package."""'], package=True)
    # Plugins holding a startup defect are the ones loaded by the app's startup hook: the
    # others are imported only by a method no startup code calls (they break on call).
    loaded = [
        s
        for s in specs
        if s.kind == "plugin" and any(d.tier == "breaks-startup" for d in s.defects)
    ]
    main = _main_module([s for s in specs if s.kind == "core" and s.parent is None], loaded)
    _write(root, "svc.main", main)
    tree.modules = len(specs) + len(packages | {"svc"}) + 1
    tree.lines += len(main)
    tree.defects.sort(key=lambda d: (d.path, d.line))
    tree.save()
    return tree


def _write(root: Path, module: str, lines: list[str], package: bool = False) -> None:
    parts = module.split(".")
    path = root.joinpath(*parts[:-1]) / (parts[-1] + ".py")
    if package:
        path = root.joinpath(*parts[:-1]) / "__init__.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _wire(specs: list[ModuleSpec], rng: random.Random) -> None:
    """Import edges. Core modules form a tree from ``svc.main`` (fan-out 4) plus extra edges
    to later modules; plugins are imported only inside functions; legacy only among itself."""
    core = [s for s in specs if s.kind == "core"]
    roots = max(1, len(core) // 200)
    for i, spec in enumerate(core):
        if i >= roots:
            spec.parent = (i - roots) // 4
            core[spec.parent].imports.append(spec)
    for i, spec in enumerate(core):
        later = core[i + 1 :]
        if later:
            spec.imports += rng.sample(later, min(len(later), rng.randint(0, 2)))
            spec.lazy.append(rng.choice(later))
            spec.type_checking.append(rng.choice(later))
    for plugin in (s for s in specs if s.kind == "plugin"):
        rng.choice(core[: len(core) // 2]).lazy.append(plugin)
        plugin.imports.append(rng.choice(core))
    legacy = [s for s in specs if s.kind == "legacy"]
    for i, spec in enumerate(legacy[:-1]):
        spec.imports.append(legacy[i + 1])
    for test in (s for s in specs if s.kind == "test"):
        test.imports.append(rng.choice(core))
    for spec in specs:
        spec.imports = list({s.index: s for s in spec.imports}.values())


def _seed_defects(specs: list[ModuleSpec], rng: random.Random) -> None:
    core = [s for s in specs if s.kind == "core" and s.imports]
    plugins = [s for s in specs if s.kind == "plugin"]
    legacy = [s for s in specs if s.kind == "legacy"]
    tests = [s for s in specs if s.kind == "test"]
    used: set[int] = set()

    def pick(pool: list[ModuleSpec]) -> ModuleSpec:
        choices = [s for s in pool if s.index not in used] or pool
        spec = rng.choice(choices)
        used.add(spec.index)
        return spec

    plans: list[tuple[ModuleSpec, DefectPlan]] = []
    for i in range(TIER_PLAN["breaks-startup"]):
        kind = STARTUP_KINDS[i % len(STARTUP_KINDS)]
        # Every fourth one sits in a plugin: imported lazily, by the app's startup hook.
        pool = plugins if i % 4 == 3 and kind not in ("ty-import",) else core
        plans.append((pick(pool), DefectPlan(kind, "breaks-startup")))
    for i in range(TIER_PLAN["breaks-on-call"]):
        kind = ON_CALL_KINDS[i % len(ON_CALL_KINDS)]
        pool = plugins if kind == "lazy-body" else core
        plans.append(
            (pick(pool), DefectPlan("body-name" if kind == "lazy-body" else kind, "breaks-on-call"))
        )
    for i in range(TIER_PLAN["unreachable"]):
        plans.append((pick(legacy), DefectPlan(UNREACHABLE_KINDS[i % 3], "unreachable")))
    # A module that makes names at runtime silences ty's findings about it (by design), so
    # it must not be the module another seeded ty defect imports from.
    ty_kinds = {"ty-import", "ty-module-attr-body"}
    targets = {s.imports[0].index for s, p in plans if p.kind in ty_kinds and s.imports}
    for i in range(TIER_PLAN["noise"]):
        kind = NOISE_KINDS[i % len(NOISE_KINDS)]
        pool = tests if kind == "test-code" else core
        if kind in ("globals-write", "getattr-all"):
            pool = [s for s in core if s.index not in targets]
        plans.append((pick(pool), DefectPlan(kind, "noise")))
    for spec, plan in plans:
        spec.defects.append(plan)


def _main_module(tops: list[ModuleSpec], plugins: list[ModuleSpec]) -> list[str]:
    lines = [
        '"""The entry module: builds the app from every top-level router."""',
        "",
        "from fastapi import FastAPI",
        "",
    ]
    for spec in tops:
        lines.append(f"from {spec.module} import router as router_{spec.index}")
    lines += ["", 'app = FastAPI(title="svc")']
    lines += [f"app.include_router(router_{spec.index})" for spec in tops]
    if plugins:
        lines += ["", "", '@app.on_event("startup")', "async def _load_plugins() -> None:"]
        lines += [f"    import {spec.module}  # noqa: F401" for spec in plugins]
    return lines
