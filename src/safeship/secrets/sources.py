"""The local secret sources: environment variables, a ``.env`` file, a mounted directory.

Re-exported from ``safeship.secrets``, where ``SOURCE_KINDS`` registers them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import SecretError
from .gcp import GcpSecretManagerSource
from .k8s import KubernetesSecretSource

if TYPE_CHECKING:
    from ..config import Manifest

__all__ = [
    "SOURCE_KINDS",
    "DirSource",
    "DotEnvSource",
    "EnvSource",
    "SecretSource",
    "default_sources",
    "resolve_path",
    "source_from_spec",
]

_MAX_SECRET_FILE_BYTES = 1 << 20


@runtime_checkable
class SecretSource(Protocol):
    """Somewhere secrets live. ``get`` returns None when the key is absent."""

    spec: str

    def get(self, key: str) -> str | None: ...

    def describe(self) -> str: ...


class EnvSource:
    """Environment variables (the live ``os.environ`` unless a mapping is given)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.spec = "env"
        self._environ = environ

    @classmethod
    def from_spec(
        cls, arg: str, *, root: Path, environ: Mapping[str, str] | None = None
    ) -> EnvSource:
        if arg:
            raise SecretError(
                f"secret source 'env:{arg}' takes no argument",
                hint="write 'env' to read environment variables",
            )
        return cls(environ)

    def get(self, key: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        return environ.get(key)

    def describe(self) -> str:
        return "environment variables"


class DotEnvSource:
    """A ``.env`` file, read with python-dotenv (no ``${VAR}`` interpolation, so the value
    is exactly what the file says). A missing file holds nothing."""

    def __init__(self, path: Path, *, label: str | None = None) -> None:
        self.path = Path(path)
        self.label = label or str(path)
        self.spec = f"file:{self.label}"
        self._values: dict[str, str | None] | None = None

    @classmethod
    def from_spec(
        cls, arg: str, *, root: Path, environ: Mapping[str, str] | None = None
    ) -> DotEnvSource:
        return cls(resolve_path(arg, root, "file"), label=arg)

    def _load(self) -> dict[str, str | None]:
        if self._values is None:
            if not self.path.is_file():
                self._values = {}
            else:
                from dotenv import dotenv_values

                try:
                    self._values = dict(dotenv_values(self.path, interpolate=False))
                except (OSError, UnicodeDecodeError) as exc:
                    raise SecretError(
                        f"cannot read .env file {self.label}: {type(exc).__name__}",
                        hint="check the file's permissions and that it is UTF-8 text",
                    ) from None
        return self._values

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def describe(self) -> str:
        missing = "" if self.path.is_file() else " (missing)"
        return f".env file {self.label}{missing}"


class DirSource:
    """A mounted secrets directory (Kubernetes, Cloud Run, Docker): one file per key, named
    exactly after it. A trailing newline is stripped."""

    _SAFE_KEY = re.compile(r"[A-Za-z0-9_.-]+")

    def __init__(self, path: Path, *, label: str | None = None) -> None:
        self.path = Path(path)
        self.label = label or str(path)
        self.spec = f"dir:{self.label}"

    @classmethod
    def from_spec(
        cls, arg: str, *, root: Path, environ: Mapping[str, str] | None = None
    ) -> DirSource:
        return cls(resolve_path(arg, root, "dir"), label=arg)

    def get(self, key: str) -> str | None:
        # A key is a file name, never a path: "../x" must not escape the directory.
        if not self._SAFE_KEY.fullmatch(key) or key in {".", ".."}:
            return None
        file = self.path / key
        if not file.is_file():
            return None
        try:
            with file.open("rb") as handle:
                data = handle.read(_MAX_SECRET_FILE_BYTES + 1)
        except OSError as exc:
            raise SecretError(
                f"cannot read secret file {key} in {self.describe()}: {type(exc).__name__}",
                hint="check the mount and the file's permissions",
            ) from None
        if len(data) > _MAX_SECRET_FILE_BYTES:
            raise SecretError(
                f"secret file {key} in {self.describe()} is larger than 1 MiB",
                hint="mount only the secret value in the file",
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(
                f"secret file {key} in {self.describe()} is not UTF-8 text",
                hint="store the secret as text, e.g. the output of secrets.token_urlsafe(48)",
            ) from None
        return text.rstrip("\r\n")

    def describe(self) -> str:
        missing = "" if self.path.is_dir() else " (missing)"
        return f"mounted secrets directory {self.label}{missing}"


def resolve_path(arg: str, root: Path, kind: str) -> Path:
    if not arg:
        raise SecretError(
            f"secret source '{kind}:' needs a path",
            hint=f"write '{kind}:PATH', relative to the manifest's directory",
        )
    path = Path(arg).expanduser()
    return path if path.is_absolute() else Path(root) / path


SOURCE_KINDS: dict[str, Callable[..., SecretSource]] = {
    "env": EnvSource.from_spec,
    "file": DotEnvSource.from_spec,
    "dir": DirSource.from_spec,
    "gcp": GcpSecretManagerSource.from_spec,
    "k8s": KubernetesSecretSource.from_spec,
}
"""Each factory is called as ``factory(arg, root=..., environ=...)`` with the text after
``kind:``. Adding a source kind touches this dict and its own class."""


def source_from_spec(
    spec: str, *, root: Path, environ: Mapping[str, str] | None = None
) -> SecretSource:
    """Build a source from ``env``, ``file:PATH``, ``dir:PATH`` or ``gcp:projects/P[/secrets/S]``.

    Relative paths resolve against ``root`` (the manifest's directory).

    Raises:
        SecretError: the kind is unknown or its argument is invalid.
    """
    kind, _, arg = spec.strip().partition(":")
    factory = SOURCE_KINDS.get(kind)
    if factory is None:
        known = ", ".join(f"'{k}'" for k in SOURCE_KINDS)
        raise SecretError(
            f"unknown secret source kind {kind!r} in {spec!r}",
            hint=f"use one of {known}, e.g. 'file:.env.staging' or 'dir:/run/secrets'",
        )
    return factory(arg, root=Path(root), environ=environ)


def default_sources(
    manifest: Manifest, env: str, environ: Mapping[str, str] | None = None
) -> list[SecretSource]:
    """Environment variables, then the environment's ``env_file`` if set, then the mounted
    directory named by ``SAFESHIP_SECRETS_DIR`` if set (relative to the manifest's directory).
    """
    live = os.environ if environ is None else environ
    sources: list[SecretSource] = [EnvSource(environ)]
    env_file = manifest.environment(env).env_file
    if env_file:
        sources.append(DotEnvSource(manifest.resolve(env_file), label=env_file))
    secrets_dir = live.get("SAFESHIP_SECRETS_DIR", "").strip()
    if secrets_dir:
        sources.append(
            DirSource(resolve_path(secrets_dir, manifest.root, "dir"), label=secrets_dir)
        )
    return sources
