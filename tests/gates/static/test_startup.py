"""gates/static/startup.py (units and edges from the AST) and what the gate makes of them:
what really runs when the app is imported and started."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

from safeship.config import Manifest
from safeship.gates.model import Finding, GateResult, Tier
from safeship.gates.runner import build_context
from safeship.gates.static.gate import StaticGate
from safeship.gates.static.startup import ModuleUnits, read_units


def _units(source: str, module: str = "shop.main", package: bool = False) -> ModuleUnits:
    text = textwrap.dedent(source)
    return read_units(module, package, ast.parse(text), text.splitlines())


def test_calls_imports_and_hooks_are_edges_of_the_unit_that_runs_them() -> None:
    units = _units(
        """
        import importlib
        from fastapi import FastAPI
        from shop.factory import create_app
        from . import plugins

        def lifespan(app): ...
        def on_boot(): ...

        app = create_app()
        api = FastAPI(lifespan=lifespan, on_startup=[on_boot])
        importlib.import_module("shop.extra")

        @api.on_event("startup")
        def warm(): ...

        @api.on_event("shutdown")
        def bye(): ...

        def helper():
            from shop import reports
            reports.build()
        """
    )
    main = {(e.target, e.kind) for e in (units.edges_of("shop.main") or [])}
    assert ("shop.factory.create_app", "call") in main
    assert ("shop.main.lifespan", "hook") in main
    assert ("shop.main.on_boot", "hook") in main
    assert ("shop.main.warm", "hook") in main
    assert ("shop.main.bye", "hook") not in main
    assert ("shop.extra", "import") in main
    assert ("shop.plugins", "import") in main
    helper = {(e.target, e.kind) for e in (units.edges_of("shop.main.helper") or [])}
    assert helper == {
        ("shop", "import"),
        ("shop.reports", "import"),
        ("shop.reports.build", "call"),
    }
    assert units.aliases["shop.main.create_app"] == "shop.factory.create_app"
    call = next(
        e
        for e in (units.edges_of("shop.main") or [])
        if e.target == "shop.factory.create_app" and e.kind == "call"
    )
    assert (call.line, call.text) == (10, "app = create_app()")


def test_methods_self_calls_classes_and_dynamic_sites() -> None:
    units = _units(
        """
        class Registry:
            def __init__(self):
                self.load()
                super().__init__()

            def load(self):
                for plugin in self.plugins:
                    plugin.setup()
                getattr(self, name)()

        REGISTRY = Registry()
        """
    )
    assert ("shop.main.Registry", "call") in {
        (e.target, e.kind) for e in (units.edges_of("shop.main") or [])
    }
    init = {e.target for e in (units.edges_of("shop.main.Registry.__init__") or [])}
    assert init == {"shop.main.Registry.load"}
    units.edges_of("shop.main.Registry.load")  # a body is read when the walk needs it
    dynamic = {site.attribute for site in units.dynamic["shop.main.Registry.load"]}
    assert dynamic == {"setup", None}
    assert units.function_at(9) == "shop.main.Registry.load"


def test_safeship_phases_are_startup_hooks() -> None:
    units = _units(
        """
        from safeship.service import Phase

        @ship.phase("db")
        async def connect(): ...

        def warm(): ...

        startup.add_phase(Phase("cache", warm))
        """
    )
    hooks = {e.target for e in (units.edges_of("shop.main") or []) if e.kind == "hook"}
    assert hooks == {"shop.main.connect", "shop.main.warm"}


# -- the gate on small projects -------------------------------------------------------------


def _project(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _run(root: Path, entry: str = "shop.main") -> GateResult:
    ctx = build_context(
        root,
        Manifest(root=root),
        "development",
        entries=[entry],
        base_environ={},
        python=sys.prefix,
    )
    return StaticGate().run(ctx)


def _at(result: GateResult, path: str, line: int) -> Finding:
    return next(f for f in result.findings if f.path == path and f.line == line)


SHOP = {
    "shop/__init__.py": "",
    "shop/main.py": """\
        from fastapi import FastAPI

        from shop.factory import create_app
        from shop.settings import get_settings

        settings = get_settings()
        app = create_app()
        """,
    "shop/factory.py": """\
        from contextlib import asynccontextmanager

        from fastapi import FastAPI


        @asynccontextmanager
        async def lifespan(app):
            await warm_caches()
            yield


        def create_app() -> FastAPI:
            app = FastAPI(lifespan=lifespan)
            app.add_middleware(SessionMidleware)
            from shop import api

            app.include_router(api.router)
            return app
        """,
    "shop/settings.py": """\
        def get_settings():
            return Settings(timeout=DEFAULT_TIMEOUT)
        """,
    "shop/api.py": """\
        from fastapi import APIRouter

        router = APIRouter()


        @router.get("/items")
        async def read_item():
            from shop import reports

            return reports.build(missing_helper())
        """,
    "shop/reports.py": """\
        TEMPLATE = load_template()


        def build(x):
            return x
        """,
}


def test_a_typo_inside_a_factory_called_at_import_breaks_startup(tmp_path: Path) -> None:
    _project(tmp_path, SHOP)
    result = _run(tmp_path)
    finding = _at(result, "shop/factory.py", 14)
    assert finding.tier is Tier.BREAKS_STARTUP and finding.blocking
    assert finding.chain == (
        "shop.main:7 app = create_app()",
        "shop.factory.create_app:14",
        "NameError: SessionMidleware",
    )
    settings = _at(result, "shop/settings.py", 2)
    assert settings.tier is Tier.BREAKS_STARTUP
    assert settings.chain[0] == "shop.main:6 settings = get_settings()"


def test_the_lifespan_runs_at_startup(tmp_path: Path) -> None:
    _project(tmp_path, SHOP)
    finding = _at(_run(tmp_path), "shop/factory.py", 8)
    assert finding.tier is Tier.BREAKS_STARTUP
    assert finding.chain[1] == "shop.factory.create_app:13 app = FastAPI(lifespan=lifespan)"


def test_handlers_and_the_modules_only_they_import_break_on_call(tmp_path: Path) -> None:
    _project(tmp_path, SHOP)
    result = _run(tmp_path)
    handler = _at(result, "shop/api.py", 10)
    assert handler.tier is Tier.BREAKS_ON_CALL and not handler.blocking
    lazy = _at(result, "shop/reports.py", 1)
    assert lazy.tier is Tier.BREAKS_ON_CALL
    assert "imported only when called (inside `shop.api.read_item`)" in lazy.message
    assert lazy.chain[-1] == "NameError: load_template"


def test_an_app_factory_entry_counts_its_body(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "svc/__init__.py": "",
            "svc/app.py": "def make_app():\n    return build(UNDEFINED_CONFIG)\n",
        },
    )
    assert _at(_run(tmp_path, "svc.app"), "svc/app.py", 2).tier is Tier.BREAKS_ON_CALL
    factory = _at(_run(tmp_path, "svc.app:make_app"), "svc/app.py", 2)
    assert factory.tier is Tier.BREAKS_STARTUP


def test_dynamic_dispatch_at_startup_is_a_note(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "svc/__init__.py": "",
            "svc/main.py": """\
                from svc.plugins import PLUGINS

                for plugin in PLUGINS:
                    plugin.setup()
                """,
            "svc/plugins.py": """\
                class Cache:
                    def setup(self):
                        return connect(CACHE_URLL)


                PLUGINS = [Cache()]
                """,
        },
    )
    finding = _at(_run(tmp_path, "svc.main"), "svc/plugins.py", 3)
    assert finding.tier is Tier.BREAKS_ON_CALL
    note = finding.extra["may_break_startup"]
    assert "svc.main:4 `plugin.setup()`" in note and "not known statically" in note


def test_properties_and_instances_made_at_import_are_followed(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "svc/__init__.py": "",
            # A package wins over a module of the same name.
            "svc/utils.py": "def parse():\n    return 1\n",
            "svc/utils/__init__.py": "from .params import parse\n",
            "svc/utils/params.py": "def parse():\n    return Optionl[int]\n",
            "svc/settings.py": """\
                class Settings:
                    @property
                    def oauth(self):
                        return load_backendz()


                settings = Settings()
                """,
            "svc/main.py": """\
                from svc.settings import settings
                from svc.utils import parse

                PARSED = parse()
                ENABLED = settings.oauth
                """,
        },
    )
    result = _run(tmp_path, "svc.main")
    assert _at(result, "svc/utils/params.py", 2).tier is Tier.BREAKS_STARTUP
    oauth = _at(result, "svc/settings.py", 4)
    assert oauth.tier is Tier.BREAKS_STARTUP
    assert oauth.chain[0] == "svc.main:5 ENABLED = settings.oauth"


def test_the_skeleton_elides_bodies_and_keeps_lines() -> None:
    from safeship.gates.static.startup import skeleton

    text = textwrap.dedent(
        '''\
        import x


        @decorate("a(b")
        def f(a: dict[str, int] = {"k": (1, 2)},
              b=lambda: 0) -> "R":
            """Doc."""
            def inner():
                return 1
            return inner()


        def g(): return 2


        class C:
            def m(self):
                return self.n

        app = f()
        '''
    )
    elided, ends = skeleton(text) or ("", {})
    assert len(elided.split("\\n")) == len(text.split("\\n"))
    tree = ast.parse(elided)
    assert ends == {5: 10, 17: 18}  # def line -> last body line
    assert "inner" not in elided and "return 2" in elided and "app = f()" in elided
    assert [type(n).__name__ for n in tree.body] == [
        "Import",
        "FunctionDef",
        "FunctionDef",
        "ClassDef",
        "Assign",
    ]
    assert skeleton('def f(x="""\\n"""):\\n    pass\\n') is None  # a string in the header


def test_a_plugin_named_in_a_registry_and_imported_by_a_computed_name_breaks_startup(
    tmp_path: Path,
) -> None:
    # The incident's shape: a startup phase loads agent modules named as strings.
    _project(
        tmp_path,
        {
            "svc/__init__.py": "",
            "svc/agents/__init__.py": "",
            "svc/settings.py": 'AGENTS = {"history": "svc.agents.history"}\n',
            "svc/registry.py": """\
                import importlib

                from svc.settings import AGENTS


                def load_all():
                    return [importlib.import_module(path) for path in AGENTS.values()]
                """,
            "svc/agents/history.py": """\
                class History:
                    def __init__(self, sessions: DatabaseSessionManager) -> None:
                        self.sessions = sessions

                    def run(self):
                        return DatabaseSessionManager.open()
                """,
            "svc/main.py": """\
                from svc.registry import load_all

                agents = load_all()
                """,
        },
    )
    result = _run(tmp_path, "svc.main")
    at_import = _at(result, "svc/agents/history.py", 2)
    assert at_import.tier is Tier.BREAKS_STARTUP
    assert "svc.settings names this module as a string" in at_import.message
    assert "import_module" in at_import.extra["may_break_startup"]
    assert _at(result, "svc/agents/history.py", 6).tier is Tier.BREAKS_ON_CALL


def test_a_module_named_as_a_string_without_a_computed_import_is_not_startup(
    tmp_path: Path,
) -> None:
    _project(
        tmp_path,
        {
            "svc/__init__.py": "",
            "svc/settings.py": 'WORKER = "svc.worker"\n',
            "svc/worker.py": "RETRIES = retries_from(ENVIRONMNT)\n",
            "svc/main.py": "from svc.settings import WORKER\n\napp = object()\n",
        },
    )
    finding = _at(_run(tmp_path, "svc.main"), "svc/worker.py", 1)
    assert finding.tier is not Tier.BREAKS_STARTUP
