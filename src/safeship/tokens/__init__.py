"""Tokens: JWT verification and minting, finding the token of a WebSocket handshake, and
one-time tickets for browsers."""

from __future__ import annotations

from .extract import (
    AUTH_SUBPROTOCOL,
    SUBPROTOCOL_PREFIX,
    ExtractedToken,
    extract_token,
    negotiate_subprotocol,
    parse_bearer,
    strip_token_subprotocols,
)
from .tickets import Tickets, TicketStore, ticket_endpoint
from .verify import TokenSettings, TokenVerifier, mint

__all__ = [
    "AUTH_SUBPROTOCOL",
    "SUBPROTOCOL_PREFIX",
    "ExtractedToken",
    "TicketStore",
    "Tickets",
    "TokenSettings",
    "TokenVerifier",
    "extract_token",
    "mint",
    "negotiate_subprotocol",
    "parse_bearer",
    "strip_token_subprotocols",
    "ticket_endpoint",
]
