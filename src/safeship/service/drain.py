"""The drain endpoint: an authenticated ``POST`` that starts the same drain as SIGTERM.

Some platforms never tell an old revision to let go of its WebSockets (Cloud Run keeps them
until the request timeout). After a switch or a rollback the deployer calls this endpoint on
the old revision's own URL; the service drops readiness and closes its WebSockets with 1012,
spread over the drain window, and the clients reconnect to the serving revision.

Off unless ``[service] drain_path`` is set. The call carries ``Authorization: Bearer <jwt>``
signed with the service's JWT secret, with the audience :data:`DRAIN_AUDIENCE` **only** and
a lifetime of at most :data:`MAX_TTL` seconds. A client token (no ``aud``, or the clients'
audience) is refused with 403, and a drain token is refused by the WebSocket guard, whose
verifier does not accept that audience: the two kinds can never stand in for each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ConfigError, TokenError
from ..tokens import TokenSettings, TokenVerifier, mint, parse_bearer
from .startup import Startup

__all__ = ["DRAIN_AUDIENCE", "MAX_TTL", "DrainEndpoint", "mint_drain_token"]

logger = logging.getLogger("safeship.service")

DRAIN_AUDIENCE = "safeship-drain"
MAX_TTL = 300.0
"""The longest lifetime (``exp - iat``, seconds) a drain token may have."""

# A token the drain verifier refuses for these reasons is genuine but not a drain token.
_NOT_FOR_DRAIN = frozenset({"bad_audience", "missing_claim"})


def mint_drain_token(secret: str | bytes, *, ttl: float = 60.0, **options: Any) -> str:
    """A token the drain endpoint accepts (``sub`` is ``safeship-deploy``).

    Args:
        secret: the service's JWT secret (what its clients' tokens are signed with).
        ttl: seconds; at most :data:`MAX_TTL`.
        options: ``algorithm``, ``issuer`` as the service's ``[auth]`` expects.
    """
    if ttl > MAX_TTL:
        raise ValueError(f"a drain token lives at most {MAX_TTL:g} s, got ttl={ttl:g}")
    return mint(secret, "safeship-deploy", ttl=ttl, audience=DRAIN_AUDIENCE, **options)


def _deny(status: int, error: str, detail: str) -> Response:
    headers = {"www-authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class DrainEndpoint:
    """``handle`` is the ``POST`` route. ``key`` returns the JWT secret once the secrets phase resolved it."""

    def __init__(
        self,
        startup: Startup,
        key: Callable[[], str | bytes | None],
        settings: TokenSettings,
    ) -> None:
        if settings.audience == DRAIN_AUDIENCE:
            raise ConfigError(
                f"[auth] audience must not be {DRAIN_AUDIENCE!r}: client tokens would then be "
                "drain tokens",
                key="auth.audience",
                hint="give the clients' tokens an audience of their own",
            )
        self.startup, self.key = startup, key
        self.settings = TokenSettings(
            algorithms=settings.algorithms,
            issuer=settings.issuer,
            audience=DRAIN_AUDIENCE,
            leeway=settings.leeway,
            max_bytes=settings.max_bytes,
            required_claims=("exp", "iat", "sub", "aud"),
        )
        self._verifier: TokenVerifier | None = None
        self._task: asyncio.Task[None] | None = None

    def _verify(self, token: str) -> dict[str, Any] | Response:
        key = self.key()
        if key is None:
            return JSONResponse(
                {"error": "not_ready", "detail": "the service has not loaded its secret yet"},
                status_code=503,
                headers={"retry-after": "1"},
            )
        if self._verifier is None:
            self._verifier = TokenVerifier(key, self.settings, cache_size=0)
        try:
            claims = self._verifier.verify(token)
        except TokenError as exc:
            if exc.kind in _NOT_FOR_DRAIN:
                return _deny(403, "forbidden", f"not a drain token: {exc.message}")
            return _deny(401, "invalid_token", exc.message)
        if claims.get("aud") != DRAIN_AUDIENCE:
            # ["clients", "safeship-drain"] would be a client token that can also drain.
            return _deny(403, "forbidden", f"a drain token's audience is {DRAIN_AUDIENCE!r} only")
        if claims["exp"] - claims["iat"] > MAX_TTL:
            return _deny(403, "forbidden", f"a drain token lives at most {MAX_TTL:g} s")
        return claims

    async def handle(self, request: Request) -> Response:
        header = request.headers.get("authorization")
        if not header:
            return _deny(401, "invalid_token", "a drain needs Authorization: Bearer <token>")
        try:
            token = parse_bearer(header)
        except TokenError as exc:
            return _deny(401, "invalid_token", exc.message)
        checked = self._verify(token)
        if isinstance(checked, Response):
            logger.warning(
                "drain request refused: %s", bytes(checked.body).decode(errors="replace")
            )
            return checked
        window = self.startup.drain_seconds
        if self._task is None:
            logger.info(
                "drain requested by %s: closing WebSockets over %gs", checked["sub"], window
            )
            self._task = asyncio.ensure_future(self.startup.drain())
        return JSONResponse({"status": "draining", "drain_seconds": window}, status_code=202)
