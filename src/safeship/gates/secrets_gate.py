"""The ``secrets`` gate: every declared secret, in every consumer, for the target environment.

For each secret (``[secrets.*]`` plus the JWT signing secret ``auth.secret``) and each of its
consumers (``env``, ``file:PATH``, ``dir:PATH``, ``gcp:...``, and the Secret Manager version
``[deploy.cloudrun] secrets`` gives the Cloud Run service) the gate checks that the secret
is present under one of its candidate names, is not a placeholder, is strong enough, and
that all consumers hold the same value. Values are compared and shown only as keyed
fingerprints; no value ever reaches a finding, a summary or a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SecretConfig
from ..errors import SecretError
from ..secrets import (
    GENERATING_ENVIRONMENTS,
    SecretSource,
    candidate_names,
    fingerprint,
    register_secret,
    source_from_spec,
    weaknesses,
)
from .model import Finding, GateResult, Tier
from .runner import CheckContext, result_from_findings

__all__ = ["SecretsGate", "declared_secrets", "referenced_versions"]


@dataclass(frozen=True)
class _Held:
    consumer: str
    name: str
    fingerprint: str


def declared_secrets(ctx: CheckContext) -> dict[str, SecretConfig]:
    """``[secrets.*]``, plus the JWT signing secret when the project has a manifest."""
    manifest = ctx.manifest
    declared = dict(manifest.secrets)
    if manifest.path is not None and manifest.auth.secret not in declared:
        declared[manifest.auth.secret] = manifest.secret_config(manifest.auth.secret)
    return declared


class SecretsGate:
    """Checks presence, strength and agreement of the environment's secrets."""

    name = "secrets"

    def run(self, ctx: CheckContext) -> GateResult:
        secrets = declared_secrets(ctx)
        if not secrets:
            return result_from_findings(
                self.name, [], {"secrets": 0, "note": "no manifest, so no secrets are declared"}
            )
        findings: list[Finding] = []
        prints: dict[str, dict[str, str]] = {}
        for base, config in secrets.items():
            held = self._check_secret(ctx, base, config, findings)
            prints[base] = {h.consumer: h.fingerprint for h in held}
            findings.extend(self._mismatches(ctx, base, held))
        summary: dict[str, Any] = {
            "secrets": len(secrets),
            "consumers": sum(
                len(dict.fromkeys([*c.consumers, *referenced_versions(ctx, base, c)]))
                for base, c in secrets.items()
            ),
            "fingerprints": prints,
        }
        return result_from_findings(self.name, findings, summary)

    def _finding(
        self,
        ctx: CheckContext,
        rule: str,
        message: str,
        *,
        blocking: bool,
        base: str,
        consumer: str | None = None,
        hint: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Finding:
        return Finding(
            gate=self.name,
            rule=rule,
            message=message,
            tier=Tier.ERROR if blocking else Tier.WARNING,
            path=_consumer_path(ctx, consumer),
            hint=hint,
            symbol=base,
            blocking=blocking,
            extra={"secret": base, "consumer": consumer, **(extra or {})},
        )

    def _check_secret(
        self, ctx: CheckContext, base: str, config: SecretConfig, findings: list[Finding]
    ) -> list[_Held]:
        names = candidate_names(base, ctx.env, config.per_environment)
        salt = ctx.manifest.service.salt
        held: list[_Held] = []
        for spec in dict.fromkeys([*config.consumers, *referenced_versions(ctx, base, config)]):
            try:
                source = source_from_spec(spec, root=ctx.manifest.root, environ=ctx.environ)
                found = _lookup(source, names)
            except SecretError as exc:
                findings.append(
                    self._finding(
                        ctx,
                        "secret-source-error",
                        f"{base}: cannot read consumer {spec}: {exc.message}",
                        blocking=True,
                        base=base,
                        consumer=spec,
                        hint=exc.hint,
                    )
                )
                continue
            if found is None:
                if config.required:
                    findings.append(self._missing(ctx, base, spec, source, names, config))
                continue
            name, value = found
            if not weaknesses(value, config.min_bytes):
                register_secret(value)  # redacted from everything this process prints
            fp = fingerprint(value, salt)
            held.append(_Held(spec, name, fp))
            problems = weaknesses(value, config.min_bytes)
            if problems:
                findings.append(
                    self._finding(
                        ctx,
                        "secret-weak",
                        f"{name} in {source.describe()} {' and '.join(problems)} "
                        f"(fingerprint {fp})",
                        blocking=ctx.critical,
                        base=base,
                        consumer=spec,
                        hint=_generate_hint(name, config.min_bytes, source.describe()),
                        extra={"name": name, "fingerprint": fp, "problems": problems},
                    )
                )
        return held

    def _missing(
        self,
        ctx: CheckContext,
        base: str,
        spec: str,
        source: SecretSource,
        names: tuple[str, ...],
        config: SecretConfig,
    ) -> Finding:
        # Only development and test may run without it: the service then generates a
        # random secret for the process, which no other consumer can share.
        lenient = ctx.env in GENERATING_ENVIRONMENTS and not ctx.critical
        consequence = (
            "; the service will generate a random one for the process, so no client can "
            "sign tokens it accepts"
            if lenient
            else ""
        )
        return self._finding(
            ctx,
            "secret-missing",
            f"{base} missing for environment {ctx.env!r} in {source.describe()}: tried "
            f"{', '.join(names)}{consequence}",
            blocking=not lenient,
            base=base,
            consumer=spec,
            hint=_generate_hint(names[0], config.min_bytes, source.describe()),
            extra={"tried": list(names)},
        )

    def _mismatches(self, ctx: CheckContext, base: str, held: list[_Held]) -> list[Finding]:
        if len({h.fingerprint for h in held}) <= 1:
            return []
        reference = held[0]
        return [
            self._finding(
                ctx,
                "secret-mismatch",
                f"{base} differs between consumers: {reference.consumer} ({reference.name}) "
                f"has fingerprint {reference.fingerprint}, {other.consumer} ({other.name}) "
                f"has fingerprint {other.fingerprint}",
                blocking=True,
                base=base,
                consumer=other.consumer,
                hint="every consumer must hold the same secret, or tokens signed by one are "
                f"rejected by another (403/4401): copy the value of {reference.name} from "
                f"{reference.consumer} to {other.consumer}",
                extra={
                    "consumers": [
                        {"consumer": h.consumer, "name": h.name, "fingerprint": h.fingerprint}
                        for h in (reference, other)
                    ]
                },
            )
            for other in held[1:]
            if other.fingerprint != reference.fingerprint
        ]


def referenced_versions(ctx: CheckContext, base: str, config: SecretConfig) -> list[str]:
    """The Secret Manager version ``[deploy.cloudrun] secrets`` gives the Cloud Run service
    for ``base`` in this environment, as a consumer: ``gcp:projects/P/secrets/S[/versions/V]``.

    The service reads that version, so the clients' consumers must hold the same secret; it is
    compared like any declared consumer, without being declared twice."""
    cloudrun = ctx.manifest.deploy.cloudrun
    for name in candidate_names(base, ctx.env, config.per_environment):
        reference = cloudrun.secrets.get(name)
        if reference is None:
            continue
        secret, _, version = reference.rpartition(":")
        if not secret.startswith("projects/"):
            if not cloudrun.project:
                return []  # the target refuses this manifest itself, naming the key
            secret = f"projects/{cloudrun.project}/secrets/{secret}"
        pinned = "" if version == "latest" else f"/versions/{version}"
        return [f"gcp:{secret}{pinned}"]
    return []


def _lookup(source: SecretSource, names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = source.get(name)
        if value is not None:
            return name, value
    return None


def _generate_hint(name: str, min_bytes: int, where: str) -> str:
    return (
        f"set {name} in {where} to a random value of at least {min_bytes} bytes, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
    )


def _consumer_path(ctx: CheckContext, consumer: str | None) -> str | None:
    """The file a ``file:``/``dir:`` consumer points at, relative to the checked root."""
    if not consumer or consumer.split(":", 1)[0] not in ("file", "dir"):
        return None
    arg = consumer.split(":", 1)[1]
    path = Path(arg) if Path(arg).is_absolute() else ctx.manifest.root / arg
    try:
        return path.resolve().relative_to(ctx.root.resolve()).as_posix()
    except ValueError:
        return arg
