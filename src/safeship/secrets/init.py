"""``safeship secrets init``: a strong secret, written to every local consumer of an environment.

A first deploy needs the same secret in the service's configuration and in its clients' (the
test clients, the deploy's probes). This generates one value per declared secret and writes it
under its per-environment name into each local place that must hold it: the environment's
``env_file`` and every ``file:``/``dir:`` consumer, each written with mode 0600. An existing
value is never replaced without ``force``. The value itself is never returned or shown; the
result names where it went and its keyed fingerprint.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .resolve import candidate_names
from .sources import DirSource, DotEnvSource, resolve_path
from .strength import fingerprint

if TYPE_CHECKING:
    from ..config import Manifest

__all__ = ["InitResult", "WrittenSecret", "init_secrets"]


@dataclass(frozen=True)
class WrittenSecret:
    base: str
    name: str
    fingerprint: str
    written: tuple[str, ...]
    """The consumers that now hold the value (``file:PATH``, ``dir:PATH``)."""
    not_written: tuple[tuple[str, str], ...] = ()
    """Consumers this command cannot write, each with what to do instead."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "secret": self.base,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "written": list(self.written),
            "not_written": [{"consumer": c, "todo": todo} for c, todo in self.not_written],
        }


@dataclass(frozen=True)
class InitResult:
    env: str
    secrets: tuple[WrittenSecret, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, "env": self.env, "secrets": [s.as_dict() for s in self.secrets]}


def _targets(manifest: Manifest, env: str, consumers: list[str]) -> list[str]:
    """Local places to write, in order, without duplicates: the environment's env_file (what
    the service reads), then the declared ``file:``/``dir:`` consumers."""
    specs: list[str] = []
    env_file = manifest.environment(env).env_file
    if env_file:
        specs.append(f"file:{env_file}")
    for spec in consumers:
        kind = spec.split(":", 1)[0]
        if kind in ("file", "dir") and spec not in specs:
            specs.append(spec)
    return specs


def _existing(spec: str, root: Path, name: str) -> bool:
    kind, _, arg = spec.partition(":")
    source = (
        DotEnvSource(resolve_path(arg, root, "file"), label=arg)
        if kind == "file"
        else DirSource(resolve_path(arg, root, "dir"), label=arg)
    )
    return source.get(name) is not None


def _write(spec: str, root: Path, name: str, value: str) -> None:
    kind, _, arg = spec.partition(":")
    if kind == "file":
        from dotenv import set_key

        path = resolve_path(arg, root, "file")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before the value goes in, so it is never readable by others.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        set_key(path, name, value, quote_mode="never")
        os.chmod(path, 0o600)
    else:
        directory = resolve_path(arg, root, "dir")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
        os.chmod(path, 0o600)


def _unwritable(spec: str, name: str, env_file: str | None) -> str:
    kind = spec.split(":", 1)[0]
    if kind == "env":
        if env_file:
            return f"covered by env_file {env_file} (the service reads it)"
        return (
            f"set {name} in the service's environment, or add env_file to "
            "[environments.<env>] so this command can write it"
        )
    return f"add {name} as a new version in Secret Manager ({spec}); this command writes local files only"


def init_secrets(manifest: Manifest, env: str, *, force: bool = False) -> InitResult:
    """Generate every declared secret of ``env`` and write it to its local consumers.

    Raises:
        ConfigError: ``env`` is not in the manifest.
        UsageError: a consumer already holds a value and ``force`` is false, or no secret is
            declared.
    """
    manifest.environment(env)  # raises ConfigError naming the known environments
    declared = dict(manifest.secrets)
    if manifest.auth.secret not in declared:
        declared[manifest.auth.secret] = manifest.secret_config(manifest.auth.secret)
    plans: list[tuple[str, str, list[str], Any]] = []
    env_file = manifest.environment(env).env_file
    for base, config in declared.items():
        name = candidate_names(base, env, config.per_environment)[0]
        targets = _targets(manifest, env, config.consumers)
        plans.append((base, name, targets, config))
    held = [
        f"{spec} ({name})"
        for _, name, targets, _ in plans
        for spec in targets
        if _existing(spec, manifest.root, name)
    ]
    if held and not force:
        raise UsageError(
            f"refusing to overwrite existing secrets for environment {env!r}: {', '.join(held)}",
            hint="pass --force to replace them (every client holding the old value must then "
            "be given the new one)",
        )
    written: list[WrittenSecret] = []
    for base, name, targets, config in plans:
        value = secrets.token_urlsafe(max(48, config.min_bytes))
        for spec in targets:
            _write(spec, manifest.root, name, value)
        skipped = tuple(
            (spec, _unwritable(spec, name, env_file))
            for spec in config.consumers
            if spec.split(":", 1)[0] not in ("file", "dir")
        )
        written.append(
            WrittenSecret(
                base=base,
                name=name,
                fingerprint=fingerprint(value, manifest.service.salt),
                written=tuple(targets),
                not_written=skipped,
            )
        )
    return InitResult(env=env, secrets=tuple(written))
