"""The imports gate leaves no trace, never prints a secret, groups missing dependencies and
tells first-party code from the rest by where it comes from."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from safeship.config import Manifest, load_manifest
from safeship.gates import GateStatus, Tier, build_context
from safeship.gates.imports.findings import ImportOutcome, normalise, outcomes_to_findings
from safeship.gates.imports.gate import ImportsGate
from safeship.gates.imports.redaction import redact_input_values
from safeship.gates.model import Report
from safeship.gates.report import render_json, render_sarif, render_text

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "check" / "imports_proj"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content's digest (directories as such)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run(root: Path, toml: str, env: str = "development", strict: bool = False, **environ: str):
    (root / "safeship.toml").write_text(toml)
    manifest = load_manifest(root / "safeship.toml")
    base = {"PATH": os.environ.get("PATH", ""), **environ}
    ctx = build_context(root, manifest, env, base_environ=base, python=sys.executable)
    return ImportsGate(strict=strict).run(ctx)


# --- 3. no trace --------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_the_checked_tree_is_left_byte_for_byte_unchanged(tmp_path: Path, strict: bool) -> None:
    # The fixture itself, in place: no copy is needed any more.
    before = tree_digest(FIXTURE)
    manifest = load_manifest(FIXTURE / "safeship.toml")
    ctx = build_context(
        FIXTURE, manifest, "development", base_environ={"PATH": ""}, python=sys.executable
    )
    result = ImportsGate(strict=strict).run(ctx)
    assert result.summary["modules"] == 10
    assert tree_digest(FIXTURE) == before
    assert not [f for f in result.findings if f.rule == "import-wrote-file"]


def test_writes_into_the_tree_are_reported_and_left_in_place(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root = tmp_path / "proj"
    write(
        root,
        {
            "app/__init__.py": "",
            "app/main.py": "app = object()\n",
            # Relative to the working directory, and under HOME: both land outside the tree.
            "app/relative.py": (
                "import os\nopen('state.txt', 'w').write('x')\n"
                "os.makedirs(os.path.expanduser('~/.config/app'), exist_ok=True)\n"
            ),
            # Next to its own file: inside the tree.
            "app/store.py": (
                "from pathlib import Path\n\nDATA = Path(__file__).parent.parent / 'dev' / 'data'\n"
                "DATA.mkdir(parents=True, exist_ok=True)\n(DATA / 'db.json').write_text('{}')\n"
            ),
        },
    )
    result = run(root, '[service]\napp = "app.main:app"\n', HOME=str(home))
    [wrote] = [f for f in result.findings if f.rule == "import-wrote-file"]
    assert wrote.path == "dev" and wrote.tier is Tier.WARNING and not wrote.blocking
    assert wrote.message == "importing app.store created directory dev in the project's tree"
    assert (root / "dev" / "data" / "db.json").read_text() == "{}"  # reported, not deleted
    assert not (root / "state.txt").exists() and not (root / "app" / "state.txt").exists()
    assert list(home.iterdir()) == []  # the real HOME is not the imports' HOME
    assert any("left as they are" in note for note in result.summary["notes"])
    # Strict mode has no audit hook: the write is told by time, and said so.
    shutil.rmtree(root / "dev")
    strict = run(root, '[service]\napp = "app.main:app"\n', strict=True, HOME=str(home))
    [wrote] = [f for f in strict.findings if f.rule == "import-wrote-file"]
    assert (
        wrote.path == "dev" and "directory dev was created in the project's tree" in wrote.message
    )


# --- 4. no secret in any output -----------------------------------------------------------

SETTINGS_APP = {
    "app/__init__.py": "",
    "app/settings.py": (
        "import os\n"
        "from pydantic import BaseModel\n\n\n"
        "class Settings(BaseModel):\n"
        "    port: int\n\n\n"
        "# Validates the whole environment: pydantic echoes it in input_value.\n"
        "SETTINGS = Settings(**{k: v for k, v in os.environ.items() if k.startswith(('DATABASE', 'API'))})\n"
    ),
    "app/client.py": (
        "import os\n"
        "raise ConnectionError(f\"cannot reach {os.environ['BROKER_URL']} with \"\n"
        "    f\"{os.environ['API_TOKEN']} ({os.environ['DATABASE_PASSWORD']})\")\n"
    ),
    "app/main.py": "app = object()\n",
}
SECRET_TOML = """
[service]
app = "app.main:app"

[secrets.DATABASE_PASSWORD]
per_environment = false
consumers = ["env"]
"""


def test_no_output_format_shows_a_secret_value(tmp_path: Path) -> None:
    write(tmp_path, SETTINGS_APP)
    password = "hunter2-correct-horse-battery"
    token = "tok_9f8e7d6c5b4a39281706"
    broker_pw = "brokerpass"
    result = run(
        tmp_path,
        SECRET_TOML,
        env="production",
        DATABASE_PASSWORD=password,
        API_TOKEN=token,
        BROKER_URL=f"amqp://svc:{broker_pw}@broker:5672/",
    )
    assert result.status is GateStatus.FAILED
    report = Report(root=str(tmp_path), env="production", critical=True, results=[result])
    outputs = {
        "text": render_text(report, verbose=True),
        "json": json.dumps(render_json(report)),
        "sarif": json.dumps(render_sarif(report, tool_version="0")),
    }
    for name, text in outputs.items():
        for value in (password, token, broker_pw):
            assert value not in text, f"{value!r} in the {name} output"
    messages = " ".join(f.message for f in result.findings)
    assert "input_value=[redacted]" in messages  # pydantic's echo of its input
    assert "[redacted:$DATABASE_PASSWORD]" in messages  # the declared secret, named
    assert "[redacted:$API_TOKEN]" in messages  # a variable given to the import
    assert "ValidationError" in messages and "ConnectionError" in messages


def test_input_values_are_redacted_in_linear_time() -> None:
    text = (
        "1 validation error for Settings\nport\n  Field required "
        "[type=missing, input_value={'DATABASE_PASSWORD': 'p, input_type=x'}, input_type=dict]\n"
        "    For further information visit https://errors.pydantic.dev/2.7/v/missing"
    )
    redacted = redact_input_values(text)
    assert "input_value=[redacted], input_type=dict]" in redacted
    assert "DATABASE_PASSWORD" not in redacted and "errors.pydantic.dev" in redacted
    long = "input_value=" + "a" * 200_000  # no end marker: up to the end of the line
    assert redact_input_values(long) == "input_value=[redacted]"


# --- 5. missing dependencies, grouped -----------------------------------------------------


def test_missing_distributions_are_one_finding_each_saying_if_declared(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "import yaml\n\napp = object()\n",
            "app/one.py": "import not_a_real_dist_abc\n",
            "app/two.py": "from not_a_real_dist_abc.sub import thing\n",
            "app/three.py": "import yaml\n",
            "app/fine.py": "X = 1\n",
            "requirements.txt": "# pinned\nPyYAML==6.0.1\n",
        },
    )
    result = run(tmp_path, '[service]\napp = "app.main:app"\n', strict=True)
    # Run without the project's environment: safeship's interpreter has no yaml here, or
    # has it; either way the finding must be per distribution, not per module.
    deps = {f.symbol: f for f in result.findings if f.rule.endswith("-dependency")}
    assert "not_a_real_dist_abc" in deps
    fake = deps["not_a_real_dist_abc"]
    assert fake.rule == "import-undeclared-dependency" and fake.tier is Tier.ERROR
    assert fake.extra["modules"] == ["app.one", "app.two"]
    assert fake.extra["declared"] is None and "NOT declared" in fake.message
    assert "add not_a_real_dist_abc to the project's dependencies" in (fake.hint or "")
    assert not [f for f in result.findings if f.rule == "import-error"]
    assert any("--python" in note for note in result.summary["notes"])
    if "PyYAML" in deps:
        assert deps["PyYAML"].rule == "import-missing-dependency"
        assert deps["PyYAML"].tier is Tier.ENVIRONMENT
        assert deps["PyYAML"].extra["declared"] == "requirements.txt"
        assert deps["PyYAML"].extra["modules"] == ["app.main", "app.three"]


def test_a_declared_dependency_missing_from_the_projects_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    root = tmp_path / "proj"
    write(
        root,
        {
            "app/__init__.py": "",
            "app/main.py": "import jwt\nimport starlette.responses\n\napp = object()\n",
            "app/lazy.py": "import jwt\n",
            "pyproject.toml": (
                '[project]\nname = "app"\nversion = "0"\ndependencies = ["PyJWT>=2", "starlette"]\n'
            ),
        },
    )
    (root / "safeship.toml").write_text('[service]\napp = "app.main:app"\n')
    manifest = load_manifest(root / "safeship.toml")
    ctx = build_context(root, manifest, "development", base_environ={}, python=venv)
    result = ImportsGate().run(ctx)
    deps = {f.symbol: f for f in result.findings}
    # jwt maps to PyJWT (a name the module does not tell), declared in pyproject.toml.
    assert set(deps) == {"PyJWT"}  # starlette is not reached: the startup stops at jwt
    assert deps["PyJWT"].extra["declared"] == "pyproject.toml"
    assert deps["PyJWT"].rule == "import-missing-dependency"
    assert deps["PyJWT"].tier is Tier.ENVIRONMENT  # the venv lacks what the project declares
    assert deps["PyJWT"].extra["modules"] == ["app.lazy", "app.main"]


# --- 6. first-party from the import system; duplicates merged -----------------------------


def test_a_stray_file_does_not_make_a_stdlib_module_first_party(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "http.log": "GET / 200\n",
            "json.txt": "{}\n",
            "app/__init__.py": "",
            "app/main.py": "import http.client\nimport json\n\napp = object()\n",
        },
    )
    result = run(tmp_path, '[service]\napp = "app.main:app"\n', strict=True)
    assert result.status is GateStatus.PASSED
    # Preloaded as third-party/stdlib, which a first-party name never is.
    assert result.summary["preloaded"] >= 2


def test_failures_differing_only_in_random_content_are_merged(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "app = object()\n",
            "app/registry.py": (
                "import uuid\n\n\ndef register(name):\n"
                "    raise RuntimeError(f'{name}: no handler at {hex(id(object()))} for "
                "request {uuid.uuid4()} (trace {uuid.uuid4().hex})')\n"
            ),
            "app/a.py": "from app import registry\n\nregistry.register('x')\n",
            "app/b.py": "from app import registry\n\nregistry.register('x')\n",
        },
    )
    result = run(tmp_path, '[service]\napp = "app.main:app"\n', strict=True)
    [finding] = result.findings
    assert finding.extra["modules"] == ["app.a", "app.b"]
    assert normalise("at 0x7f3a2b1c at 12ab34cd-0000-4000-8000-1234567890ab x") == "at … at … x"


def test_grouping_keeps_failures_at_different_places_apart(tmp_path: Path) -> None:
    frames_a = ((str(tmp_path / "app/a.py"), 3, "<module>", "boom()"),)
    frames_b = ((str(tmp_path / "app/b.py"), 3, "<module>", "boom()"),)
    outcomes = [
        ImportOutcome("app.a", "error", "RuntimeError", "id 0xdeadbeef", frames_a),
        ImportOutcome("app.b", "error", "RuntimeError", "id 0xfeedface", frames_b),
    ]
    files = {"app.a": tmp_path / "app/a.py", "app.b": tmp_path / "app/b.py"}
    findings = outcomes_to_findings(
        outcomes, files, root=tmp_path, import_root=tmp_path, env="development"
    )
    assert [f.path for f in findings] == ["app/a.py", "app/b.py"]


def test_without_an_entry_every_module_starts_fresh_and_every_failure_blocks(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"lib/__init__.py": "", "lib/bad.py": "raise ValueError('bad')\n"})
    manifest = Manifest(root=tmp_path)
    ctx = build_context(tmp_path, manifest, "development", base_environ={}, python=sys.executable)
    result = ImportsGate().run(ctx)
    assert result.summary["mode"] == "fresh"
    assert [(f.tier, f.blocking) for f in result.findings] == [(Tier.ERROR, True)]


def test_values_that_are_not_secret_stay_readable(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": (
                "import os\nraise LookupError(f\"no route for {os.environ['SAFESHIP_ENV']} in \"\n"
                "    f\"{os.environ['REGION']} with {os.environ['API_KEY']}\")\n"
            ),
        },
    )
    toml = '[service]\napp = "app.main:app"\n\n[environments.development]\nenv = { REGION = "europe-west1" }\n'
    result = run(tmp_path, toml, API_KEY="k-0123456789abcdef")
    [finding] = result.findings
    # The environment's name and the manifest's own values are public; the caller's are not.
    assert "no route for development in europe-west1 with [redacted:$API_KEY]" in finding.message
