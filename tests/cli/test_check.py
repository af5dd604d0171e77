from __future__ import annotations

import json
import secrets as random_secrets
import shutil
import sys
from pathlib import Path

import pytest

from safeship.cli import main
from safeship.deploy.audit import verify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "check"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAFESHIP_ENV", "JWT_SECRET", "JWT_SECRET_STAGING", "JWT_SECRET_DEVELOPMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAFESHIP_ACTOR", "tester@ci")
    monkeypatch.setenv("COLUMNS", "200")


def _copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def _clean_project(tmp_path: Path, secret: str) -> Path:
    root = tmp_path / "clean"
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "main.py").write_text("app = None\n")
    (root / "client.env").write_text(f"JWT_SECRET={secret}\n")
    (root / "safeship.toml").write_text(
        '[service]\nname = "svc"\napp = "svc.main:app"\n'
        '[secrets.JWT_SECRET]\nconsumers = ["env", "file:client.env"]\n'
    )
    return root


def test_not_a_python_project_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "README.md").write_text("no code here")
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a Python project" in err and "no .py files" in err


def test_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--env", "qa"], "unknown environment 'qa'"),
        (["--only", "lint"], "unknown gate 'lint' in --only"),
        (["--format", "xml"], "--format 'xml'"),
        (["--write-baseline"], "--write-baseline needs a baseline file"),
        (["--force", "--skip", "boot"], "--force needs --reason"),
        (["--force", "--reason", " ", "--skip", "boot"], "--force needs --reason"),
    ],
)
def test_usage_and_config_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    root = _copy(tmp_path, "legacy_proj")
    assert main(["check", str(root), *args]) == 2
    assert words in capsys.readouterr().err


def test_critical_environment_refuses_skips_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path, "legacy_proj")
    assert main(["check", str(root), "--env", "staging", "--only", "legacy"]) == 2
    err = capsys.readouterr().err
    assert "environment 'staging' is critical" in err
    assert "--force --reason" in err
    assert not (root / ".safeship").exists()


def test_env_defaults_to_safeship_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(tmp_path, "legacy_proj")
    monkeypatch.setenv("SAFESHIP_ENV", "production")
    assert main(["check", str(root), "--only", "legacy"]) == 2
    assert "environment 'production' is critical" in capsys.readouterr().err


def test_forced_skip_in_critical_environment_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path, "legacy_proj")
    argv = ["check", str(root), "--env", "staging", "--json", "--force"]
    argv += ["--reason", "OPS-7 boot flaky", "--skip", "boot", "--skip", "imports"]
    argv += ["--skip", "static"]
    code = main(argv)
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert code == 1  # staging has no JWT secret: the secrets gate blocks
    statuses = {g["gate"]: g["status"] for g in data["gates"]}
    assert statuses == {
        "static": "skipped",
        "legacy": "passed",
        "secrets": "failed",
        "imports": "skipped",
        "boot": "skipped",
        "deploy-config": "passed",
    }
    assert "OPS-7 boot flaky" in data["gates"][0]["skipped_reason"]
    log = root / ".safeship" / "audit.jsonl"
    assert "recorded in" in out.err and str(log) in out.err.replace("\n", "")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e["what"]["gate"], e["why"], e["who"]) for e in entries] == [
        ("gate_skipped", "static", "OPS-7 boot flaky", "tester@ci"),
        ("gate_skipped", "imports", "OPS-7 boot flaky", "tester@ci"),
        ("gate_skipped", "boot", "OPS-7 boot flaky", "tester@ci"),
    ]
    assert verify(log).ok


def test_development_skips_are_not_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path, "legacy_proj")
    assert main(["check", str(root), "--only", "legacy"]) == 0
    assert not (root / ".safeship").exists()
    out = capsys.readouterr().out
    assert "legacy  PASSED" in out
    assert "boot  SKIPPED  not selected" in out
    assert "✓ check passed" in out


def test_clean_project_exits_0_and_json_is_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = random_secrets.token_urlsafe(48)
    root = _clean_project(tmp_path, secret)
    monkeypatch.setenv("JWT_SECRET_STAGING", secret)
    monkeypatch.chdir(root)  # no PATH: the manifest's directory is the root
    argv = ["check", "--env", "staging", "--format", "json", "--force", "--reason", "unit test"]
    code = main([*argv, "--skip", "boot", "--skip", "static"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    assert data["schema"] == "safeship.check/1"
    assert data["ok"] is True and data["env"] == "staging" and data["critical"] is True
    assert data["root"] == str(root)
    assert [g["gate"] for g in data["gates"]] == [
        "static", "legacy", "secrets", "imports", "boot", "deploy-config",
    ]  # fmt: skip
    assert secret not in json.dumps(data)


def test_import_failures_exit_1_in_text_and_sarif(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path, "imports_proj")
    # Every module on its own (strict), in this interpreter (the fixture imports starlette).
    imports = ["--only", "imports", "--imports-strict", "--python", sys.executable]
    assert main(["check", str(root), *imports]) == 1
    out = capsys.readouterr().out
    assert "imports  FAILED" in out
    assert "imppkg/agents.py:4" in out and "NameError" in out
    assert "✗ check failed" in out
    assert main(["check", str(root), *imports, "--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in sarif["runs"][0]["results"]
    }
    assert "imppkg/agents.py" in uris
    assert {r["level"] for r in sarif["runs"][0]["results"]} == {"error"}


def test_without_manifest_or_entry_a_note_says_to_pass_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    assert main(["check", str(tmp_path), "--only", "imports", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--entry MODULE" in captured.err
    assert json.loads(captured.out)["ok"] is True


def test_static_gate_runs_with_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path, "imports_proj")
    code = main(["check", str(root), "--skip", "boot", "--skip", "imports", "--json"])
    data = json.loads(capsys.readouterr().out)
    statuses = {g["gate"]: g["status"] for g in data["gates"]}
    assert statuses["static"] in ("passed", "failed")  # ran, whatever it found
    assert statuses["boot"] == "skipped"
    assert code == (0 if data["ok"] else 1)


def test_invalid_manifest_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.py").write_text("")
    (tmp_path / "safeship.toml").write_text("[gates]\nimport_timout = 3\n")
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "safeship.toml" in err and "gates.import_timout: unknown key" in err


def _entry_project(tmp_path: Path) -> Path:
    root = tmp_path / "entry"
    (root / "src" / "shop").mkdir(parents=True)
    (root / "src" / "shop" / "__init__.py").write_text("")
    (root / "src" / "shop" / "main.py").write_text(
        "def create_app():\n    return dict(MISSING_CONFIG)\n"
    )
    return root


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--format", "sarif"]])
def test_a_mistyped_entry_is_a_usage_error_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: list[str]
) -> None:
    root = _entry_project(tmp_path)
    args = ["check", str(root), "--only", "static", "--entry", "shop.mian", *fmt]
    assert main(args) == 2
    out = capsys.readouterr()
    assert "--entry 'shop.mian'" in out.out + out.err


@pytest.mark.parametrize(
    ("entry", "tier"),
    [
        ("shop.main", "breaks-on-call"),
        ("shop.main:create_app", "breaks-startup"),  # an app factory runs at startup
        ("src/shop/main.py", "breaks-on-call"),
        ("src/shop/main.py:create_app", "breaks-startup"),
    ],
)
def test_entry_takes_a_module_a_module_attr_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: str, tier: str
) -> None:
    root = _entry_project(tmp_path)
    if entry.startswith("src/"):
        entry = str(root / entry)
    code = main(["check", str(root), "--only", "static", "--entry", entry, "--json"])
    static = json.loads(capsys.readouterr().out)["gates"][0]
    assert [f["tier"] for f in static["findings"]] == [tier]
    assert code == (1 if tier == "breaks-startup" else 0)


def test_two_formats_at_once_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _entry_project(tmp_path)
    assert main(["check", str(root), "--json", "--format", "sarif"]) == 2
    assert "two formats" in capsys.readouterr().out
    assert main(["check", str(root), "--only", "static", "--json", "--format", "json"]) in (0, 1)


def test_python_and_python_version_are_named_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    root = _entry_project(tmp_path)
    args = ["check", str(root), "--only", "static", "--entry", "shop.main"]
    main([*args, "--python", sys.executable, "--python-version", "3.12"])
    out = capsys.readouterr().out
    assert "Python 3.12 (--python-version)" in out and "(--python)" in out
    assert main([*args, "--python", str(tmp_path / "nowhere")]) == 2
    assert "--python" in capsys.readouterr().err


def test_finding_paths_are_relative_to_the_project_root_wherever_check_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "nc"
    (project / "shop").mkdir(parents=True)
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "main.py").write_text("app = object()\nsettings = Nope()\n")
    (project / "safeship.toml").write_text('[service]\napp = "shop.main:app"\ncode = "shop"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["check", "../nc", "--only", "static", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    paths = {f["path"] for g in report["gates"] for f in g["findings"] if f.get("path")}
    assert paths == {"shop/main.py"}
