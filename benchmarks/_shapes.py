"""The text of one generated module, with its seeded defects and harmless findings."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["DefectPlan", "ModuleSpec", "render_module"]

# Kinds that need the module to have, or not have, `from __future__ import annotations`.
NEEDS_FUTURE = {"pydantic-future", "future-plain"}
NEEDS_EAGER = {"annotation", "unreachable-annotation"}


@dataclass
class DefectPlan:
    kind: str
    tier: str


@dataclass
class ModuleSpec:
    index: int
    module: str
    kind: str  # core | plugin | legacy | test
    imports: list[ModuleSpec] = field(default_factory=list)
    lazy: list[ModuleSpec] = field(default_factory=list)
    type_checking: list[ModuleSpec] = field(default_factory=list)
    defects: list[DefectPlan] = field(default_factory=list)
    parent: int | None = None

    @property
    def path(self) -> str:
        return self.module.replace(".", "/") + ".py"


class _Builder:
    def __init__(self, spec: ModuleSpec) -> None:
        self.lines: list[str] = []
        self.recorded: list[tuple[int, str, str, str]] = []
        self.harmless = 0
        self.kinds = {d.kind: d for d in spec.defects}

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def defect(self, kind: str, name: str, line: str) -> None:
        """Append ``line``, whose ``name`` is the defect of ``kind``."""
        self.lines.append(line)
        self.recorded.append((len(self.lines), name, self.kinds[kind].tier, kind))

    def has(self, kind: str) -> bool:
        return kind in self.kinds


def render_module(spec: ModuleSpec, rng: random.Random) -> tuple[list[str], list, int]:
    """Lines of the module, the defects as ``(line, name, tier, kind)``, harmless count."""
    b = _Builder(spec)
    if spec.kind == "test":
        _test_module(spec, b)
        return b.lines, b.recorded, b.harmless
    i = spec.index
    kinds = set(b.kinds)
    future = bool(kinds & NEEDS_FUTURE) or (not kinds & NEEDS_EAGER and rng.random() < 0.25)
    peer = spec.imports[0] if spec.imports else None
    b.add(f'"""{spec.module}: generated {spec.kind} module {i}."""', "")
    if future:
        b.add("from __future__ import annotations", "")
    b.add(
        "import enum",
        "import logging",
        "from dataclasses import dataclass, field",
        "from typing import TYPE_CHECKING, Any",
        "",
        "from fastapi import APIRouter, Depends",
        "from pydantic import BaseModel",
        "",
    )
    for target in spec.imports:
        j = target.index
        b.add(f"from {target.module} import Kind{j}, Service{j}, helper_{j}")
    if peer is not None:
        package, _, name = peer.module.rpartition(".")
        b.add(f"from {package} import {name} as peer_{peer.index}")
    if b.has("ty-import") and peer is not None:
        b.defect(
            "ty-import", f"Removed{peer.index}", f"from {peer.module} import Removed{peer.index}"
        )
    b.add("")
    if spec.type_checking or b.has("type-checking-import"):
        b.add("if TYPE_CHECKING:")
        for target in spec.type_checking:
            b.add(f"    from {target.module} import Service{target.index}")
        if b.has("type-checking-import") and peer is not None:
            b.defect(
                "type-checking-import",
                f"Vanished{peer.index}",
                f"    from {peer.module} import Vanished{peer.index}",
            )
        b.add("")
    if b.has("guarded-import"):
        b.add("try:")
        b.defect("guarded-import", f"svc.accel_{i}", f"    from svc.accel_{i} import fast_path_{i}")
        b.add("except ImportError:", f"    fast_path_{i} = None", "")
    b.add("logger = logging.getLogger(__name__)", f'router = APIRouter(prefix="/m{i}")', "")
    if b.has("globals-write"):
        b.add(f'for _name in ("HANDLER_A_{i}", "HANDLER_B_{i}"):')
        b.add("    globals()[_name] = staticmethod(print)")
        b.defect(
            "globals-write", f"HANDLER_A_{i}", f"HANDLERS_{i} = (HANDLER_A_{i}, HANDLER_B_{i})"
        )
        b.add("")
    if b.has("module-level"):
        b.defect("module-level", f"compute_limit_{i}", f"DEFAULT_LIMIT_{i} = compute_limit_{i}()")
    if b.has("unreachable-module-level"):
        b.defect("unreachable-module-level", f"OLD_LIMIT_{i}", f"LIMIT_{i} = OLD_LIMIT_{i} * 2")
    if b.has("ty-enum-module-level") and peer is not None:
        b.defect("ty-enum-module-level", "OMEGA", f"DEFAULT_KIND_{i} = Kind{peer.index}.OMEGA")
    b.add("", "")
    _declarations(spec, b, future)
    _service_class(spec, b, rng)
    _functions(spec, b)
    if b.has("main-guard"):
        b.add("", 'if __name__ == "__main__":')
        b.defect("main-guard", f"run_cli_{i}", f"    run_cli_{i}()")
    return b.lines, b.recorded, b.harmless


def _declarations(spec: ModuleSpec, b: _Builder, future: bool) -> None:
    i = spec.index
    members = ("ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON")
    b.add(f"class Kind{i}(enum.Enum):")
    b.add(*(f'    {m} = "{m.lower()}"' for m in members))
    b.add("", "")
    b.add(f"class Record{i}(BaseModel):", "    id: int", "    name: str")
    b.add(
        f"    kind: Kind{i} = Kind{i}.ALPHA", "    tags: list[str] = []", "    score: float = 0.0"
    )
    b.add("", "")
    if b.has("pydantic-future"):
        b.add(f"class Filter{i}(BaseModel):", "    limit: int = 10")
        b.defect("pydantic-future", f"OwnerRef{i}", f"    owner: OwnerRef{i} | None = None")
        b.add("", "")
    b.add("@dataclass", f"class Config{i}:", "    retries: int = 3", "    timeout: float = 1.5")
    b.add("    labels: dict[str, str] = field(default_factory=dict)", "", "")
    if b.has("getattr-all"):
        b.add(f'__all__ = ["Config{i}", "Kind{i}", "Record{i}", "Service{i}",')
        b.defect("getattr-all", f"LazyExport{i}", f'           "LazyExport{i}"]')
        b.add("", "", "def __getattr__(name: str) -> Any:")
        b.add(f'    if name == "LazyExport{i}":', "        return object()")
        b.add("    raise AttributeError(name)", "", "")


def _service_class(spec: ModuleSpec, b: _Builder, rng: random.Random) -> None:
    i = spec.index
    peers = spec.imports
    b.add(f"class Service{i}:", f'    """Coordinates records of kind Kind{i}."""', "")
    b.add(f"    default_kind = Kind{i}.ALPHA")
    if b.has("class-body"):
        b.defect("class-body", f"RETRY_POLICY_{i}", f"    retry_policy = RETRY_POLICY_{i}")
    b.add("", f"    def __init__(self, config: Config{i} | None = None) -> None:")
    b.add(f"        self.config = config or Config{i}()", "        self.items: list[Any] = []")
    b.add("        self.cache: dict[str, Any] = {}", "")
    if b.has("annotation"):
        other = _foreign(spec, rng)
        b.defect(
            "annotation", f"Service{other}", f"    def attach(self, peer: Service{other}) -> None:"
        )
        b.add("        self.cache['peer'] = peer", "")
    for target in spec.type_checking:
        b.add(f'    def peer_{target.index}(self) -> "Service{target.index} | None":')
        b.add("        return self.cache.get('peer')", "")
    if b.has("quoted"):
        b.defect("quoted", f"Summary{i}", f'    def summarize(self) -> "Summary{i}":')
        b.add("        return self.cache['summary']", "")
    # Harmless: quoted forward references nothing evaluates, as a messy codebase has.
    if rng.random() < 0.4:
        b.add(f'    def as_widget(self) -> "Widget{i}":', "        return self.cache['widget']", "")
        b.harmless += 1
    b.add(f"    def process(self, record: Record{i}) -> dict[str, Any]:")
    b.add('        """Process one record and return a summary."""')
    b.add("        result: dict[str, Any] = {'id': record.id, 'name': record.name}")
    b.add(f"        if record.kind is Kind{i}.BETA:", "            result['beta'] = True")
    for target in peers:
        j = target.index
        b.add(f"        result['peer_{j}'] = helper_{j}(record.id)")
        b.add(f"        if record.kind.value == Kind{j}.GAMMA.value:")
        b.add(f"            result['gamma_{j}'] = Service{j}().describe()")
    if b.has("body-name"):
        b.defect("body-name", f"normalize_{i}", f"        result = normalize_{i}(result)")
    if b.has("ty-enum-body") and peers:
        b.defect("ty-enum-body", "OMEGA", f"        result['omega'] = Kind{peers[0].index}.OMEGA")
    if b.has("ty-module-attr-body") and peers:
        j = peers[0].index
        b.defect(
            "ty-module-attr-body", f"missing_helper_{j}", f"        peer_{j}.missing_helper_{j}()"
        )
    if b.has("local-annotation"):
        b.defect("local-annotation", f"Buffer{i}", f"        buffer: Buffer{i} = []")
        b.add("        result['buffer'] = buffer")
    if b.has("unreachable-body"):
        b.defect(
            "unreachable-body", f"legacy_merge_{i}", f"        result = legacy_merge_{i}(result)"
        )
    b.add("        self.items.append(result)", "        return result", "")
    b.add(
        "    def describe(self) -> str:",
        f'        return f"Service{i}({{len(self.items)}} items)"',
        "",
    )
    if spec.lazy:
        b.add("    async def refresh(self) -> int:", "        total = 0")
        for target in spec.lazy:
            j = target.index
            b.add(
                f"        from {target.module} import helper_{j}",
                f"        total += helper_{j}(total)",
            )
        b.add("        return total", "")
    for step in range(8):
        _step_method(b, i, step)
    if b.has("unreachable-annotation"):
        b.defect(
            "unreachable-annotation",
            f"OldSession{i}",
            f"    def legacy(self, s: OldSession{i}) -> None:",
        )
        b.add("        self.cache['legacy'] = s", "")
    if spec.kind == "legacy":
        for k in range(3):
            b.add(
                f"    def dead_{k}(self) -> Any:", f"        return removed_util_{i}_{k}(self)", ""
            )
            b.harmless += 1
    b.add("")


def _step_method(b: _Builder, i: int, step: int) -> None:
    b.add(f"    def step_{step}(self, payload: dict[str, Any]) -> dict[str, Any]:")
    b.add(f'        """Stage {step} of the pipeline."""')
    b.add("        out = dict(payload)", "        retries = self.config.retries")
    b.add("        for attempt in range(retries):", "            key = f'attempt_{attempt}'")
    b.add(
        "            if key in out:", "                continue", "            out[key] = attempt"
    )
    b.add(f"        if out.get('kind') == Kind{i}.GAMMA.value:", "            out['gamma'] = True")
    b.add("        elif out.get('kind') == 'delta':", "            out['delta'] = len(self.items)")
    b.add("        else:", "            out.setdefault('plain', True)")
    b.add("        try:", f"            out['score'] = float(out.get('score', {step}))")
    b.add("        except (TypeError, ValueError):", "            logger.warning('bad score')")
    b.add("            out['score'] = 0.0", "        return out", "")


def _functions(spec: ModuleSpec, b: _Builder) -> None:
    i = spec.index
    b.add("", f"def helper_{i}(value: int) -> int:", '    """A pure helper."""')
    b.add("    return value * 2 + 1", "", "")
    if b.has("decorator"):
        b.defect("decorator", f"traced_{i}", f"@traced_{i}")
        b.add(f"def traced_helper_{i}(value: int) -> int:", "    return value", "", "")
    if b.has("default"):
        b.defect(
            "default",
            f"DEFAULT_TIMEOUT_{i}",
            f"def configure_{i}(timeout: float = DEFAULT_TIMEOUT_{i}) -> float:",
        )
        b.add("    return timeout", "", "")
    if b.has("future-plain"):
        b.defect("future-plain", f"View{i}", f"def render_{i}(view: View{i}) -> str:")
        b.add("    return str(view)", "", "")
    b.add(f"def get_service_{i}() -> Service{i}:", f"    return Service{i}()", "", "")
    b.add('@router.get("/records/{record_id}")')
    b.add(f"async def get_record_{i}(")
    b.add(f"    record_id: int, service: Service{i} = Depends(get_service_{i})")
    b.add(") -> dict[str, Any]:")
    b.add(
        f"    record = Record{i}(id=record_id, name='r')",
        "    return service.process(record)",
        "",
        "",
    )
    if b.has("fastapi-string"):
        b.add('@router.post("/search")')
        b.defect(
            "fastapi-string",
            f"SearchQuery{i}",
            f'async def search_{i}(query: "SearchQuery{i}") -> list[str]:',
        )
        b.add("    return []", "", "")
    b.add('@router.get("/health")', f"async def health_{i}() -> dict[str, str]:")
    b.add('    return {"status": "ok"}')


def _test_module(spec: ModuleSpec, b: _Builder) -> None:
    i = spec.index
    target = spec.imports[0]
    j = target.index
    b.add(f'"""Tests for {target.module}."""', "", f"from {target.module} import Service{j}", "")
    for k in range(12):
        b.add("", f"def test_case_{k}() -> None:", f"    service = Service{j}()")
        b.add("    assert service.describe()", f"    assert service.step_{k % 8}({{}})")
        if k < 4:
            b.add(f"    assert make_fixture_{i}_{k}() is not None")
            b.harmless += 1
        b.add("")
    if b.has("test-code"):
        b.add("def test_seeded() -> None:")
        b.defect("test-code", f"build_client_{i}", f"    assert build_client_{i}()")
    while len(b.lines) < 150:
        b.add("")


def _foreign(spec: ModuleSpec, rng: random.Random) -> int:
    """The index of another module's Service class that this module does not import."""
    taken = {s.index for s in spec.imports} | {spec.index}
    while True:
        other = rng.randrange(0, max(spec.index, 10))
        if other not in taken:
            return other
