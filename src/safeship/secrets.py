"""Secrets: where they come from, how they are resolved per environment, how strong they are.

A secret is resolved as ``<BASE>_<ENV>``, then ``<BASE>``, each name looked up in every
source in order. In a critical environment a missing or weak secret is an error that names
every variable tried; only ``development`` and ``test`` may fall back to a random secret for
the process. Values are never shown: a keyed fingerprint identifies them instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets as _random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._redact import RedactingFilter, install_redaction, redact, register_secret
from ._secret_gcp import GcpSecretManagerSource
from ._secret_sources import DirSource, DotEnvSource, EnvSource, SecretSource, resolve_path
from .errors import SecretError

if TYPE_CHECKING:
    from .config import Manifest

__all__ = [
    "GENERATED",
    "GENERATING_ENVIRONMENTS",
    "PLACEHOLDERS",
    "SOURCE_KINDS",
    "DirSource",
    "DotEnvSource",
    "EnvSource",
    "GcpSecretManagerSource",
    "RedactingFilter",
    "ResolvedSecret",
    "SecretSource",
    "candidate_names",
    "default_sources",
    "fingerprint",
    "install_redaction",
    "redact",
    "register_secret",
    "resolve_secret",
    "source_from_spec",
    "weaknesses",
]

logger = logging.getLogger("safeship.secrets")

# Environments where a missing secret may be replaced by a random one for the process.
GENERATING_ENVIRONMENTS = frozenset({"development", "test"})
GENERATED = "<generated>"


SOURCE_KINDS: dict[str, Callable[..., SecretSource]] = {
    "env": EnvSource.from_spec,
    "file": DotEnvSource.from_spec,
    "dir": DirSource.from_spec,
    "gcp": GcpSecretManagerSource.from_spec,
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


def candidate_names(base: str, env: str, per_environment: bool = True) -> tuple[str, ...]:
    """The variables that may hold ``base`` in ``env``, most specific first:
    ``("JWT_SECRET_STAGING", "JWT_SECRET")``."""
    if not per_environment:
        return (base,)
    suffix = re.sub(r"[^A-Za-z0-9]", "_", env).upper()
    return (f"{base}_{suffix}", base)


PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "changeme", "change-me", "change_me", "changeit", "change-it", "replaceme",
        "replace-me", "replace_me", "secret", "secretkey", "secret-key", "secret_key",
        "mysecret", "my-secret", "my_secret", "jwt-secret", "jwt_secret", "jwtsecret",
        "supersecret", "super-secret", "super_secret", "topsecret", "s3cr3t", "test",
        "testing", "test-secret", "test_secret", "xxx", "password", "passw0rd", "default",
        "dummy", "example", "sample", "todo", "tbd", "fixme", "your-secret-here",
        "your_secret_here", "your-secret", "yoursecret", "your-jwt-secret", "none", "null",
        "undefined", "foo", "bar", "foobar", "abc", "abc123", "123456", "12345678",
        "1234567890", "qwerty", "admin", "letmein", "key", "token", "dev", "development",
        "staging", "prod", "production", "local", "insecure", "fallback", "fallback-secret",
        "fallback_secret", "not-a-secret", "notsecret",
    }
)  # fmt: skip
"""Well-known placeholder values, compared case-insensitively."""

# Fragments that mark a value as a placeholder wherever they appear (after removing - _ and
# spaces): "please-change-me-in-prod", "<placeholder>", "django-insecure-...".
_PLACEHOLDER_FRAGMENTS = ("changeme", "placeholder", "replaceme", "yoursecret", "insecure")


def _is_placeholder(text: str) -> bool:
    folded = text.strip().strip("'\"<>").lower()
    if folded in PLACEHOLDERS or (folded and len(set(folded)) == 1):
        return True
    squashed = re.sub(r"[-_\s]", "", folded)
    return any(fragment in squashed for fragment in _PLACEHOLDER_FRAGMENTS)


def weaknesses(value: str | bytes, min_bytes: int = 32) -> list[str]:
    """Human-readable problems with a secret value; empty when it is acceptable.

    The problems never quote the value.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    text = raw.decode("utf-8", errors="replace")
    problems = []
    if not text.strip():
        problems.append("is empty")
    elif _is_placeholder(text):
        problems.append("is a placeholder ('changeme'-like)")
    if len(raw) < min_bytes:
        why = " for HS256 (RFC 7518 §3.2)" if min_bytes == 32 else ""
        problems.append(f"is {len(raw)} bytes; at least {min_bytes} are required{why}")
    return problems


def fingerprint(value: str | bytes, salt: str) -> str:
    """HMAC-SHA256 of the secret keyed by ``salt``: the first 12 hex characters.

    Deterministic, so two services (or a service and a gate) can compare secrets without
    revealing them; a different salt gives an unrelated fingerprint.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    return hmac.new(salt.encode("utf-8"), raw, hashlib.sha256).hexdigest()[:12]


@dataclass(frozen=True)
class ResolvedSecret:
    """A resolved secret. ``repr`` and ``str`` never show ``value``."""

    base: str
    name: str
    source: str
    value: str = field(repr=False)
    fingerprint: str
    generated: bool = False
    warnings: tuple[str, ...] = ()


def _label(base: str) -> str:
    return "JWT secret" if base.upper().startswith("JWT") else f"secret {base}"


def _generate_hint(name: str, min_bytes: int) -> str:
    return (
        f"set {name} to a random value of at least {min_bytes} bytes, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
    )


def resolve_secret(
    base: str,
    *,
    env: str,
    critical: bool,
    sources: Sequence[SecretSource],
    salt: str,
    min_bytes: int = 32,
    per_environment: bool = True,
) -> ResolvedSecret:
    """Resolve ``base`` for ``env``: each candidate name (``<BASE>_<ENV>``, then ``<BASE>``)
    in every source, in order. The value found is registered for log redaction.

    Args:
        critical: whether ``env`` is critical; there a missing or weak secret is an error.
        salt: the fingerprint key (``manifest.service.salt``).

    Returns:
        The secret. In ``development`` and ``test`` (unless critical), a missing secret is
        replaced by a random one for the process (``generated=True``), with a warning.

    Raises:
        SecretError: missing (naming every variable and source tried), or weak in a critical
            environment (naming the variable, the source and the problems).
    """
    names = candidate_names(base, env, per_environment)
    described = ", ".join(source.describe() for source in sources) or "no sources"
    empty: list[str] = []
    for name in names:
        for source in sources:
            value = source.get(name)
            if value is None:
                continue
            where = f"{name} in {source.describe()}"
            if not value.strip():
                # An empty assignment (JWT_SECRET_STAGING= in a template) means "not set".
                empty.append(where)
                continue
            return _accept(base, name, source, value, env, critical, salt, min_bytes)

    tried = ", ".join(names)
    note = f" ({'; '.join(empty)} set but empty)" if empty else ""
    if env in GENERATING_ENVIRONMENTS and not critical:
        value = _random.token_urlsafe(48)
        register_secret(value)
        fp = fingerprint(value, salt)
        message = (
            f"{_label(base)} missing for environment {env!r}: tried {tried} in {described}"
            f"{note}; generated a random secret for this process (fingerprint {fp}). Tokens "
            f"signed elsewhere will not verify; set {names[0]} to share one."
        )
        logger.warning("%s", message)
        return ResolvedSecret(
            base=base,
            name=GENERATED,
            source="generated for this process",
            value=value,
            fingerprint=fp,
            generated=True,
            warnings=(message,),
        )
    raise SecretError(
        f"{_label(base)} missing for environment {env!r}: tried {tried} in {described}{note}",
        tried=names,
        hint=_generate_hint(names[0], min_bytes),
    )


def _accept(
    base: str,
    name: str,
    source: SecretSource,
    value: str,
    env: str,
    critical: bool,
    salt: str,
    min_bytes: int,
) -> ResolvedSecret:
    register_secret(value)
    fp = fingerprint(value, salt)
    problems = weaknesses(value, min_bytes)
    where = f"{name} in {source.describe()}"
    if problems and critical:
        raise SecretError(
            f"{_label(base)} for environment {env!r} is too weak: {where} "
            f"{' and '.join(problems)} (fingerprint {fp})",
            tried=(name,),
            hint=_generate_hint(name, min_bytes),
        )
    warnings: tuple[str, ...] = ()
    if problems:
        message = (
            f"{_label(base)} for environment {env!r} is weak: {where} "
            f"{' and '.join(problems)} (fingerprint {fp}); accepted because {env!r} is not "
            "critical, but it would be rejected in staging or production"
        )
        logger.warning("%s", message)
        warnings = (message,)
    return ResolvedSecret(
        base=base,
        name=name,
        source=source.describe(),
        value=value,
        fingerprint=fp,
        warnings=warnings,
    )
