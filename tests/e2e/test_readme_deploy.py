"""The README's "first deploy" section, followed literally in a copy of the checkout: the
secrets are created by `safeship secrets init`, then `safeship deploy --env staging` works.

Only the front's port and the watch/drain windows differ from the repository's manifest, so
the test neither collides with a running deploy nor waits 30 s."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from safeship.testing import free_port, scaled

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAFESHIP = str(Path(sys.executable).with_name("safeship"))


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "examples" / "agent_service",
        root / "examples" / "agent_service",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    manifest = (ROOT / "safeship.toml").read_text()
    assert "[deploy]\ndrain_seconds = 5\n" in manifest
    manifest = manifest.replace(
        "[deploy]\ndrain_seconds = 5\n",
        f"[deploy]\ndrain_seconds = 1\nport = {free_port()}\nwatch_seconds = 2\nverify_probes = 3\n",
    )
    (root / "safeship.toml").write_text(manifest)
    return root


def _run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_SECRET", "SAFESHIP"))}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [SAFESHIP, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        stdin=subprocess.DEVNULL,
    )


def test_secrets_init_then_deploy_works_as_the_readme_says(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    before = _run(root, "deploy", "--env", "staging", "--json")
    assert before.returncode == 2, before.stdout + before.stderr
    assert "safeship secrets init --env staging" in before.stdout + before.stderr

    init = _run(root, "secrets", "init", "--env", "staging", "--json")
    assert init.returncode == 0, init.stderr
    report = json.loads(init.stdout)
    (written,) = report["secrets"]
    assert written["name"] == "JWT_SECRET_STAGING"
    assert written["written"] == ["file:deploy/staging.env", "file:tests/e2e/staging.env"]
    backend = (root / "deploy" / "staging.env").read_text()
    clients = (root / "tests" / "e2e" / "staging.env").read_text()
    assert backend == clients and backend.startswith("JWT_SECRET_STAGING=")
    value = backend.strip().split("=", 1)[1]
    assert len(value) >= 48
    for path in (root / "deploy" / "staging.env", root / "tests" / "e2e" / "staging.env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert value not in init.stdout + init.stderr

    again = _run(root, "secrets", "init", "--env", "staging")
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert (root / "deploy" / "staging.env").read_text() == backend  # nothing overwritten

    try:
        deploy = _run(root, "deploy", "--env", "staging", "--json", timeout=240)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        assert value not in deploy.stdout + deploy.stderr
        status = _run(root, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["serving"] == "r1"
    finally:
        _run(root, "down")


def test_token_mint_signs_with_the_environment_secret(tmp_path: Path) -> None:
    from safeship.tokens import TokenSettings, TokenVerifier

    root = _checkout(tmp_path)
    missing = _run(root, "token", "mint", "--env", "staging", "--sub", "alice")
    assert missing.returncode == 2
    assert "JWT_SECRET" in missing.stderr and "Traceback" not in missing.stderr

    assert _run(root, "secrets", "init", "--env", "staging").returncode == 0
    minted = _run(root, "token", "mint", "--env", "staging", "--sub", "alice")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    secret = (root / "deploy" / "staging.env").read_text().strip().split("=", 1)[1]
    claims = TokenVerifier(secret, TokenSettings()).verify(token)
    assert claims["sub"] == "alice"
