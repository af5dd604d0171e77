"""``Safeship``: one object that wires startup, health, the WebSocket guard, metrics, secrets and
tickets into a FastAPI or Starlette app, from the manifest and ``SAFESHIP_ENV``.

    ship = Safeship()                       # manifest + SAFESHIP_ENV; a "secrets" phase first

    @ship.phase("database", timeout=10)
    async def connect() -> None: ...

    app = FastAPI(lifespan=ship.lifespan)
    ship.install(app)                       # /health/*, /metrics, /auth/ticket, WebSocketGuard
                                            # (and the drain endpoint, when configured)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, claims: dict = Depends(ship.claims)): ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.websockets import WebSocket

from ..config import Manifest, current_env, load_manifest
from ..core.handshake import Limits, MessageRate
from ..errors import ConfigError, SecretError
from ..secrets import (
    ResolvedSecret,
    default_sources,
    install_redaction,
    register_secret,
    resolve_secret,
)
from ..tokens import Tickets, TicketStore, TokenSettings, TokenVerifier, mint, ticket_endpoint
from .drain import DrainEndpoint
from .guard import Authorize, DenialMode, WebSocketGuard
from .health import DependencyCheck, Health
from .metrics import Metrics
from .startup import FailureMode, Phase, Startup

__all__ = ["Safeship", "ws_claims"]

logger = logging.getLogger("safeship.service")


def ws_claims(websocket: WebSocket) -> dict[str, Any]:
    """The verified JWT claims of a guarded connection (a FastAPI dependency)."""
    claims = websocket.scope.get("state", {}).get("claims")
    if claims is None:
        raise RuntimeError("no claims on this connection: is WebSocketGuard installed?")
    return dict(claims)


class Safeship:
    """Args:
    env: the environment; default ``SAFESHIP_ENV``, then ``development``.
    manifest: default: the nearest ``safeship.toml`` / ``[tool.safeship]``.
    environ: where secrets and settings are read from; default ``os.environ``.
    secrets_phase: declare a first phase ``secrets`` that resolves the JWT secret. Pass
        ``False`` to place :meth:`load_secrets` in a phase of your own.
    Remaining arguments are passed to :class:`Startup`, :class:`Health` and
    :class:`WebSocketGuard`.
    """

    def __init__(
        self,
        *,
        env: str | None = None,
        manifest: Manifest | None = None,
        environ: Mapping[str, str] | None = None,
        secrets_phase: bool = True,
        background: bool = False,
        on_failure: FailureMode = "exit",
        drain_seconds: float | None = None,
        shutdown_timeout: float = 10.0,
        checks: Sequence[DependencyCheck] = (),
        authorize: Authorize | None = None,
        mode: DenialMode = "auto",
        limits: Limits = Limits(),
        max_message_bytes: int | None = 1 << 20,
        message_rate: MessageRate | None = None,
        ws_paths: Sequence[str] | None = None,
        subprotocols: Sequence[str] = (),
        metrics: bool = True,
        tickets: bool = True,
    ) -> None:
        install_redaction()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        # A malformed manifest or an unknown environment must end like every other startup
        # failure (one startup_failed line, exit 3), not as a traceback at import: keep the
        # error for a first phase, ``manifest``, and go on with defaults (critical: fail safe).
        self.config_error: ConfigError | None = None
        self.env = env or current_env(dict(self.environ))
        try:
            self.manifest = manifest if manifest is not None else load_manifest()
        except ConfigError as exc:
            self.config_error, self.manifest = exc, Manifest()
        try:
            self.critical = self.manifest.is_critical(self.env)
        except ConfigError as exc:
            self.config_error = self.config_error or exc
            self.critical = True
        self.metrics = Metrics() if metrics else None
        self.startup = Startup(
            background=background,
            on_failure=on_failure,
            drain_seconds=(
                drain_seconds if drain_seconds is not None else self.manifest.deploy.drain_seconds
            ),
            legacy=dict(self.manifest.legacy),
            shutdown_timeout=shutdown_timeout,
            metrics=self.metrics,
        )
        self.health = Health(self.startup, checks, metrics=self.metrics)
        self.token_settings = TokenSettings.from_config(self.manifest.auth)
        self.tickets: Tickets | None = self._ticket_store() if tickets else None
        self.secret: ResolvedSecret | None = None
        self.verifier: TokenVerifier | None = None
        self._guard_options: dict[str, Any] = {
            "mode": mode,
            "authorize": authorize,
            "limits": limits,
            "max_message_bytes": max_message_bytes,
            "message_rate": message_rate,
            "paths": ws_paths,
            "subprotocols": subprotocols,
        }
        if self.config_error is not None:
            self.startup.add_phase(Phase("manifest", self._report_config_error, timeout=10.0))
        if secrets_phase:
            self.startup.add_phase(Phase("secrets", self.load_secrets, timeout=10.0))

    # -- phases ----------------------------------------------------------------------------

    def phase(
        self, name: str, *, timeout: float = 10.0, critical: bool = True
    ) -> Callable[..., Any]:
        """Decorator: declare the next startup phase."""
        return self.startup.phase(name, timeout=timeout, critical=critical)

    def on_shutdown(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self.startup.on_shutdown(fn)

    @property
    def lifespan(self) -> Callable[[Any], Any]:
        return self.startup.lifespan

    async def _report_config_error(self) -> None:
        assert self.config_error is not None
        raise self.config_error

    async def load_secrets(self) -> ResolvedSecret:
        """Resolve the JWT secret for this environment and build the token verifier.

        Raises:
            SecretError: missing or weak in a critical environment; the message lists every
                variable tried.
        """
        base = self.manifest.auth.secret
        if self.critical and self.manifest.auth.cookie and not self.manifest.auth.allowed_origins:
            raise SecretError(
                f"cookie auth ([auth] cookie = {self.manifest.auth.cookie!r}) without "
                "[auth] allowed_origins in the critical environment "
                f"{self.env!r}: any page could open a WebSocket as the user",
                hint="set [auth] allowed_origins to the origins of your pages, "
                'e.g. ["https://app.example.com"]',
            )
        config = self.manifest.secret_config(base)
        secret = resolve_secret(
            base,
            env=self.env,
            critical=self.critical,
            sources=default_sources(self.manifest, self.env, self.environ),
            salt=self.manifest.service.salt,
            min_bytes=config.min_bytes,
            per_environment=config.per_environment,
        )
        register_secret(secret.value)
        self.secret = secret
        self.verifier = TokenVerifier(secret.value, self.token_settings)
        logger.info(
            "JWT secret for %s: %s from %s (fingerprint %s)",
            self.env,
            secret.name,
            secret.source,
            secret.fingerprint,
        )
        return secret

    # -- the app ---------------------------------------------------------------------------

    def routes(
        self,
        *,
        health_prefix: str | None = None,
        metrics_path: str | None = "/metrics",
        ticket_path: str | None = "/auth/ticket",
    ) -> list[BaseRoute]:
        prefix = health_prefix if health_prefix is not None else self.manifest.service.health_prefix
        routes: list[BaseRoute] = list(self.health.routes(prefix))
        if metrics_path and self.metrics is not None:
            routes.append(Route(metrics_path, self.metrics.endpoint, methods=["GET"]))
        if ticket_path and self.tickets is not None:
            routes.append(Route(ticket_path, self._issue_ticket, methods=["POST"]))
        drain_path = self.manifest.service.drain_path
        if drain_path:
            endpoint = DrainEndpoint(
                self.startup,
                lambda: self.secret.value if self.secret is not None else None,
                self.token_settings,
            )
            routes.append(Route(drain_path, endpoint.handle, methods=["POST"]))
        return routes

    def guard(self, app: Any) -> WebSocketGuard:
        """Wrap any ASGI app in the guard, wired to this service's state."""
        return WebSocketGuard(app, **self._guard_kwargs())

    def _guard_kwargs(self) -> dict[str, Any]:
        return {
            "readiness": self.health.readiness,
            "verifier": lambda: self.verifier,
            "connections": self.startup.connections,
            "cookie": self.manifest.auth.cookie,
            "tickets": self.tickets,
            "allowed_origins": self.manifest.auth.allowed_origins,
            "expiry_grace": self.manifest.auth.expiry_grace_seconds,
            "metrics": self.metrics,
            **self._guard_options,
        }

    def install(self, app: Any, **route_options: Any) -> None:
        """Add the health, metrics and ticket routes and the guard to a Starlette/FastAPI app."""
        app.router.routes[0:0] = self.routes(**route_options)
        app.add_middleware(WebSocketGuard, **self._guard_kwargs())

    @staticmethod
    def claims(websocket: WebSocket) -> dict[str, Any]:
        """FastAPI dependency: ``claims: dict = Depends(ship.claims)``."""
        return ws_claims(websocket)

    async def _issue_ticket(self, request: Request) -> Response:
        if self.verifier is None or self.tickets is None:
            return JSONResponse(
                {"error": "not_ready", "detail": "service is starting"},
                status_code=503,
                headers={"retry-after": "1"},
            )
        paths = self._guard_options.get("paths")
        default_path = paths[0] if paths and len(paths) == 1 else None
        return await ticket_endpoint(self.verifier, self.tickets, default_path=default_path)(
            request
        )

    def _ticket_store(self) -> Tickets:
        """Shared in Redis when ``REDIS_URL`` is set (a ticket from one instance works on
        every other), else in this process's memory."""
        url = (self.environ.get("REDIS_URL") or "").strip()
        if not url:
            return TicketStore()
        from ..tokens.tickets_redis import RedisTicketStore

        try:
            store = RedisTicketStore(url)
        except ImportError:
            # Reported by the first phase like any configuration error, not at import.
            self.config_error = self.config_error or ConfigError(
                "REDIS_URL is set, so tickets are shared through Redis, but redis-py is not "
                "installed",
                key="REDIS_URL",
                hint="pip install 'safeship[redis]', or unset REDIS_URL for in-process tickets",
            )
            return TicketStore()
        except Exception:
            # redis-py's parse errors may quote parts of the URL (a password): never shown.
            self.config_error = self.config_error or ConfigError(
                "not a Redis URL: expected redis://host:6379/0, rediss://... or unix://... "
                "(credentials, if any, before the host)",
                key="REDIS_URL",
                hint="fix REDIS_URL, or unset it for in-process tickets",
            )
            return TicketStore()
        self.startup.on_shutdown(store.aclose)
        return store

    def mint(self, sub: str, *, ttl: float = 300.0, **claims: Any) -> str:
        """A token this service accepts (for tests, probes and demos)."""
        if self.secret is None:
            raise RuntimeError("secrets are not loaded yet: call after the secrets phase")
        return mint(
            self.secret.value,
            sub,
            ttl=ttl,
            algorithm=self.token_settings.algorithms[0],
            issuer=self.token_settings.issuer,
            audience=self.token_settings.audience,
            **claims,
        )
