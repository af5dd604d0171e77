"""``safeship deploy|rollback|status|history|down``: parsing, exit codes and the JSON twins,
up to where a revision would start (the end-to-end tests run real ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safeship.cli import main
from safeship.cli.render import DeployProgress, render_history, render_outcome, render_status
from safeship.deploy.record import Event
from safeship.deploy.state import StateStore

MANIFEST = """
[service]
app = "svc.main:app"
app_dir = "src"

[deploy]
port = 18999
state_dir = "state"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "src" / "svc").mkdir(parents=True)
    (root / "src" / "svc" / "__init__.py").write_text("")
    (root / "src" / "svc" / "main.py").write_text("app = None\n")
    (root / "safeship.toml").write_text(MANIFEST)
    monkeypatch.chdir(root)
    monkeypatch.delenv("SAFESHIP_ENV", raising=False)
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["deploy", "rollback", "status", "history", "down"])
def test_every_command_has_help_and_json(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "--json" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--force",), "--force needs --reason"),
        (("--force", "--reason", ""), "--force needs --reason"),
        (("--env", "nowhere"), "unknown environment 'nowhere'"),
        (("--skip", "boot"), "unknown gate 'boot'"),
        (("--image", "registry/svc:1"), "not images"),
        (("--source", "src"), "is not the configured app"),
        (("--target", "mars"), "unknown deploy target 'mars'"),
    ],
)
def test_deploy_usage_errors_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "deploy", *args)
    err = " ".join(err.split())  # the console wraps long lines
    assert code == 2
    assert message in err and "hint:" in err and "Traceback" not in err
    code, out, _ = run(capsys, "deploy", *args, "--json")
    assert code == 2 and message in json.loads(out)["message"]


def test_deploy_names_the_missing_probe_secret(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JWT_SECRET_DEVELOPMENT", "JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "deploy")
    assert code == 2 and "JWT_SECRET_DEVELOPMENT, JWT_SECRET" in " ".join(err.split())


def test_status_history_down_on_a_fresh_project(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 0 and "nothing deployed yet" in out
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["revisions"] == []
    code, out, _ = run(capsys, "history", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "history")
    assert code == 0 and "no deploys yet" in out
    code, out, _ = run(capsys, "down", "--json")
    assert code == 0 and json.loads(out) == {"ok": True, "done": []}


def test_rollback_with_nothing_to_return_to(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "rollback")
    assert code == 2 and "no previous good revision" in " ".join(err.split())


def test_history_lists_recorded_deploys(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StateStore(project / "state" / "state.db") as store:
        row = store.begin_deploy(pid=1, pid_start=None, started=1.7e9, alive=lambda p, s: False)
        record = {"kind": "deploy", "env": "staging", "reason": "r2 promoted", "duration_s": 4.2}
        store.update_deploy(row.id, status="promoted", revision="r2", previous="r1", record=record)
    code, out, _ = run(capsys, "history", "--last", "1")
    assert code == 0
    assert "d1 deploy promoted" in out and "r1 → r2" in out and "r2 promoted" in out
    code, out, _ = run(capsys, "history", "--json")
    (entry,) = json.loads(out)
    assert entry["status"] == "promoted" and entry["record"]["env"] == "staging"


# -- the views ------------------------------------------------------------------------------


def record(**values: Any) -> dict[str, Any]:
    base = {"id": "d3", "kind": "deploy", "outcome": "rolled_back", "exit_code": 1,
            "duration_s": 9.5, "reason": "3 consecutive failed probes after the switch"}  # fmt: skip
    return {**base, **values}


def test_outcome_view_shows_timings_and_start_failure(capsys: pytest.CaptureFixture[str]) -> None:
    from safeship.cli._output import console

    render_outcome(record(detected_at_s=5.1, time_to_rollback_s=0.8), console)
    out = capsys.readouterr().out
    assert "deploy d3: rolled_back" in out and "time to rollback: 0.80s" in out
    failure = {"revision": "r4", "phase": "agents", "error": "NameError: x", "hint": "import x",
               "exit_code": 3, "log_tail": ["boom"], "log_path": "/tmp/log"}  # fmt: skip
    render_outcome(record(outcome="failed", start_failure=failure), console)
    out = capsys.readouterr().out
    assert "r4 failed to start in phase 'agents', exit code 3" in out
    assert "hint: import x" in out and "boom" in out


def test_progress_view_collapses_repeated_failures(capsys: pytest.CaptureFixture[str]) -> None:
    from safeship.cli._output import console

    progress = DeployProgress(console)
    probe = {"what": "ready", "category": "not_ready", "ms": 3.0}
    for at in range(5):
        progress(Event("probe", "verify", "failed", float(at), "HTTP 503", data=probe))
    progress(Event("step", "verify", "failed", 5.0, "never became ready", 5.0))
    out = capsys.readouterr().out
    assert out.count("HTTP 503") == 1 and "the same 4 more time(s)" in out
    assert "never became ready" in out


def test_status_and_history_views(capsys: pytest.CaptureFixture[str]) -> None:
    from safeship.cli._output import console

    data = {
        "serving": "r2", "front_url": "http://127.0.0.1:8700", "problems": ["front is dead"],
        "recovered": ["deploy d4 was interrupted"],
        "health": {"front": {"category": "ok"}, "r2": {"category": "ok"}},
        "revisions": [
            {"id": "r1", "status": "stopped", "port": 1, "pid": 10, "created": 1.7e9},
            {"id": "r2", "status": "running", "port": 2, "pid": 11, "created": 1.7e9},
        ],
        "last_deploy": {"id": "d4", "kind": "deploy", "status": "interrupted", "reason": "killed"},
    }  # fmt: skip
    render_status(data, console)
    out = capsys.readouterr().out
    assert "serves r2 (ready)" in out and "problem: front is dead" in out
    assert "recovered: deploy d4 was interrupted" in out
    render_history([], console)
    assert "no deploys yet" in capsys.readouterr().out
