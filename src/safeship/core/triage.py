"""The tier of a static finding: how certain it is to break the service, and why.

Pure: the facts come from the AST context of the finding (``gates/static/context.py``) and from
reachability (``gates/static/graph.py``); this module only decides. The rules are applied in a fixed
order -- test code first, then whether the service imports the module at all, then the
reasons a finding can never fire at runtime, then *when* the faulty expression is evaluated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AnnotationKind",
    "Decision",
    "Edge",
    "Facts",
    "Runs",
    "Step",
    "Tier",
    "Where",
    "is_test_path",
    "resolve_alias",
    "startup_reach",
    "triage",
]


class Tier(StrEnum):
    """How certain it is that a finding breaks the service, most certain first."""

    BREAKS_STARTUP = "breaks-startup"
    BREAKS_ON_CALL = "breaks-on-call"
    UNREACHABLE = "unreachable"
    NOISE = "noise"
    ENVIRONMENT = "environment"
    """The environment lacks a declared distribution: install the project's dependencies."""
    # Findings of gates other than static are not triaged by reachability.
    ERROR = "error"
    WARNING = "warning"


class Where(StrEnum):
    """The construct whose evaluation reaches the faulty name (the innermost one)."""

    MODULE = "module"
    CLASS_BODY = "class-body"
    CLASS_BASES = "class-bases"
    DECORATOR = "decorator"
    DEFAULT = "default"
    ANNOTATION = "annotation"
    FUNCTION_BODY = "function-body"
    ALL_EXPORT = "all-export"
    """A string in ``__all__`` (F822): fails only on ``from module import *``."""


class AnnotationKind(StrEnum):
    EAGER = "eager"
    """Unquoted, evaluated when the ``def``/``class`` statement runs."""
    STRING = "string"
    """Inside a quoted (string) annotation."""
    FUTURE = "future"
    """Deferred by ``from __future__ import annotations``."""
    LOCAL = "local"
    """The annotation of a local variable: the compiler never evaluates it."""


@dataclass(frozen=True)
class Facts:
    """What the AST says about where a finding's name is evaluated."""

    where: Where = Where.MODULE
    in_function: bool = False
    """Evaluated only when an enclosing function (or lambda) runs."""
    function: str | None = None
    """The qualname of that innermost enclosing function."""
    annotation: AnnotationKind | None = None
    evaluated_by: str | None = None
    """``fastapi``, ``pydantic`` or ``sqlalchemy`` when a library evaluates the annotation
    when the function or class is defined (also from Python 3.14 on)."""
    type_checking: bool = False
    guarded_import: bool = False
    """Inside the ``try`` body of a ``try``/``except ImportError``."""
    compat_branch: bool = False
    """In a branch of a feature check (``find_spec``, ``hasattr``, a version test) or an
    ``except ImportError/AttributeError`` fallback: code for another version of a package."""
    installed_member: bool = False
    """The finding is a member missing from an installed third-party package."""
    main_guard: bool = False
    """Inside ``if __name__ == "__main__":``."""
    module_getattr: bool = False
    """The module defines ``__getattr__`` (PEP 562)."""
    globals_write: bool = False
    """The module writes ``globals()[...]``, so names may be defined at runtime."""
    target_dynamic: bool = False
    """The module the name is imported from defines ``__getattr__`` or writes ``globals()``."""
    syntax_error: bool = False
    legacy_reference: bool = False
    """A banned legacy name (TID251): works as long as the old name still exists."""


class Runs(StrEnum):
    """When the code holding a finding runs, from the startup call graph."""

    AT_STARTUP = "at-startup"
    """Imported or called while the app is imported and started (lifespan included)."""
    ON_CALL = "on-call"
    """Only when a request, a task or another caller runs it."""
    UNKNOWN = "unknown"
    """No call graph: module bodies count as startup, function bodies as on-call."""


@dataclass(frozen=True)
class Decision:
    tier: Tier
    reason: str
    may_break_startup: str | None = None
    """Why the finding, though not proven to run at startup, may: the call graph could not
    be resolved there (dynamic dispatch, ``getattr``). Never changes the tier."""


_TEST_DIRS = frozenset({"tests", "test"})


def is_test_path(path: str) -> bool:
    """``tests/`` or ``test/`` anywhere in the path, ``test_*.py``, ``*_test.py``, ``conftest.py``."""
    parts = path.replace("\\", "/").split("/")
    name = parts[-1]
    return (
        any(part in _TEST_DIRS for part in parts[:-1])
        or name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
    )


_STARTUP_REASONS = {
    Where.MODULE: "runs when the module is imported",
    Where.CLASS_BODY: "the class body runs when the module is imported",
    Where.CLASS_BASES: "the class bases are evaluated when the module is imported",
    Where.DECORATOR: "the decorator is evaluated when the module is imported",
    Where.DEFAULT: "default values are evaluated when the function is defined, at import",
    Where.ANNOTATION: (
        "the annotation is evaluated when the function or class is defined, at import; "
        "the module has no `from __future__ import annotations`"
    ),
}

_EVALUATORS = {
    "fastapi": "FastAPI evaluates this annotation when the route is registered, at startup",
    "pydantic": "pydantic evaluates this field annotation when the model class is built",
    "sqlalchemy": "SQLAlchemy evaluates this mapped annotation when the class is declared",
    "typing": "the module calls typing.get_type_hints at import, which evaluates annotations",
}


def triage(
    facts: Facts,
    *,
    reachable: bool,
    is_test: bool,
    target: tuple[int, int] = (3, 11),
    module_runs: Runs = Runs.UNKNOWN,
    module_via: str | None = None,
    function_runs: Runs = Runs.UNKNOWN,
    function_via: str | None = None,
    may_break_startup: str | None = None,
    named_by: str | None = None,
) -> Decision:
    """Decide the tier of one finding.

    Args:
        facts: where the faulty name is evaluated (from the AST context).
        reachable: whether the entry points import the finding's module, directly or lazily.
        is_test: whether the file is test code.
        target: the Python version the code is written for: from 3.14 (PEP 649/749)
            annotations are not evaluated when a function or class is defined.
        module_runs: whether the module's body runs at startup (imported by startup code) or
            only when a request or task imports it; ``module_via`` says where.
        function_runs: for a finding in a function body, whether startup code calls the
            function, transitively; ``function_via`` names the call.
        may_break_startup: why the call graph could not tell (kept as a note).
        named_by: a module that runs at startup and names this one as a string, while startup
            code imports a computed name: the plugin registry the computed import reads from.

    Returns:
        The tier and a one-line reason a user can read.
    """
    decision = _decide(facts, reachable, is_test, target, function_runs, function_via)
    if (
        decision.tier is Tier.BREAKS_STARTUP
        and module_runs is Runs.ON_CALL
        and named_by
        and may_break_startup
    ):
        # Both halves are facts read from the code: startup imports a name computed at run time,
        # and a module that runs at startup writes this module's name as a string. That is how
        # plugin registries load their plugins (the incident's agent modules).
        return Decision(
            Tier.BREAKS_STARTUP,
            f"{decision.reason}; {named_by} names this module as a string and startup code "
            "imports a computed name",
            may_break_startup,
        )
    if decision.tier is Tier.BREAKS_STARTUP and module_runs is Runs.ON_CALL:
        via = f" {module_via}" if module_via else ""
        # With a computed import at startup the walk cannot say "only when called": it says
        # what it saw and leaves the doubt in the note, never a silent guess either way.
        seen = (
            "the startup code the call graph can follow does not import the module"
            if may_break_startup
            else "the module is imported only when called"
        )
        return Decision(
            Tier.BREAKS_ON_CALL, f"{decision.reason}; but {seen}{via}", may_break_startup
        )
    if decision.tier is Tier.BREAKS_ON_CALL and may_break_startup:
        return Decision(decision.tier, decision.reason, may_break_startup)
    return decision


def _decide(
    facts: Facts,
    reachable: bool,
    is_test: bool,
    target: tuple[int, int],
    function_runs: Runs,
    function_via: str | None,
) -> Decision:
    if is_test:
        return Decision(Tier.NOISE, "test code: the service never imports it")
    if facts.legacy_reference:
        return Decision(Tier.WARNING, "reference to a legacy name; works until it is removed")
    # Decided before the AST facts: a module nobody imports is not parsed at all.
    if not reachable:
        return Decision(Tier.UNREACHABLE, "the entry points never import this module")
    silent = _never_fires(facts)
    if silent is not None:
        return Decision(Tier.NOISE, silent)
    if facts.syntax_error:
        return Decision(Tier.BREAKS_STARTUP, "syntax error: the module cannot be imported")
    if facts.annotation is AnnotationKind.EAGER and target >= (3, 14) and not facts.evaluated_by:
        return Decision(
            Tier.NOISE,
            f"Python {target[0]}.{target[1]} does not evaluate annotations at definition "
            "(PEP 649): fails only if something reads them (typing.get_type_hints)",
        )
    if facts.in_function:
        where = f"`{facts.function}`" if facts.function else "the function"
        if function_runs is Runs.AT_STARTUP:
            via = f": {function_via}" if function_via else ""
            return Decision(Tier.BREAKS_STARTUP, f"{where} runs at startup{via}")
        return Decision(Tier.BREAKS_ON_CALL, f"fails when {where} runs")
    if facts.where is Where.ALL_EXPORT:
        return Decision(Tier.BREAKS_ON_CALL, "fails on `from module import *`")
    if facts.annotation in (AnnotationKind.STRING, AnnotationKind.FUTURE) and facts.evaluated_by:
        return Decision(Tier.BREAKS_STARTUP, _EVALUATORS[facts.evaluated_by])
    reason = _STARTUP_REASONS.get(facts.where, "runs when the module is imported")
    return Decision(Tier.BREAKS_STARTUP, reason)


def _never_fires(facts: Facts) -> str | None:
    """Why the finding can never raise in the running service, or None."""
    if facts.type_checking:
        return "inside `if TYPE_CHECKING:`: never runs"
    if facts.guarded_import:
        return "inside try/except ImportError: the failure is handled"
    if facts.compat_branch and facts.installed_member:
        return (
            "a compatibility branch for another version of an installed package "
            "(a feature check or an ImportError fallback)"
        )
    if facts.main_guard:
        return 'inside `if __name__ == "__main__":`: runs only as a script'
    if facts.target_dynamic:
        return "the module provides names dynamically (`__getattr__` or `globals()`)"
    if facts.globals_write:
        return "the module writes `globals()`: the name may be defined at runtime"
    if facts.module_getattr and facts.where is Where.ALL_EXPORT:
        return "the module's `__getattr__` provides names listed in `__all__`"
    if facts.annotation is AnnotationKind.LOCAL:
        return "annotation of a local variable: never evaluated"
    if facts.annotation is AnnotationKind.STRING and not facts.evaluated_by:
        return "quoted annotation: never evaluated"
    if facts.annotation is AnnotationKind.FUTURE and not facts.evaluated_by:
        return (
            "annotation deferred by `from __future__ import annotations`: "
            "fails only if something calls typing.get_type_hints (runtime-only)"
        )
    return None


# -- what runs at startup ---------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """One way a unit of code makes another run: ``call`` (``create_app()``; calling a
    class runs its ``__init__``), ``import`` (``import shop.db``), ``hook`` (``lifespan=...``,
    ``on_event("startup")``) or ``attribute`` (``settings.oauth``, which runs a property)."""

    target: str
    """A dotted name: ``shop.factory.create_app``, ``shop.db`` (module), ``shop.models.User``."""
    kind: str
    line: int
    text: str = ""
    """The source of the statement, e.g. ``app = create_app()``."""


@dataclass(frozen=True)
class Step:
    """How a unit was reached: from ``parent`` through ``edge``; None for a root."""

    parent: str | None
    edge: Edge | None


def startup_reach(
    edges: Mapping[str, Iterable[Edge]],
    aliases: Mapping[str, str],
    roots: Iterable[str],
    modules: AbstractSet[str],
    properties: AbstractSet[str] = frozenset(),
) -> dict[str, Step]:
    """Every unit that runs at startup, breadth-first from ``roots`` (the entry modules).

    A unit is a module (its body) or a function, named by its dotted name. ``aliases`` maps
    a name bound by an import to what it names (``shop.create_app`` ->
    ``shop.factory.create_app``); they are followed to a unit with edges. A class is not a
    unit: calling ``shop.models.User`` runs ``shop.models.User.__init__`` when it exists.
    ``modules`` are the units that are modules: only they are run by an ``import`` edge;
    ``properties`` the functions an ``attribute`` edge (``settings.oauth``) runs.

    Returns:
        unit -> the step that first reached it (a shortest chain to each).
    """
    reached: dict[str, Step] = {}
    queue: deque[str] = deque()
    for root in roots:
        if root in edges and root not in reached:
            reached[root] = Step(None, None)
            queue.append(root)
    while queue:
        current = queue.popleft()
        for edge in edges.get(current, ()):
            for unit in _units(edge, edges, aliases, modules, properties):
                if unit not in reached:
                    reached[unit] = Step(current, edge)
                    queue.append(unit)
    return reached


def _units(
    edge: Edge,
    edges: Mapping[str, Iterable[Edge]],
    aliases: Mapping[str, str],
    modules: AbstractSet[str],
    properties: AbstractSet[str],
) -> list[str]:
    name = resolve_alias(edge.target, aliases)
    if edge.kind == "attribute":
        return [name] if name in properties else []
    if edge.kind == "import":
        # Importing a.b.c runs a, a.b, then a.b.c.
        parts = name.split(".")
        prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
        return [p for p in prefixes if p in modules]
    out = [name] if name in edges and name not in modules else []
    for special in ("__init__", "__post_init__", "__new__"):
        if f"{name}.{special}" in edges:
            out.append(f"{name}.{special}")
    return out


def resolve_alias(name: str, aliases: Mapping[str, str]) -> str:
    """Follow import aliases (``pkg.name`` -> ``pkg.mod.name``), also for a prefix of the
    name (``pkg.mod.Class.method`` when ``pkg.mod.Class`` is an alias); stops on a cycle."""
    seen: set[str] = set()
    while name not in seen:
        seen.add(name)
        if name in aliases:
            name = aliases[name]
            continue
        head, dot, tail = name.rpartition(".")
        while dot and head not in aliases:
            head, dot, rest = head.rpartition(".")
            tail = f"{rest}.{tail}"
        if not dot:
            return name
        name = f"{aliases[head]}.{tail}"
    return name
