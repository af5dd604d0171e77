from __future__ import annotations

import ast
from pathlib import Path

import pytest

from safeship.demo.workspace import LEGACY_OLD, Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "project", port=18700)


def test_manifest_and_secrets(ws):
    manifest = ws.manifest()
    assert manifest.is_critical("staging")
    assert manifest.deploy.port == 18700
    assert manifest.deploy.probe_secret == "file:tests/e2e/staging.env"
    backend = (ws.root / "deploy" / "staging.env").read_text()
    client = (ws.root / "tests" / "e2e" / "staging.env").read_text()
    assert f"JWT_SECRET_STAGING={ws.backend_secret}" in backend
    assert f"JWT_SECRET_STAGING={ws.client_secret}" in client
    assert ws.backend_secret == ws.client_secret
    assert oct((ws.root / "deploy" / "staging.env").stat().st_mode & 0o777) == "0o600"


def test_r2_removes_the_import_and_restore_brings_it_back(ws):
    history = ws.root / "examples" / "agent_service" / "agents" / "history.py"
    original = history.read_text()
    _, line = ws.break_import()
    assert original.splitlines()[line - 1] == "from agent_service.db import DatabaseSessionManager"
    broken = history.read_text()
    assert "import DatabaseSessionManager" not in broken
    assert "DatabaseSessionManager" in broken  # still used
    ws.restore()
    assert history.read_text() == original


def test_r3_rotates_only_the_backend_secret(ws):
    client_before = (ws.root / "tests" / "e2e" / "staging.env").read_text()
    ws.rotate_backend_secret()
    assert ws.backend_secret != ws.client_secret
    assert ws.backend_secret in (ws.root / "deploy" / "staging.env").read_text()
    assert (ws.root / "tests" / "e2e" / "staging.env").read_text() == client_before
    ws.restore()
    assert ws.client_secret in (ws.root / "deploy" / "staging.env").read_text()


def test_r4_patch_is_valid_python(ws):
    ws.add_pool_leak()
    source = (ws.root / "examples" / "agent_service" / "connection.py").read_text()
    ast.parse(source)
    assert "_preferences.lookup(self.user)" in source
    ws.restore()
    assert (
        "_preferences" not in (ws.root / "examples" / "agent_service" / "connection.py").read_text()
    )


def test_r5_migrates_the_legacy_name(ws):
    changed = ws.migrate_legacy_name()
    assert any(p.endswith("history.py") for p in changed)
    history = (ws.root / "examples" / "agent_service" / "agents" / "history.py").read_text()
    assert "DatabaseSessionManager" not in history.split('"""', 2)[2]
    assert LEGACY_OLD.rsplit(".", 1)[1] not in history.split('"""', 2)[2]


def test_demo_outside_a_checkout_says_how_to_get_one(tmp_path: Path) -> None:
    # The package alone, as a wheel installs it: no examples/ anywhere above it.
    import shutil
    import subprocess
    import sys

    import safeship

    site = tmp_path / "site-packages"
    shutil.copytree(Path(safeship.__file__).parent, site / "safeship")
    code = (
        "from safeship.demo.workspace import find_examples\n"
        "from safeship.errors import UsageError\n"
        "try:\n    find_examples()\nexcept UsageError as e:\n    print(e, '|', e.hint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "examples/agent_service" in out
    assert "clone the safeship repository and run `make demo`" in out
