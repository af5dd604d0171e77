"""Resolving a secret per environment.

A secret is resolved as ``<BASE>_<ENV>``, then ``<BASE>``, each name looked up in every
source in order. In a critical environment a missing or weak secret is an error that names
every variable tried; only ``development`` and ``test`` may fall back to a random secret for
the process. Values are never shown: a keyed fingerprint identifies them instead.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import SecretError
from .redact import register_secret
from .sources import SecretSource
from .strength import fingerprint, weaknesses

__all__ = [
    "GENERATED",
    "GENERATING_ENVIRONMENTS",
    "ResolvedSecret",
    "candidate_names",
    "resolve_secret",
]

logger = logging.getLogger("safeship.secrets")

# Environments where a missing secret may be replaced by a random one for the process.
GENERATING_ENVIRONMENTS = frozenset({"development", "test"})
GENERATED = "<generated>"


def candidate_names(base: str, env: str, per_environment: bool = True) -> tuple[str, ...]:
    """The variables that may hold ``base`` in ``env``, most specific first:
    ``("JWT_SECRET_STAGING", "JWT_SECRET")``."""
    if not per_environment:
        return (base,)
    suffix = re.sub(r"[^A-Za-z0-9]", "_", env).upper()
    return (f"{base}_{suffix}", base)


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
        value = secrets.token_urlsafe(48)
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
    problems = weaknesses(value, min_bytes)
    where = f"{name} in {source.describe()}"
    if problems and critical:
        # Not registered for redaction: a rejected placeholder is no secret, and redacting
        # it would hide what the message is about. No fingerprint either: the value is weak,
        # and a fingerprint of a weak value is a guessing target.
        raise SecretError(
            f"{_label(base)} for environment {env!r} is too weak: {where} {' and '.join(problems)}",
            tried=(name,),
            hint=_generate_hint(name, min_bytes),
        )
    register_secret(value)
    fp = fingerprint(value, salt)
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


def register_environment_secrets(
    bases: Iterable[str], env: str, environ: Mapping[str, str]
) -> None:
    """Register for redaction the values that the environment holds for ``bases`` in ``env``
    (``<BASE>_<ENV>``, ``<BASE>``), so a command redacts them from everything it writes,
    the audit log included, before any gate has read them. Weak values are left out: a
    placeholder is no secret, and redacting it would mangle ordinary words."""
    for base in bases:
        for name in candidate_names(base, env):
            value = environ.get(name)
            if value and not weaknesses(value):
                register_secret(value)
