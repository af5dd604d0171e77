"""The drain call of the Cloud Run target: the service library's drain endpoint, reached on
the old revision's own (tag) URL, because Cloud Run never tells a retired revision to let go
of its WebSockets (they stay open until the request timeout, up to 60 minutes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from ...errors import SafeshipError, TargetError

if TYPE_CHECKING:
    from ...config import Manifest

__all__ = ["Drainer", "http_drainer"]

Drainer = Callable[[str, Mapping[str, str], str], Awaitable[str]]
"""(revision URL, platform headers, environment) -> the revision's answer, in words. Tells the
revision to drain; raises ``TargetError`` when it refuses."""


def http_drainer(manifest: Manifest) -> Drainer | None:
    """The service library's drain call: ``POST [service] drain_path`` on the revision's URL
    with a short-lived token of the drain audience, signed with the environment's JWT secret
    (read from ``[deploy] probe_secret``, as the probes' tokens are). ``None`` when the
    manifest sets no drain path: the revision then drains only when it is deleted."""
    path = manifest.service.drain_path
    if not path:
        return None

    async def drain(url: str, headers: Mapping[str, str], env: str) -> str:
        import httpx

        from ...service.drain import mint_drain_token

        auth = manifest.auth
        token = mint_drain_token(
            _drain_secret(manifest, env), algorithm=auth.algorithms[0], issuer=auth.issuer
        )
        target = url.rstrip("/") + path
        try:
            async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
                reply = await client.post(
                    target, headers={**headers, "Authorization": f"Bearer {token}"}
                )
        except httpx.HTTPError as exc:
            raise TargetError(f"POST {target}: {type(exc).__name__}") from None
        if reply.status_code != 202:
            raise TargetError(
                f"POST {target} answered HTTP {reply.status_code}: {reply.text[:200]}"
            )
        return f"draining over {reply.json().get('drain_seconds')} s"

    return drain


def _drain_secret(manifest: Manifest, env: str) -> str:
    from ...secrets import resolve_secret, source_from_spec

    base = manifest.auth.secret
    config = manifest.secret_config(base)
    try:
        source = source_from_spec(manifest.deploy.probe_secret, root=manifest.root)
        secret = resolve_secret(
            base,
            env=env,
            critical=True,  # never a generated secret: nobody could verify its tokens
            sources=[source],
            salt=manifest.service.salt,
            min_bytes=config.min_bytes,
            per_environment=config.per_environment,
        )
    except SafeshipError as exc:
        raise TargetError(f"no secret to sign the drain token: {exc.message}") from None
    return secret.value
