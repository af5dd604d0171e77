"""Client-side probes: WebSocket and HTTP, with per-phase timings and classified verdicts.

``probe_ws`` and ``probe_http`` never raise for a failed probe: the outcome is
``ProbeResult.verdict`` (see ``safeship.core.verdict``). ``probe`` picks one by URL scheme.
"""

from __future__ import annotations

from typing import Any

from ..core.verdict import Category, Verdict, VerdictKind
from ..errors import UsageError
from .http import probe_http
from .result import ProbeResult, StepResult, display_url
from .steps import Step, parse_expect, parse_send
from .tokens import (
    TOKEN_SOURCES,
    MintedToken,
    StaticToken,
    TokenEndpoint,
    TokenFile,
    TokenSource,
    token_source,
)
from .ws import probe_ws

__all__ = [
    "TOKEN_SOURCES",
    "Category",
    "MintedToken",
    "ProbeResult",
    "StaticToken",
    "Step",
    "StepResult",
    "TokenEndpoint",
    "TokenFile",
    "TokenSource",
    "Verdict",
    "VerdictKind",
    "display_url",
    "parse_expect",
    "parse_send",
    "probe",
    "probe_http",
    "probe_ws",
    "token_source",
]

_WS_ONLY = ("subprotocol_token", "steps", "connect_only", "open_timeout", "subprotocols", "settle")


async def probe(url: str, **options: Any) -> ProbeResult:
    """``probe_ws`` for ``ws://``/``wss://`` URLs, ``probe_http`` for ``http://``/``https://``.

    Raises:
        UsageError: WebSocket-only options (steps, subprotocols, ...) given for an HTTP URL.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in ("http", "https"):
        misplaced = sorted(k for k, v in options.items() if k in _WS_ONLY and v)
        if misplaced:
            raise UsageError(
                f"{', '.join(misplaced)} only apply to ws:// and wss:// URLs, not {scheme}://",
                hint="probe the WebSocket URL, e.g. ws://HOST:PORT/ws",
            )
        return await probe_http(url, **{k: v for k, v in options.items() if k not in _WS_ONLY})
    return await probe_ws(url, **options)
