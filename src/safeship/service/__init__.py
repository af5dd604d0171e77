"""What runs inside the user's ASGI app: phased startup, health, the WebSocket guard, metrics."""

from .connections import Connection, ConnectionRegistry
from .guard import REFRESH_MESSAGE_TYPE, WebSocketGuard
from .health import DependencyCheck, Health
from .metrics import Metrics
from .ship import Safeship, ws_claims
from .startup import Phase, Startup

__all__ = [
    "REFRESH_MESSAGE_TYPE",
    "Connection",
    "ConnectionRegistry",
    "DependencyCheck",
    "Health",
    "Metrics",
    "Phase",
    "Safeship",
    "Startup",
    "WebSocketGuard",
    "ws_claims",
]
