"""The probes a deploy runs: readiness over HTTP, then authenticated WebSocket round trips.

The pipeline talks to a :class:`Prober` (two methods), so its tests can script verdicts
without sockets; :class:`RevisionProber` is the real one, built on ``safeship.probe``. Its
token is minted from ``[deploy] probe_secret``: the secret the service's CLIENTS sign with,
so a revision whose own secret differs fails verification with 401/4401 before it gets
traffic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, SafeshipError, SecretError, UsageError
from ..probe import MintedToken, ProbeResult, Step, TokenSource, parse_send, probe_http, probe_ws
from ..secrets import candidate_names, resolve_secret, source_from_spec

if TYPE_CHECKING:
    from ..config import Manifest

__all__ = [
    "ProbeOutcome",
    "Prober",
    "RevisionProber",
    "probe_steps",
    "probe_token_source",
    "ws_url",
]


@dataclass(frozen=True)
class ProbeOutcome:
    """What the rollout needs from one probe (``category``), and what the record shows."""

    category: str
    kind: str = ""
    detail: str = ""
    ms: float | None = None
    code: int | None = None
    what: str = "websocket"
    """``ready`` (``GET /health/ready``) or ``websocket``."""

    @classmethod
    def from_result(cls, result: ProbeResult, what: str) -> ProbeOutcome:
        verdict = result.verdict
        return cls(
            category=verdict.category.value,
            kind=verdict.kind.value,
            detail=verdict.detail,
            ms=result.timings.get("total"),
            code=verdict.code,
            what=what,
        )

    @property
    def ok(self) -> bool:
        return self.category == "ok"

    def as_dict(self) -> dict[str, Any]:
        ms = None if self.ms is None else round(self.ms, 1)
        return {
            "what": self.what,
            "category": self.category,
            "kind": self.kind,
            "code": self.code,
            "detail": self.detail,
            "ms": ms,
        }


class Prober(Protocol):
    """Probes a base URL (``http://host:port``). Never raises for a failed service."""

    async def ready(self, base_url: str) -> ProbeOutcome:
        """``GET <base>/health/ready``."""
        ...

    async def websocket(self, base_url: str) -> ProbeOutcome:
        """An authenticated WebSocket handshake (plus the configured round trip)."""
        ...


HeaderSource = Callable[[str], Awaitable[Mapping[str, str]]]
"""Base URL -> extra headers for a probe of it (a platform's own auth, e.g. Cloud Run's
``X-Serverless-Authorization``), so the app's token keeps ``Authorization``."""


def ws_url(base_url: str, path: str) -> str:
    """``http://h:p`` + ``/ws`` -> ``ws://h:p/ws`` (``https`` -> ``wss``)."""
    scheme, sep, rest = base_url.partition("://")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{ws_scheme}{sep}{rest.rstrip('/')}/{path.lstrip('/')}"


class RevisionProber:
    def __init__(
        self,
        *,
        ws_path: str = "/ws",
        health_prefix: str = "/health",
        token_source: TokenSource | None = None,
        steps: Sequence[Step] = (),
        timeout: float = 3.0,
        headers: HeaderSource | None = None,
    ) -> None:
        self.ws_path = ws_path
        self.health_prefix = health_prefix
        self.token_source = token_source
        self.steps = tuple(steps)
        self.timeout = timeout
        self.headers = headers
        """Extra headers per probed URL: a target's own (Cloud Run's ID token)."""

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, env: str, environ: Mapping[str, str] | None = None
    ) -> RevisionProber:
        """The deploy's prober for ``env``.

        Raises:
            SecretError: ``deploy.probe_secret`` holds no JWT secret for ``env``, or a weak one
                in a critical environment.
            ConfigError: ``deploy.probe_send`` is not a JSON object.
        """
        deploy = manifest.deploy
        return cls(
            ws_path=manifest.service.ws_path,
            health_prefix=manifest.service.health_prefix,
            token_source=probe_token_source(manifest, env, environ),
            steps=probe_steps(manifest),
            timeout=deploy.probe_timeout,
        )

    async def ready(self, base_url: str) -> ProbeOutcome:
        url = f"{base_url.rstrip('/')}{self.health_prefix.rstrip('/')}/ready"
        headers = await self._headers(base_url, "ready")
        if isinstance(headers, ProbeOutcome):
            return headers
        result = await probe_http(url, timeout=self.timeout, headers=headers)
        return ProbeOutcome.from_result(result, "ready")

    async def websocket(self, base_url: str) -> ProbeOutcome:
        headers = await self._headers(base_url, "websocket")
        if isinstance(headers, ProbeOutcome):
            return headers
        result = await probe_ws(
            ws_url(base_url, self.ws_path),
            token_source=self.token_source,
            steps=self.steps,
            timeout=self.timeout,
            headers=headers,
        )
        return ProbeOutcome.from_result(result, "websocket")

    async def _headers(self, base_url: str, what: str) -> Mapping[str, str] | ProbeOutcome:
        if self.headers is None:
            return {}
        try:
            return await self.headers(base_url)
        except SafeshipError as exc:  # no credential for the platform: the probe cannot run
            return ProbeOutcome("inconclusive", "inconclusive", exc.message, what=what)


def probe_steps(manifest: Manifest) -> list[Step]:
    """The round trip each probe makes: ``deploy.probe_send`` checked by ``probe_expect``."""
    deploy = manifest.deploy
    if not deploy.probe_send:
        if deploy.probe_expect:
            raise ConfigError(
                "probe_expect is set but probe_send is not: there is no reply to check",
                file=manifest.display_path,
                key="deploy.probe_expect",
                hint='set probe_send too, e.g. probe_send = \'{"type": "ping"}\'',
            )
        return []
    try:
        message = parse_send(deploy.probe_send)
    except UsageError as exc:
        raise ConfigError(
            f"probe_send is not a JSON object: {exc.message}",
            file=manifest.display_path,
            key="deploy.probe_send",
            hint='e.g. probe_send = \'{"type": "ping"}\'',
        ) from None
    return [Step(message, dict(deploy.probe_expect), timeout=deploy.probe_timeout)]


def probe_token_source(
    manifest: Manifest, env: str, environ: Mapping[str, str] | None = None
) -> MintedToken:
    """A token source minting short-lived tokens from the clients' secret for ``env``.

    Unlike a service in development, the probes never invent a secret: a token nobody else
    can verify would fail every probe for a reason that is not the revision's.

    Raises:
        SecretError: no secret in ``deploy.probe_secret`` for ``env`` (naming every variable
            tried), or a weak one in a critical environment.
    """
    spec = manifest.deploy.probe_secret
    base = manifest.auth.secret
    config = manifest.secret_config(base)
    try:
        source = source_from_spec(spec, root=manifest.root, environ=environ)
    except SecretError as exc:
        raise ConfigError(
            f"deploy.probe_secret: {exc.message}", file=manifest.display_path, hint=exc.hint
        ) from None
    names = candidate_names(base, env, config.per_environment)
    if not any((source.get(name) or "").strip() for name in names):
        raise SecretError(
            f"the deploy probes cannot mint a token for environment {env!r}: none of "
            f"{', '.join(names)} is set in {source.describe()} (deploy.probe_secret = {spec!r})",
            tried=names,
            hint=f"set {names[0]} to the secret your clients sign with, or point [deploy] "
            "probe_secret at where they keep it (e.g. 'file:clients.env')",
        )
    secret = resolve_secret(
        base,
        env=env,
        critical=manifest.is_critical(env),
        sources=[source],
        salt=manifest.service.salt,
        min_bytes=config.min_bytes,
        per_environment=config.per_environment,
    )
    auth = manifest.auth
    return MintedToken(
        secret.name,
        algorithm=auth.algorithms[0],
        issuer=auth.issuer,
        audience=auth.audience,
        environ={secret.name: secret.value},
    )
