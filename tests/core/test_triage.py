from __future__ import annotations

import pytest

from safeship.core.triage import AnnotationKind, Facts, Where, is_test_path, triage
from safeship.gates.model import Tier

A = AnnotationKind
STARTUP, ON_CALL, UNREACHABLE, NOISE = (
    Tier.BREAKS_STARTUP,
    Tier.BREAKS_ON_CALL,
    Tier.UNREACHABLE,
    Tier.NOISE,
)

# (facts, reachable, is_test, expected tier, a word the reason must contain)
CASES = [
    # Evaluated while the module is imported.
    (Facts(where=Where.MODULE), True, False, STARTUP, "imported"),
    (Facts(where=Where.CLASS_BODY), True, False, STARTUP, "class body"),
    (Facts(where=Where.CLASS_BASES), True, False, STARTUP, "bases"),
    (Facts(where=Where.DECORATOR), True, False, STARTUP, "decorator"),
    (Facts(where=Where.DEFAULT), True, False, STARTUP, "default"),
    (Facts(where=Where.ANNOTATION, annotation=A.EAGER), True, False, STARTUP, "__future__"),
    (Facts(syntax_error=True), True, False, STARTUP, "syntax error"),
    # Deferred annotations that a framework evaluates at startup.
    (
        Facts(where=Where.ANNOTATION, annotation=A.STRING, evaluated_by="fastapi"),
        True,
        False,
        STARTUP,
        "FastAPI",
    ),
    (
        Facts(where=Where.ANNOTATION, annotation=A.FUTURE, evaluated_by="pydantic"),
        True,
        False,
        STARTUP,
        "pydantic",
    ),
    # Inside a function body.
    (
        Facts(where=Where.FUNCTION_BODY, in_function=True, function="A.run"),
        True,
        False,
        ON_CALL,
        "A.run",
    ),
    (
        Facts(where=Where.ANNOTATION, annotation=A.EAGER, in_function=True, function="f"),
        True,
        False,
        ON_CALL,
        "`f`",
    ),
    (Facts(where=Where.ALL_EXPORT), True, False, ON_CALL, "import *"),
    # Not imported by the entry points.
    (Facts(where=Where.MODULE), False, False, UNREACHABLE, "never import"),
    (Facts(where=Where.FUNCTION_BODY, in_function=True), False, False, UNREACHABLE, "never import"),
    (Facts(syntax_error=True), False, False, UNREACHABLE, "never import"),
    # Never fires, wherever it is.
    (Facts(where=Where.MODULE), True, True, NOISE, "test"),
    (Facts(where=Where.MODULE, type_checking=True), True, False, NOISE, "TYPE_CHECKING"),
    (Facts(where=Where.MODULE, guarded_import=True), True, False, NOISE, "ImportError"),
    (Facts(where=Where.MODULE, main_guard=True), True, False, NOISE, "__main__"),
    (Facts(where=Where.MODULE, globals_write=True), True, False, NOISE, "globals()"),
    (Facts(where=Where.MODULE, target_dynamic=True), True, False, NOISE, "dynamically"),
    (Facts(where=Where.ALL_EXPORT, module_getattr=True), True, False, NOISE, "__getattr__"),
    (Facts(where=Where.ANNOTATION, annotation=A.STRING), True, False, NOISE, "quoted"),
    (Facts(where=Where.ANNOTATION, annotation=A.FUTURE), True, False, NOISE, "runtime-only"),
    (
        Facts(where=Where.ANNOTATION, annotation=A.LOCAL, in_function=True),
        True,
        False,
        NOISE,
        "local",
    ),
    # Unreachable wins over what the AST says: modules nobody imports are not parsed.
    (Facts(where=Where.ANNOTATION, annotation=A.STRING), False, False, UNREACHABLE, "never"),
    (Facts(type_checking=True), False, False, UNREACHABLE, "never import"),
    (Facts(where=Where.MODULE), False, True, NOISE, "test"),
    # A legacy name still resolves: a warning, wherever it is used (but not in tests).
    (Facts(legacy_reference=True), True, False, Tier.WARNING, "legacy"),
    (Facts(legacy_reference=True), False, False, Tier.WARNING, "legacy"),
    (Facts(legacy_reference=True), True, True, NOISE, "test"),
]


@pytest.mark.parametrize(("facts", "reachable", "is_test", "tier", "word"), CASES)
def test_triage_table(facts: Facts, reachable: bool, is_test: bool, tier: Tier, word: str) -> None:
    decision = triage(facts, reachable=reachable, is_test=is_test)
    assert decision.tier is tier
    assert word in decision.reason


def test_module_getattr_does_not_hide_a_bare_name() -> None:
    # A module-level __getattr__ serves `module.attr` from outside, never a bare name inside.
    decision = triage(Facts(where=Where.MODULE, module_getattr=True), reachable=True, is_test=False)
    assert decision.tier is STARTUP


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/test_app.py", True),
        ("pkg/tests/helpers.py", True),
        ("test/x.py", True),
        ("pkg/test_utils.py", True),
        ("pkg/utils_test.py", True),
        ("conftest.py", True),
        ("pkg/conftest.py", True),
        ("pkg/testing.py", False),
        ("pkg/contest.py", False),
        ("pkg/attestation.py", False),
        ("tests.py", False),
    ],
)
def test_is_test_path(path: str, expected: bool) -> None:
    assert is_test_path(path) is expected
