"""Secrets: where they come from, how they are resolved per environment, how strong they are,
and how they are kept out of every output.

A secret is resolved as ``<BASE>_<ENV>``, then ``<BASE>``, each name looked up in every
source in order. In a critical environment a missing or weak secret is an error that names
every variable tried; only ``development`` and ``test`` may fall back to a random secret for
the process. Values are never shown: a keyed fingerprint identifies them instead.
"""

from __future__ import annotations

from .gcp import GcpSecretManagerSource
from .k8s import KubernetesSecretSource
from .redact import RedactingFilter, install_redaction, redact, register_secret
from .resolve import (
    GENERATED,
    GENERATING_ENVIRONMENTS,
    ResolvedSecret,
    candidate_names,
    register_environment_secrets,
    resolve_secret,
)
from .sources import (
    SOURCE_KINDS,
    DirSource,
    DotEnvSource,
    EnvSource,
    SecretSource,
    default_sources,
    source_from_spec,
)
from .strength import PLACEHOLDERS, fingerprint, weaknesses

__all__ = [
    "GENERATED",
    "GENERATING_ENVIRONMENTS",
    "PLACEHOLDERS",
    "SOURCE_KINDS",
    "DirSource",
    "DotEnvSource",
    "EnvSource",
    "GcpSecretManagerSource",
    "KubernetesSecretSource",
    "RedactingFilter",
    "ResolvedSecret",
    "SecretSource",
    "candidate_names",
    "default_sources",
    "fingerprint",
    "install_redaction",
    "redact",
    "register_environment_secrets",
    "register_secret",
    "resolve_secret",
    "source_from_spec",
    "weaknesses",
]
