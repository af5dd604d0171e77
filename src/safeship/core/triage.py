"""The tier of a static finding: how certain it is to break the service, and why.

Pure: the facts come from the AST context of the finding (``gates/static/context.py``) and from
reachability (``gates/static/graph.py``); this module only decides. The rules are applied in a fixed
order -- test code first, then whether the service imports the module at all, then the
reasons a finding can never fire at runtime, then *when* the faulty expression is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["AnnotationKind", "Decision", "Facts", "Tier", "Where", "is_test_path", "triage"]


class Tier(StrEnum):
    """How certain it is that a finding breaks the service, most certain first."""

    BREAKS_STARTUP = "breaks-startup"
    BREAKS_ON_CALL = "breaks-on-call"
    UNREACHABLE = "unreachable"
    NOISE = "noise"
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
    """``fastapi`` or ``pydantic`` when the framework evaluates a deferred annotation."""
    type_checking: bool = False
    guarded_import: bool = False
    """Inside the ``try`` body of a ``try``/``except ImportError``."""
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


@dataclass(frozen=True)
class Decision:
    tier: Tier
    reason: str


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
}


def triage(facts: Facts, *, reachable: bool, is_test: bool) -> Decision:
    """Decide the tier of one finding.

    Args:
        facts: where the faulty name is evaluated (from the AST context).
        reachable: whether the entry points import the finding's module, directly or lazily.
        is_test: whether the file is test code.

    Returns:
        The tier and a one-line reason a user can read.
    """
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
    if facts.in_function:
        where = f"`{facts.function}`" if facts.function else "the function"
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
