from __future__ import annotations

import pytest

from safeship.core.triage import (
    AnnotationKind,
    Edge,
    Facts,
    Runs,
    Where,
    is_test_path,
    resolve_alias,
    startup_reach,
    triage,
)
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


# -- the project's Python and what runs at startup -------------------------------------------


def test_from_3_14_an_annotation_is_not_evaluated_at_definition() -> None:
    eager = Facts(where=Where.ANNOTATION, annotation=A.EAGER)
    assert triage(eager, reachable=True, is_test=False, target=(3, 13)).tier is STARTUP
    late = triage(eager, reachable=True, is_test=False, target=(3, 14))
    assert late.tier is NOISE and "PEP 649" in late.reason


@pytest.mark.parametrize("library", ["fastapi", "pydantic", "sqlalchemy", "typing"])
def test_from_3_14_a_library_that_evaluates_annotations_still_breaks_startup(
    library: str,
) -> None:
    facts = Facts(where=Where.ANNOTATION, annotation=A.EAGER, evaluated_by=library)
    assert triage(facts, reachable=True, is_test=False, target=(3, 14)).tier is STARTUP


def test_a_function_called_at_startup_breaks_startup_and_says_through_what() -> None:
    facts = Facts(where=Where.FUNCTION_BODY, in_function=True, function="create_app")
    decision = triage(
        facts,
        reachable=True,
        is_test=False,
        module_runs=Runs.AT_STARTUP,
        function_runs=Runs.AT_STARTUP,
        function_via="shop.main:40 app = create_app()",
    )
    assert decision.tier is STARTUP
    assert "`create_app` runs at startup: shop.main:40 app = create_app()" in decision.reason


def test_a_module_imported_only_by_a_handler_breaks_on_call() -> None:
    decision = triage(
        Facts(where=Where.MODULE),
        reachable=True,
        is_test=False,
        module_runs=Runs.ON_CALL,
        module_via="(inside `shop.api.read_item`)",
    )
    assert decision.tier is ON_CALL
    assert "imported only when called (inside `shop.api.read_item`)" in decision.reason


def test_may_break_startup_is_a_note_that_keeps_the_tier() -> None:
    decision = triage(
        Facts(where=Where.FUNCTION_BODY, in_function=True, function="Plugin.setup"),
        reachable=True,
        is_test=False,
        function_runs=Runs.ON_CALL,
        may_break_startup="may break startup: shop.main:3 `plugin.setup()`",
    )
    assert decision.tier is ON_CALL
    assert decision.may_break_startup and "plugin.setup()" in decision.may_break_startup


def test_startup_reach_follows_calls_imports_hooks_and_aliases() -> None:
    edges = {
        "shop": [],
        "shop.main": [
            Edge("shop.factory", "import", 1),
            Edge("shop.main.create_app", "call", 40, "app = create_app()"),
        ],
        "shop.factory": [],
        "shop.factory.create_app": [
            Edge("shop.factory.lifespan", "hook", 12),
            Edge("shop.models.Settings", "call", 13),
        ],
        "shop.factory.lifespan": [Edge("shop.db", "import", 20)],
        "shop.factory.unused": [],
        "shop.models": [],
        "shop.models.Settings.__init__": [Edge("shop.models.load", "call", 5)],
        "shop.models.load": [],
        "shop.db": [],
        "shop.api": [],
        "shop.api.read_item": [Edge("shop.reports", "import", 9)],
        "shop.reports": [],
    }
    aliases = {"shop.main.create_app": "shop.factory.create_app"}
    modules = {
        "shop",
        "shop.main",
        "shop.factory",
        "shop.models",
        "shop.db",
        "shop.api",
        "shop.reports",
    }
    reached = startup_reach(edges, aliases, ["shop", "shop.main"], modules)
    assert {"shop.factory.create_app", "shop.factory.lifespan", "shop.db"} <= set(reached)
    assert {"shop.models.Settings.__init__", "shop.models.load"} <= set(reached)
    assert "shop.factory.unused" not in reached
    assert "shop.reports" not in reached and "shop.api.read_item" not in reached
    step = reached["shop.factory.create_app"]
    assert step.parent == "shop.main" and step.edge and step.edge.line == 40


def test_an_import_edge_runs_modules_not_functions() -> None:
    edges = {"pkg": [Edge("pkg.helper", "import", 1)], "pkg.helper": []}
    assert set(startup_reach(edges, {}, ["pkg"], {"pkg"})) == {"pkg"}


def test_resolve_alias_follows_prefixes_and_stops_on_cycles() -> None:
    aliases = {"shop.create_app": "shop.factory.create_app", "a.x": "b.x", "b.x": "a.x"}
    assert resolve_alias("shop.create_app", aliases) == "shop.factory.create_app"
    assert resolve_alias("shop.create_app.inner", aliases) == "shop.factory.create_app.inner"
    assert resolve_alias("a.x", aliases) in ("a.x", "b.x")
    assert resolve_alias("fastapi.FastAPI", aliases) == "fastapi.FastAPI"


def test_a_module_a_computed_import_may_load_at_startup_is_not_called_on_call_only() -> None:
    # The incident's shape: a startup phase imports agent modules by computed name.
    note = "may break startup: agents.registry.load:35 `importlib.import_module(name)` ..."
    decision = triage(
        Facts(where=Where.MODULE),
        reachable=True,
        is_test=False,
        module_runs=Runs.ON_CALL,
        may_break_startup=note,
    )
    assert decision.tier is ON_CALL
    assert "imported only when called" not in decision.reason
    assert "the call graph can follow does not import the module" in decision.reason
    assert decision.may_break_startup == note


def test_a_plugin_named_as_a_string_and_loaded_by_a_computed_import_breaks_startup() -> None:
    note = "may break startup: app.registry.load:35 `importlib.import_module(name)` ..."
    decision = triage(
        Facts(where=Where.MODULE),
        reachable=True,
        is_test=False,
        module_runs=Runs.ON_CALL,
        may_break_startup=note,
        named_by="app.settings",
    )
    assert decision.tier is Tier.BREAKS_STARTUP
    assert "app.settings names this module as a string" in decision.reason
    assert decision.may_break_startup == note
    # The string alone, with no computed import at startup, is not enough.
    assert triage(
        Facts(where=Where.MODULE), reachable=True, is_test=False, module_runs=Runs.ON_CALL,
        named_by="app.settings",
    ).tier is ON_CALL  # fmt: skip
