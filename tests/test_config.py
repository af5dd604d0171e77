from __future__ import annotations

from pathlib import Path

import pytest

from safeship.config import Manifest, current_env, find_manifest, load_manifest
from safeship.errors import ConfigError

GOOD = """
[service]
name = "svc"
app = "svc.main:app"
[environments.qa]
critical = true
[secrets.JWT_SECRET]
min_bytes = 40
consumers = ["env", "file:client.env"]
[legacy]
"svc.db.Old" = "svc.db.New"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_safeship_toml(tmp_path):
    manifest = load_manifest(write(tmp_path, "safeship.toml", GOOD))
    assert manifest.service.app_module == "svc.main"
    assert manifest.root == tmp_path and manifest.path == tmp_path / "safeship.toml"
    assert manifest.secret_config("JWT_SECRET").min_bytes == 40
    assert manifest.secret_config("OTHER").min_bytes == 32  # defaults for undeclared secrets
    assert manifest.legacy == {"svc.db.Old": "svc.db.New"}
    assert manifest.service.salt == "safeship/svc"


def test_loads_tool_safeship_from_pyproject_and_searches_upwards(tmp_path):
    text = "[project]\nname = 'x'\n" + GOOD.replace("\n[", "\n[tool.safeship.")
    write(tmp_path, "pyproject.toml", text)
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_manifest(nested) == tmp_path / "pyproject.toml"
    assert load_manifest(start=nested).service.name == "svc"


def test_pyproject_without_the_table_is_not_a_manifest(tmp_path):
    write(tmp_path, "pyproject.toml", "[project]\nname = 'x'\n")
    assert find_manifest(tmp_path) is None
    manifest = load_manifest(start=tmp_path)
    assert manifest.path is None and manifest.root == tmp_path  # the defaults


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[service]\napp_name = 'x'\n", "service.app_name", "unknown key"),
        ("[deploy]\nport = 'eighty'\n", "deploy.port", "valid integer"),
        ("[deploy]\nport = 70000\n", "deploy.port", "less than or equal to 65535"),
        ("[service]\napp = 'no_colon'\n", "service.app", "module:attribute"),
        ("[auth]\nalgorithms = ['none']\n", "auth.algorithms", "'none' is never"),
        ("[secrets.X]\nconsumers = ['vault:x']\n", "secrets.X.consumers", "unknown consumer"),
        ("[deploy]\nprobe_send = 'ping'\n", "deploy.probe_send", "JSON object"),
        ("[gates.boot]\nsend = '[1]'\n", "gates.boot.send", "not a list"),
        ("[environments.qa]\nblock = ['sometimes']\n", "environments.qa.block.0", "breaks-startup"),
    ],
)
def test_errors_name_the_file_the_key_and_what_was_expected(tmp_path, text, key, fragment):
    path = write(tmp_path, "safeship.toml", text)
    with pytest.raises(ConfigError) as exc:
        load_manifest(path)
    error = exc.value
    assert error.key == key
    assert "safeship.toml" in error.message and key in error.message
    assert fragment in error.message
    assert error.hint and "docs/manifest.md" in error.hint


def test_errors_in_pyproject_name_the_tool_table(tmp_path):
    path = write(tmp_path, "pyproject.toml", "[tool.safeship.service]\nbogus = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_manifest(path)
    assert exc.value.key == "tool.safeship.service.bogus"


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_manifest(write(tmp_path, "safeship.toml", "[service\n"))
    with pytest.raises(ConfigError, match="manifest not found"):
        load_manifest(tmp_path / "nope.toml")


def test_environments_and_criticality(tmp_path):
    manifest = load_manifest(write(tmp_path, "safeship.toml", GOOD))
    assert manifest.is_critical("staging") and manifest.is_critical("production")
    assert not manifest.is_critical("development") and not manifest.is_critical("test")
    assert manifest.is_critical("qa")  # declared critical
    with pytest.raises(ConfigError) as exc:
        manifest.environment("prod")
    assert "unknown environment 'prod'" in exc.value.message
    assert "[environments.prod]" in (exc.value.hint or "")


def test_code_dir_defaults_to_the_app_package(tmp_path):
    manifest = Manifest.model_validate(
        {"service": {"app": "pkg.main:app", "app_dir": "src"}, "root": tmp_path}
    )
    assert manifest.code_dir == (tmp_path / "src" / "pkg").resolve()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "development"),
        ({"SAFESHIP_ENV": "staging"}, "staging"),
        ({"SAFESHIP_ENV": "  "}, "development"),
    ],
)
def test_current_env(environ, expected):
    assert current_env(environ) == expected
