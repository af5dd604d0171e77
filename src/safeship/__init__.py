"""safeship: safe-by-default deploys for real-time (WebSocket) ASGI services.

The library API lives in ``safeship.service`` (imported lazily here so that the CLI and the
gates do not pay for Starlette on every start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DependencyCheck",
    "Health",
    "Limits",
    "Phase",
    "Safeship",
    "Startup",
    "WebSocketGuard",
    "ws_claims",
]

if TYPE_CHECKING:
    from .core.handshake import Limits
    from .service import (
        DependencyCheck,
        Health,
        Phase,
        Safeship,
        Startup,
        WebSocketGuard,
        ws_claims,
    )


def __getattr__(name: str) -> Any:
    if name == "Limits":
        from .core.handshake import Limits

        return Limits
    if name in __all__:
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module 'safeship' has no attribute {name!r}")
