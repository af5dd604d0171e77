"""gates/static/environment.py, and the gate in the project's Python and environment:
declared and undeclared distributions, merged namespaces, shadowing folders, the target
version, and no bypass through the project's engine configuration."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

from safeship.config import Manifest
from safeship.gates.model import Finding, GateResult, Tier
from safeship.gates.runner import build_context
from safeship.gates.static.environment import (
    declared_distributions,
    distribution_of,
    normalize,
    resolves_in,
)
from safeship.gates.static.gate import StaticGate


def _project(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _venv(path: Path) -> Path:
    """A real environment with nothing installed (this interpreter, empty site-packages)."""
    major, minor = sys.version_info[:2]
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    (path / f"lib/python{major}.{minor}/site-packages").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {major}.{minor}.0\n"
    )
    return path


def _run(root: Path, entry: str = "app.main", **kwargs: Any) -> GateResult:
    ctx = build_context(
        root, Manifest(root=root), "development", entries=[entry], base_environ={}, **kwargs
    )
    return StaticGate().run(ctx)


def _rule(result: GateResult, rule: str) -> list[Finding]:
    return [f for f in result.findings if f.rule == rule]


def test_declared_distributions_from_every_kind_of_file(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "pyproject.toml": """\
                [project]
                name = "x"
                dependencies = ["FastAPI>=0.110", "pydantic_settings"]
                [project.optional-dependencies]
                db = ["SQLAlchemy[asyncio]"]
                [tool.poetry.dependencies]
                python = "^3.12"
                Redis = "^5"
                """,
            "requirements-dev.txt": "pytest==8.0  # tests\n-r requirements.txt\n",
            "setup.cfg": "[options]\ninstall_requires =\n    httpx>=0.27\n",
            "PKG-INFO": "Name: x\nRequires-Dist: PyYAML>=6\n",
        },
    )
    declared = declared_distributions(tmp_path)
    assert declared.names >= {
        "fastapi",
        "pydantic-settings",
        "sqlalchemy",
        "redis",
        "pytest",
        "httpx",
        "pyyaml",
    }
    assert "python" not in declared.names
    assert distribution_of("yaml", declared) == "pyyaml"
    assert distribution_of("pydantic_settings.sources", declared) == "pydantic-settings"
    assert distribution_of("unknown_mod", declared) == "unknown-mod"
    assert normalize("Foo_Bar.baz") == "foo-bar-baz"


def test_namespace_portions_resolve_across_directories(tmp_path: Path) -> None:
    _project(tmp_path, {"a/ns/__init__.py": "", "b/ns/plugin.py": "", "b/mod.py": ""})
    assert resolves_in("ns.plugin", [tmp_path / "a", tmp_path / "b"])
    assert resolves_in("mod", [tmp_path / "a", tmp_path / "b"])
    assert not resolves_in("ns.other", [tmp_path / "a", tmp_path / "b"])


APP = {
    "pyproject.toml": '[project]\nname = "app"\ndependencies = ["fastapi", "alembic"]\n',
    "app/__init__.py": "",
    "app/main.py": """\
        import fastapi
        import undeclared_lib
        from alembic import op

        from app import views
        """,
    "app/views.py": "def handler():\n    import fastapi.responses\n    return fastapi.responses\n",
    # A migrations folder named like the distribution, not a package.
    "alembic/env.py": "config = 1\n",
}


def test_without_an_environment_missing_packages_are_environment_findings(tmp_path: Path) -> None:
    _project(tmp_path, APP)
    result = _run(tmp_path)
    assert result.summary["python"]["isolated"] is True
    environment = {f.symbol: f for f in result.findings if f.tier is Tier.ENVIRONMENT}
    assert set(environment) == {"fastapi", "alembic", "undeclared-lib"}
    fastapi = environment["fastapi"]
    assert fastapi.rule == "missing-distribution" and not fastapi.blocking
    assert fastapi.extra["declared"] is True
    assert fastapi.extra["importers"] == ["app.main", "app.views"]
    assert "declared in pyproject.toml" in fastapi.message
    assert environment["undeclared-lib"].extra["declared"] is False
    # The alembic/ folder does not shadow the distribution: no first-party finding on it.
    assert not [
        f
        for f in result.findings
        if f.path == "app/main.py" and f.line == 3 and f.tier is not Tier.ENVIRONMENT
    ]
    assert not [f for f in result.findings if f.tier is Tier.BREAKS_STARTUP]


def test_in_a_real_environment_an_undeclared_import_at_startup_blocks(tmp_path: Path) -> None:
    _project(tmp_path, APP)
    result = _run(tmp_path, python=str(_venv(tmp_path / ".venv")))
    assert result.summary["python"]["interpreter_source"] == "--python"
    undeclared = _rule(result, "undeclared-dependency")
    assert [(f.path, f.line, f.tier) for f in undeclared] == [
        ("app/main.py", 2, Tier.BREAKS_STARTUP)
    ]
    assert "imported at startup but not a declared dependency" in undeclared[0].message
    assert undeclared[0].blocking
    declared = {f.symbol for f in _rule(result, "missing-distribution")}
    assert declared == {"fastapi", "alembic"}


def test_pkgutil_extend_path_packages_resolve_in_the_environment(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "env")
    site = next((venv / "lib").glob("python*/site-packages"))
    _project(site, {"corp/__init__.py": "", "corp/auth.py": "TOKEN = 1\n"})
    _project(
        tmp_path / "proj",
        {
            "corp/__init__.py": (
                "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"
            ),
            "corp/app.py": "from corp import auth\nfrom corp.auth import TOKEN\nimport corp.auth\n",
        },
    )
    result = _run(tmp_path / "proj", "corp.app", python=str(venv))
    assert [f for f in result.findings if f.tier is not Tier.NOISE] == []


def test_syntax_of_the_target_version_is_never_a_finding(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.12"\n',
            "app/__init__.py": "",
            "app/main.py": "type Alias = list[int]\n\ndef first[T](items: list[T]) -> T:\n    return items[0]\n",
        },
    )
    result = _run(tmp_path, python=sys.prefix)
    assert result.summary["python"]["target_version"] == "3.12"
    assert [f.rule for f in result.findings] == []
    older = _run(tmp_path, python=sys.prefix, python_version="3.11")
    assert [f.rule for f in older.findings] == ["invalid-syntax"]


def test_3_14_defers_annotations_except_where_fastapi_reads_them(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": """\
                from fastapi import Depends, FastAPI

                app = FastAPI()


                def get_user(token: str) -> "CurrentUser":
                    return token


                def plain(x: Missing) -> None:
                    pass


                @app.get("/")
                def index(q: Query, user=Depends(get_user)):
                    return q
                """,
        },
    )
    result = _run(tmp_path, python=sys.prefix, python_version="3.14")
    tiers = {(f.line, f.symbol): f.tier for f in result.findings}
    assert tiers[(6, "CurrentUser")] is Tier.NOISE  # a dependency's return annotation
    assert tiers[(10, "Missing")] is Tier.NOISE  # PEP 649: not evaluated at definition
    assert tiers[(15, "Query")] is Tier.BREAKS_STARTUP  # FastAPI reads route parameters
    older = _run(tmp_path, python=sys.prefix, python_version="3.13")
    assert {(f.line, f.tier) for f in older.findings if f.symbol == "Missing"} == {
        (10, Tier.BREAKS_STARTUP)
    }


def test_the_projects_ty_configuration_cannot_hide_a_finding(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": "class SessionManager: ...\n",
            "app/main.py": "from app.db import DatabaseSessionManager  # type: ignore\n",
            "shadow/app/db.py": "DatabaseSessionManager = 1\n",
            "ty.toml": """\
                [environment]
                extra-paths = ["shadow"]
                [src]
                exclude = ["app/main.py"]
                [[overrides]]
                include = ["app/**"]
                [overrides.rules]
                import-not-found = "ignore"
                """,
            "pyproject.toml": '[project]\nname = "x"\n[tool.ty.rules]\nimport-not-found = "ignore"\n',
        },
    )
    result = _run(tmp_path, python=sys.prefix)
    assert [(f.path, f.tier, f.rule) for f in result.findings if f.path == "app/main.py"] == [
        ("app/main.py", Tier.BREAKS_STARTUP, "ty:import-not-found")
    ]


def test_noqa_does_not_silence_the_gate(tmp_path: Path) -> None:
    _project(tmp_path, {"app/__init__.py": "", "app/main.py": "X = undefined_name  # noqa\n"})
    result = _run(tmp_path, python=sys.prefix)
    assert [(f.rule, f.tier) for f in result.findings] == [("F821", Tier.BREAKS_STARTUP)]


def test_fingerprints_are_unique_per_finding(tmp_path: Path) -> None:
    _project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "A = (Gone, Gone)\nB = 1\nprint(Gone)\nprint(Gone)\n",
        },
    )
    result = _run(tmp_path, python=sys.prefix)
    prints = [f for f in result.findings if f.source_line == "print(Gone)"]
    assert len(result.findings) == 4 and len(prints) == 2
    assert len({f.fingerprint for f in result.findings}) == 4
    assert sorted(f.occurrence for f in prints) == [0, 1]
    # An unrelated edit above keeps every fingerprint.
    main = tmp_path / "app" / "main.py"
    before = {f.fingerprint for f in result.findings}
    main.write_text("import os\n\n" + main.read_text())
    assert {f.fingerprint for f in _run(tmp_path, python=sys.prefix).findings} == before


def test_compatibility_branches_for_installed_packages_are_noise(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "env")
    site = next((venv / "lib").glob("python*/site-packages"))
    _project(site, {"lib/__init__.py": "NEW = 1\n", "lib/block.py": "compress = 1\n"})
    _project(
        tmp_path / "proj",
        {
            "app/__init__.py": "",
            "app/main.py": """\
                import importlib.util

                import lib

                try:
                    import lib.block

                    compress = lib.block.compress
                except ImportError:
                    compress = lib.OLD_COMPRESS

                if importlib.util.find_spec("lib.block"):
                    from lib import NEW as value
                else:
                    from lib import OLD as value

                BROKEN = lib.GONE
                """,
        },
    )
    result = _run(tmp_path / "proj", python=str(venv))
    tiers = {f.symbol: f.tier for f in result.findings}
    assert tiers == {
        "OLD_COMPRESS": Tier.NOISE,
        "OLD": Tier.NOISE,
        "GONE": Tier.BREAKS_STARTUP,  # no feature check around it: a real error
    }


def test_a_private_standard_library_name_is_not_an_environment_problem(tmp_path: Path) -> None:
    _project(
        tmp_path / "proj",
        {
            "app/__init__.py": "",
            "app/main.py": "import threading\n\nthreading._register_atexit(print)\n",
        },
    )
    result = _run(tmp_path / "proj", python=str(_venv(tmp_path / "env")))
    assert [f for f in result.findings if f.tier is not Tier.NOISE] == []
