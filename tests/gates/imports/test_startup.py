"""The imports gate as the app meets its modules: the project's interpreter, the app's
startup in its own order, and every other module imported into a copy of the started app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safeship.config import Manifest, ServiceConfig
from safeship.gates import GateStatus, Tier, build_context
from safeship.gates.imports.gate import ImportsGate
from safeship.gates.report import render_text


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def context(
    root: Path,
    app: str | None = "app.main:app",
    env: str = "development",
    python: str | os.PathLike[str] | None = sys.executable,
    environ: dict[str, str] | None = None,
):
    manifest = Manifest(root=root, service=ServiceConfig(app=app, code="app"))
    manifest = manifest.model_copy(update={"path": root / "safeship.toml"})
    base = {"PATH": os.environ.get("PATH", ""), **(environ or {})}
    return build_context(root, manifest, env, base_environ=base, python=python)


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with nothing installed (no pip either: fast)."""
    path = tmp_path_factory.mktemp("venv") / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120
    )
    return path


def test_imports_run_in_the_projects_interpreter_not_safeships(
    tmp_path: Path, bare_venv: Path
) -> None:
    write(tmp_path, {"app/__init__.py": "", "app/main.py": "import rich\n\napp = object()\n"})
    # safeship's own environment has rich: the import passes there...
    assert ImportsGate().run(context(tmp_path)).status is GateStatus.PASSED
    # ...and fails in the project's venv, which lacks it.
    result = ImportsGate().run(context(tmp_path, python=bare_venv))
    assert result.status is GateStatus.FAILED
    interpreter = result.summary["interpreter"]
    assert Path(interpreter["python"]).parent == bare_venv / "bin"
    assert interpreter["version"] == ".".join(map(str, sys.version_info[:3]))
    assert interpreter["source"] == "--python"
    [finding] = result.findings
    # Not declared anywhere, and imported at startup.
    assert finding.rule == "import-undeclared-dependency"
    assert finding.tier is Tier.BREAKS_STARTUP and finding.blocking
    assert finding.extra["distribution"] == "rich" and finding.extra["modules"] == ["app.main"]
    # The report's header for the gate names the interpreter and its version.
    from safeship.gates.model import Report

    text = render_text(
        Report(root=str(tmp_path), env="development", critical=False, results=[result])
    )
    assert f"Python {interpreter['version']}" in text and str(bare_venv) in text


def test_without_a_project_environment_safeships_packages_are_not_the_projects(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"app/__init__.py": "", "app/main.py": "import rich\n\napp = object()\n"})
    result = ImportsGate().run(context(tmp_path, python=None))
    if sys.prefix == sys.base_prefix:
        pytest.skip("safeship does not run from a venv of its own here")
    assert result.summary["interpreter"]["isolated"]
    assert [f.rule for f in result.findings] == ["import-missing-dependency"]


STATEFUL_APP = {
    "app/__init__.py": "",
    "app/registry.py": "READY = False\nROUTES = []\n",
    "app/main.py": (
        "from app import registry\nfrom app import a\n\nregistry.READY = True\napp = object()\n"
    ),
    # A cycle, entered from a's side by the app: importing b first fails.
    "app/a.py": "from app import b\n\nA = b.B\n",
    "app/b.py": "from app import a\n\nB = 1\n",
    # Imported lazily by a handler: meets the started app, where READY is set.
    "app/handlers.py": (
        "from app import registry\n\nassert registry.READY, 'imported before the app started'\n"
    ),
    "app/broken_lazy.py": "from app import registry\n\nregistry.MISSING_NAME\n",
}


def test_startup_imports_in_the_apps_order_and_lazy_modules_meet_the_started_app(
    tmp_path: Path,
) -> None:
    write(tmp_path, STATEFUL_APP)
    result = ImportsGate().run(context(tmp_path))
    summary = result.summary
    assert summary["mode"] == "startup"
    assert summary["startup"]["status"] == "ok"
    assert summary["startup"]["modules"] == 5  # app, registry, main, a, b
    # handlers imports (READY is set), the cycle is judged by the app's own order, and only
    # the module that really breaks is reported, as breaking on call (it is not startup's).
    [finding] = result.findings
    assert finding.symbol == "app.broken_lazy" and finding.tier is Tier.BREAKS_ON_CALL
    assert "AttributeError" in finding.message and finding.path == "app/broken_lazy.py"
    assert not finding.blocking and result.status is GateStatus.PASSED  # development policy
    critical = ImportsGate().run(context(tmp_path, env="production"))
    assert critical.status is GateStatus.FAILED and critical.findings[0].blocking


def test_strict_mode_imports_every_module_from_a_pristine_interpreter(tmp_path: Path) -> None:
    write(tmp_path, STATEFUL_APP)
    result = ImportsGate(strict=True).run(context(tmp_path))
    assert result.summary["mode"] == "strict" and "startup" not in result.summary
    failed = {f.symbol: f for f in result.findings}
    assert set(failed) == {"app.b", "app.handlers", "app.broken_lazy"}
    assert "imported before the app started" in failed["app.handlers"].message
    assert "AttributeError" in failed["app.b"].message  # the cycle, entered from b
    assert all(f.tier is Tier.ERROR and f.blocking for f in result.findings)
    # The CLI's --imports-strict reaches the gate through the context.
    ctx = context(tmp_path)
    ctx.imports_strict = True
    assert ImportsGate().run(ctx).summary["mode"] == "strict"


def test_a_failing_startup_breaks_startup_with_the_chain_from_the_entry(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "from app import services\n\napp = object()\n",
            "app/services.py": "from app import agents\n",
            "app/agents.py": (
                "class Agent:\n    def run(self, db: SessionManager) -> None:\n        pass\n"
            ),
            "app/lazy.py": "from app import agents\n",
            "app/fine.py": "X = 1\n",
        },
    )
    result = ImportsGate().run(context(tmp_path))
    assert result.status is GateStatus.FAILED
    assert result.summary["startup"]["status"] == "error"
    [finding] = result.findings
    assert finding.tier is Tier.BREAKS_STARTUP and finding.blocking
    assert (finding.path, finding.line) == ("app/agents.py", 2)
    assert "NameError: name 'SessionManager' is not defined" in finding.message
    assert finding.chain[0].startswith("app/main.py:1")
    assert finding.chain[-1] == "app/agents.py:2 in Agent"
    # Every module the same failure breaks is one finding, startup's.
    assert finding.extra["modules"] == ["app.agents", "app.lazy", "app.main", "app.services"]
    assert result.summary["ok"] == 2  # app and app.fine


def test_a_startup_that_hangs_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "import time\n\ntime.sleep(600)\n",
            "app/other.py": "raise RuntimeError('other is broken')\n",
        },
    )
    manifest = Manifest(root=tmp_path, service=ServiceConfig(app="app.main:app", code="app"))
    manifest = manifest.model_copy(
        update={
            "path": tmp_path / "safeship.toml",
            "gates": manifest.gates.model_copy(update={"import_timeout": 0.5}),
        }
    )
    ctx = build_context(tmp_path, manifest, "development", base_environ={}, python=sys.executable)
    result = ImportsGate().run(ctx)
    by_symbol = {f.symbol: f for f in result.findings}
    assert by_symbol["app.main"].rule == "import-hung"
    assert by_symbol["app.main"].tier is Tier.BREAKS_STARTUP
    assert (by_symbol["app.main"].line, by_symbol["app.main"].source_line) == (
        3,
        "time.sleep(600)",
    )
    assert "other is broken" in by_symbol["app.other"].message


def test_an_app_that_starts_a_thread_at_import_is_still_the_start_of_lazy_modules(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": (
                "import threading\n\nfrom app import state\n\nstate.STARTED = True\n"
                "threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
                "app = object()\n"
            ),
            "app/state.py": "STARTED = False\n",
            "app/lazy.py": "from app import state\n\nassert state.STARTED\n",
        },
    )
    result = ImportsGate().run(context(tmp_path))
    assert result.status is GateStatus.PASSED and not result.findings
    assert result.summary["startup"]["threads"] == 1
    assert any("started 1 thread(s)" in note for note in result.summary["notes"])


def test_a_startup_that_kills_the_interpreter_leaves_the_rest_to_fresh_interpreters(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "import os\n\nos._exit(3)\n",
            "app/fine.py": "X = 1\n",
            "app/bad.py": "raise LookupError('bad on its own')\n",
        },
    )
    result = ImportsGate().run(context(tmp_path))
    by_symbol = {f.symbol: f for f in result.findings}
    assert by_symbol["app.main"].rule == "import-crashed"
    assert by_symbol["app.main"].tier is Tier.BREAKS_STARTUP
    assert "exited with code 3" in by_symbol["app.main"].message
    assert "bad on its own" in by_symbol["app.bad"].message
    assert result.summary["ok"] == 2  # app and app.fine


def test_an_interpreter_that_cannot_run_the_worker_is_a_gate_error(tmp_path: Path) -> None:
    write(tmp_path, {"app/__init__.py": "", "app/main.py": "app = object()\n"})
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'not a Python' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = ImportsGate(python=str(fake)).run(context(tmp_path))
    assert result.status is GateStatus.ERROR
    assert "does not run in" in (result.error or "") and "3.9 or later" in (result.error or "")


def test_a_module_the_startup_hangs_in_is_not_waited_for_again_by_its_importers(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": "import time\n\ntime.sleep(600)  # a connection without a timeout\n",
            "app/main.py": "from app import db\n\napp = object()\n",
            "app/a.py": "from app import db\n",
            "app/b.py": "from app import db\n",
            "app/c.py": "X = 1\n",
        },
    )
    manifest = Manifest(root=tmp_path, service=ServiceConfig(app="app.main:app", code="app"))
    manifest = manifest.model_copy(
        update={
            "path": tmp_path / "safeship.toml",
            "gates": manifest.gates.model_copy(update={"import_timeout": 0.5}),
        }
    )
    ctx = build_context(tmp_path, manifest, "development", base_environ={}, python=sys.executable)
    result = ImportsGate().run(ctx)
    [finding] = result.findings
    assert finding.rule == "import-hung" and finding.tier is Tier.BREAKS_STARTUP
    assert (finding.path, finding.line) == ("app/db.py", 3)
    # Its importers fail at once, as part of the same finding, instead of hanging each.
    assert finding.extra["modules"] == ["app.a", "app.b", "app.db", "app.main"]
    assert (result.summary["hung"], result.summary["error"], result.summary["ok"]) == (2, 2, 2)
