"""The local secret sources, and one contract test over the SOURCE_KINDS registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeship.errors import SecretError
from safeship.secrets import (
    SOURCE_KINDS,
    DirSource,
    DotEnvSource,
    EnvSource,
    SecretSource,
    source_from_spec,
)

VALUE = "source-secret-0123456789-abcdefghijklmnopqrstuv"


def _local_source(kind: str, tmp_path: Path) -> SecretSource:
    """A source of ``kind`` that holds KEY=VALUE and nothing else."""
    if kind == "env":
        return source_from_spec("env", root=tmp_path, environ={"KEY": VALUE})
    if kind == "file":
        (tmp_path / ".env.test").write_text(f"KEY={VALUE}\n")
        return source_from_spec("file:.env.test", root=tmp_path)
    if kind == "dir":
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "KEY").write_text(VALUE + "\n")
        return source_from_spec("dir:secrets", root=tmp_path)
    if kind == "gcp":
        pytest.skip("gcp needs a service: tests/secrets/test_gcp.py covers its contract")
    if kind == "k8s":
        pytest.skip("k8s needs an API server: tests/secrets/test_k8s.py covers its contract")
    pytest.fail(f"new source kind {kind!r}: add it to this contract test")


@pytest.mark.parametrize("kind", sorted(SOURCE_KINDS))
def test_every_registered_source_honours_the_contract(kind: str, tmp_path: Path) -> None:
    source = _local_source(kind, tmp_path)
    assert isinstance(source, SecretSource)
    assert source.spec.split(":")[0] == kind
    assert source.get("KEY") == VALUE
    assert source.get("ABSENT") is None
    description = source.describe()
    assert description and VALUE not in description


def test_env_source_reads_the_live_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    source = EnvSource()
    monkeypatch.setenv("SAFESHIP_TEST_SOURCE_KEY", VALUE)
    assert source.get("SAFESHIP_TEST_SOURCE_KEY") == VALUE
    monkeypatch.delenv("SAFESHIP_TEST_SOURCE_KEY")
    assert source.get("SAFESHIP_TEST_SOURCE_KEY") is None
    assert source.describe() == "environment variables"


def test_dotenv_source_parses_like_python_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env.staging"
    env_file.write_text(
        "# comment\n"
        "export A='quoted value'\n"
        'B="with ${NOT_EXPANDED}"\n'
        "C=plain # trailing comment\n"
        "BARE\n"
    )
    source = DotEnvSource(env_file, label=".env.staging")
    assert source.get("A") == "quoted value"
    assert source.get("B") == "with ${NOT_EXPANDED}"  # exactly what the file says
    assert source.get("C") == "plain"
    assert source.get("BARE") is None
    assert source.describe() == ".env file .env.staging"
    assert source.spec == "file:.env.staging"


def test_missing_dotenv_file_holds_nothing(tmp_path: Path) -> None:
    source = DotEnvSource(tmp_path / ".env.nope", label=".env.nope")
    assert source.get("ANY") is None
    assert source.describe() == ".env file .env.nope (missing)"


def test_dir_source_reads_mounted_files(tmp_path: Path) -> None:
    (tmp_path / "JWT_SECRET_STAGING").write_text(VALUE + "\r\n")
    (tmp_path / "inner").mkdir()
    source = DirSource(tmp_path, label="/run/secrets")
    assert source.get("JWT_SECRET_STAGING") == VALUE
    assert source.get("jwt_secret_staging") is None  # names are exact
    assert source.get("inner") is None  # a directory is not a secret
    assert source.describe() == "mounted secrets directory /run/secrets"


def test_dir_source_keys_cannot_escape_the_directory(tmp_path: Path) -> None:
    (tmp_path / "outside").write_text(VALUE)
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    source = DirSource(mounted)
    for key in ("../outside", "..", ".", "a/b", ""):
        assert source.get(key) is None


def test_dir_source_rejects_binary_content(tmp_path: Path) -> None:
    (tmp_path / "KEY").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SecretError) as caught:
        DirSource(tmp_path, label="/run/secrets").get("KEY")
    assert "KEY" in caught.value.message and "/run/secrets" in caught.value.message


def test_missing_dir_holds_nothing(tmp_path: Path) -> None:
    source = DirSource(tmp_path / "absent", label="/run/secrets")
    assert source.get("KEY") is None
    assert source.describe().endswith("(missing)")


def test_relative_paths_resolve_against_the_root(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / ".env").write_text(f"KEY={VALUE}\n")
    source = source_from_spec("file:conf/.env", root=tmp_path)
    assert isinstance(source, DotEnvSource)
    assert source.path == tmp_path / "conf" / ".env"
    assert source.get("KEY") == VALUE
    absolute = source_from_spec(f"dir:{tmp_path}", root=Path("/elsewhere"))
    assert isinstance(absolute, DirSource) and absolute.path == tmp_path


@pytest.mark.parametrize(
    ("spec", "named"),
    [("vault:kv/jwt", "'vault'"), ("file:", "file:"), ("dir:", "dir:"), ("env:X", "env:X")],
)
def test_bad_specs_are_errors_that_name_them(spec: str, named: str) -> None:
    with pytest.raises(SecretError) as caught:
        source_from_spec(spec, root=Path("."))
    assert named in caught.value.message
    assert caught.value.hint
