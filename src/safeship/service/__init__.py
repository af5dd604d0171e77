"""What runs inside the user's ASGI app: phased startup, health, the WebSocket guard, metrics, the drain endpoint."""

from .connections import Connection, ConnectionRegistry
from .drain import DRAIN_AUDIENCE, DrainEndpoint, mint_drain_token
from .guard import REFRESH_MESSAGE_TYPE, WebSocketGuard
from .health import DependencyCheck, Health
from .metrics import Metrics
from .ship import Safeship, ws_claims
from .startup import Phase, Startup

__all__ = [
    "DRAIN_AUDIENCE",
    "REFRESH_MESSAGE_TYPE",
    "Connection",
    "ConnectionRegistry",
    "DependencyCheck",
    "DrainEndpoint",
    "Health",
    "Metrics",
    "Phase",
    "Safeship",
    "Startup",
    "WebSocketGuard",
    "mint_drain_token",
    "ws_claims",
]
