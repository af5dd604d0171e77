from __future__ import annotations

import threading
from pathlib import Path

import pytest

from safeship.config import EnvironmentConfig, GatesConfig, Manifest, ServiceConfig, load_manifest
from safeship.core.policy import plan_gates
from safeship.deploy.audit import AuditLog, verify
from safeship.errors import AuditError, ConfigError, GateError
from safeship.gates import (
    GATES,
    CheckContext,
    Finding,
    GateResult,
    GateStatus,
    Tier,
    build_context,
    entry_modules,
    is_test_path,
    load_gate,
    python_files,
    result_from_findings,
    run_check,
    run_planned,
    target_environ,
)
from safeship.testing import scaled

HERE = "tests.gates.test_runner"
_barrier = threading.Barrier(2)


class PassingGate:
    name = "passing"

    def run(self, ctx: CheckContext) -> GateResult:
        return result_from_findings(self.name, [], {"seen_env": ctx.env})


class CrashingGate:
    name = "crashing"

    def run(self, ctx: CheckContext) -> GateResult:
        raise RuntimeError("boom")


class WrongTypeGate:
    name = "wrong"

    def run(self, ctx: CheckContext) -> object:
        return {"not": "a result"}


class BarrierGate:
    """Passes only if another BarrierGate runs at the same time."""

    name = "barrier"

    def run(self, ctx: CheckContext) -> GateResult:
        _barrier.wait(timeout=scaled(10))
        return result_from_findings(self.name, [])


REGISTRY = {
    "passing": f"{HERE}:PassingGate",
    "crashing": f"{HERE}:CrashingGate",
    "wrong": f"{HERE}:WrongTypeGate",
    "missing": "safeship.gates.no_such_gate:Gate",
    "noattr": f"{HERE}:NoSuchClass",
    "barrier_a": f"{HERE}:BarrierGate",
    "barrier_b": f"{HERE}:BarrierGate",
}


def _ctx(tmp_path: Path, **kwargs: object) -> CheckContext:
    return build_context(
        tmp_path, Manifest(root=tmp_path), "development", base_environ={}, **kwargs
    )  # type: ignore[arg-type]


def _finding(blocking: bool, in_baseline: bool = False) -> Finding:
    return Finding(
        gate="g", rule="r", message="m", tier=Tier.ERROR, blocking=blocking, in_baseline=in_baseline
    )


def test_registry_names_every_gate_lazily() -> None:
    assert list(GATES) == ["static", "legacy", "secrets", "imports", "boot", "deploy-config"]
    assert GATES["static"] == "safeship.gates.static:StaticGate"
    assert GATES["boot"] == "safeship.gates.boot:BootGate"
    assert all(":" in target for target in GATES.values())


@pytest.mark.parametrize("name", ["legacy", "secrets", "imports"])
def test_framework_gates_load_and_follow_the_protocol(name: str) -> None:
    gate = load_gate(name)
    assert gate.name == name
    assert callable(gate.run)


def test_load_gate_errors_name_the_gate() -> None:
    with pytest.raises(GateError, match="unknown gate 'nope'"):
        load_gate("nope", REGISTRY)
    with pytest.raises(GateError, match="gate 'missing' is not available in this build"):
        load_gate("missing", REGISTRY)
    with pytest.raises(GateError, match="has no NoSuchClass"):
        load_gate("noattr", REGISTRY)


def test_a_gate_whose_module_fails_to_import_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gate_missing_dep.py").write_text("import definitely_missing_dep_xyz\n")
    (tmp_path / "gate_raises.py").write_text("raise RuntimeError('bad gate module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = {"dep": "gate_missing_dep:Gate", "raises": "gate_raises:Gate"}
    with pytest.raises(GateError, match="gate 'dep' could not be loaded: No module named"):
        load_gate("dep", registry)
    report = run_check(_ctx(tmp_path), ["raises"], registry=registry)
    assert report.results[0].status is GateStatus.ERROR
    assert report.results[0].error == (
        "gate 'raises' could not be loaded: RuntimeError: bad gate module"
    )


def test_result_from_findings_fails_only_on_blocking_findings_outside_the_baseline() -> None:
    assert result_from_findings("g", []).status is GateStatus.PASSED
    assert result_from_findings("g", [_finding(False)]).status is GateStatus.PASSED
    assert result_from_findings("g", [_finding(True, in_baseline=True)]).status is GateStatus.PASSED
    assert result_from_findings("g", [_finding(True)]).status is GateStatus.FAILED


def test_run_check_turns_every_gate_problem_into_an_error_result(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    report = run_check(
        ctx, ["passing", "crashing", "missing", "wrong", "nope", "passing"], registry=REGISTRY
    )
    by_gate = {r.gate: r for r in report.results}
    assert [r.gate for r in report.results] == ["passing", "crashing", "missing", "wrong", "nope"]
    assert by_gate["passing"].status is GateStatus.PASSED
    assert by_gate["passing"].summary == {"seen_env": "development"}
    assert by_gate["crashing"].status is GateStatus.ERROR
    assert by_gate["crashing"].error == "crashing crashed: RuntimeError: boom"
    assert by_gate["missing"].error is not None
    assert "gate 'missing' is not available in this build" in by_gate["missing"].error
    assert by_gate["wrong"].status is GateStatus.ERROR
    assert "expected GateResult" in (by_gate["wrong"].error or "")
    assert by_gate["nope"].status is GateStatus.ERROR
    assert not report.ok and report.exit_code == 1
    assert all(r.duration >= 0 for r in report.results)


def test_run_check_runs_gates_concurrently(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    report = run_check(ctx, ["barrier_a", "barrier_b"], registry=REGISTRY)
    assert [r.status for r in report.results] == [GateStatus.PASSED, GateStatus.PASSED]


def test_run_check_sequential_still_reports_in_order(tmp_path: Path) -> None:
    report = run_check(_ctx(tmp_path), ["passing", "crashing"], parallel=False, registry=REGISTRY)
    assert [(r.gate, r.status) for r in report.results] == [
        ("passing", GateStatus.PASSED),
        ("crashing", GateStatus.ERROR),
    ]


def test_a_gate_module_that_does_not_exist_yet_is_an_error_never_a_crash(tmp_path: Path) -> None:
    registry = {"later": "safeship.gates.not_built_yet:LaterGate"}
    report = run_check(_ctx(tmp_path), ["later"], registry=registry)
    assert report.results[0].status is GateStatus.ERROR
    assert report.results[0].error == (
        "gate 'later' is not available in this build (module safeship.gates.not_built_yet "
        "is missing)"
    )


def test_entry_modules_combine_app_entry_points_and_extra() -> None:
    manifest = Manifest(
        service=ServiceConfig(app="svc.main:app", entry_points=["svc.worker", "svc.main"])
    )
    assert entry_modules(manifest, ["svc.cli:run", " ", "svc.worker"]) == (
        "svc.main",
        "svc.worker",
        "svc.cli",
    )
    assert entry_modules(Manifest()) == ()


def test_target_environ_overlays_env_file_then_env_table(tmp_path: Path) -> None:
    (tmp_path / "staging.env").write_text("A=from-file\nB=from-file\n")
    manifest = Manifest(
        root=tmp_path,
        environments={
            "staging": EnvironmentConfig(env_file="staging.env", env={"B": "from-table"})
        },
    )
    environ = target_environ(manifest, "staging", {"A": "base", "C": "base", "SAFESHIP_ENV": "x"})
    assert environ == {"A": "from-file", "B": "from-table", "C": "base", "SAFESHIP_ENV": "staging"}


def test_target_environ_missing_env_file_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "safeship.toml").write_text('[environments.staging]\nenv_file = "nope.env"\n')
    manifest = load_manifest(tmp_path / "safeship.toml")
    with pytest.raises(ConfigError) as info:
        target_environ(manifest, "staging", {})
    assert "environments.staging.env_file" in info.value.message
    assert "nope.env" in info.value.message


def test_build_context_applies_policy_and_notes_missing_entries(tmp_path: Path) -> None:
    manifest = Manifest(root=tmp_path, gates=GatesConfig(baseline="base.json"))
    ctx = build_context(tmp_path, manifest, "production", base_environ={"X": "1"})
    assert ctx.critical is True
    assert ctx.block_tiers == {Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL}
    assert ctx.environ == {"X": "1", "SAFESHIP_ENV": "production"}
    assert ctx.baseline_path == tmp_path / "base.json"
    assert ctx.entries == ()
    assert any("--entry" in note for note in ctx.notes)
    with_entry = build_context(
        tmp_path, manifest, "development", entries=["app.main"], base_environ={}
    )
    assert with_entry.entries == ("app.main",) and with_entry.notes == []
    assert with_entry.critical is False


def test_run_planned_audits_skips_before_running_and_reports_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "safeship.gates.runner.GATES",
        {"passing": REGISTRY["passing"], "crashing": REGISTRY["crashing"]},
    )
    ctx = _ctx(tmp_path)
    plan = plan_gates(
        "staging", True, ["passing"], (), True, "incident 42", ["passing", "crashing"]
    )
    log = AuditLog(tmp_path / "audit.jsonl", environ={"SAFESHIP_ACTOR": "me@here"})
    report = run_planned(ctx, plan, audit=log)
    assert [(r.gate, r.status) for r in report.results] == [
        ("passing", GateStatus.PASSED),
        ("crashing", GateStatus.SKIPPED),
    ]
    assert "incident 42" in (report.results[1].skipped_reason or "")
    entries = log.entries()
    assert [(e["event"], e["what"]["gate"], e["why"]) for e in entries] == [
        ("gate_skipped", "crashing", "incident 42")
    ]
    assert verify(log.path).ok
    with pytest.raises(AuditError):
        run_planned(ctx, plan, audit=None)


def test_python_files_skips_venvs_hidden_and_excluded(tmp_path: Path) -> None:
    for rel in (
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/tests/test_a.py",
        "pkg/legacy/old.py",
        ".hidden/x.py",
        ".venv/lib/y.py",
        "venv2/lib/z.py",
        "node_modules/n.py",
        "pkg/readme.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "venv2" / "pyvenv.cfg").write_text("")
    rels = [p.relative_to(tmp_path).as_posix() for p in python_files(tmp_path)]
    assert rels == ["pkg/__init__.py", "pkg/a.py", "pkg/legacy/old.py", "pkg/tests/test_a.py"]
    rels = [
        p.relative_to(tmp_path).as_posix()
        for p in python_files(tmp_path, exclude=["pkg/legacy"], include_tests=False)
    ]
    assert rels == ["pkg/__init__.py", "pkg/a.py"]


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("tests/x.py", True),
        ("pkg/test/x.py", True),
        ("pkg/test_x.py", True),
        ("pkg/x_test.py", True),
        ("conftest.py", True),
        ("pkg/testing.py", False),
        ("pkg/contest.py", False),
        ("latest/x.py", False),
    ],
)
def test_is_test_path(rel: str, expected: bool) -> None:
    assert is_test_path(rel) is expected


def test_the_callers_secrets_go_on_top_of_the_env_file_and_table(tmp_path):
    from safeship.config import load_manifest
    from safeship.gates.runner import target_environ

    (tmp_path / "staging.env").write_text("JWT_SECRET_STAGING=from-file\nDATABASE_URL=from-file\n")
    (tmp_path / "safeship.toml").write_text(
        '[environments.staging]\nenv_file = "staging.env"\nenv = { LOG_LEVEL = "info" }\n'
    )
    manifest = load_manifest(tmp_path / "safeship.toml")
    caller = {
        "JWT_SECRET_STAGING": "from-caller",
        "DATABASE_URL": "from-caller",
        "LOG_LEVEL": "debug",
    }
    environ = target_environ(manifest, "staging", caller)
    assert environ["JWT_SECRET_STAGING"] == "from-caller"  # a secret: the caller's wins
    assert environ["DATABASE_URL"] == "from-file"  # a setting: the manifest's wins
    assert environ["LOG_LEVEL"] == "info"
    assert environ["SAFESHIP_ENV"] == "staging"
    # Without a value from the caller, the file's is used.
    assert target_environ(manifest, "staging", {})["JWT_SECRET_STAGING"] == "from-file"
