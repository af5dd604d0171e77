"""One monitor probe of one endpoint: ``GET /health/ready``, then an authenticated WebSocket
handshake with a freshly minted token and the configured round trip, with the existing probe
engine (``safeship.probe``). Both run concurrently, each under the monitor's deadline.

The sample's category is the WebSocket's verdict when it failed (that is what users see),
else the health check's; its handshake time is what the latency class judges.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Manifest
from ..deploy.probes import probe_steps, probe_token_source, ws_url
from ..probe import ProbeResult, Step, TokenSource, probe_http, probe_ws
from .endpoints import Endpoint

__all__ = ["EndpointProber", "Sample"]

_HANDSHAKE_PHASES = ("dns", "tcp", "tls", "upgrade")


@dataclass(frozen=True)
class Sample:
    """One probe of one endpoint. ``at`` is wall-clock seconds; holds no token."""

    endpoint: Endpoint
    at: float
    category: str
    kind: str
    detail: str
    code: int | None = None
    phase: str | None = None
    hint: str | None = None
    handshake_ms: float | None = None
    total_ms: float | None = None
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``health`` and ``websocket``: each one's verdict (``Verdict.as_dict()``) and timings."""

    @property
    def ok(self) -> bool:
        return self.category == "ok"

    @property
    def failed_check(self) -> str | None:
        for name in ("websocket", "health"):
            check = self.checks.get(name)
            if check is not None and check["verdict"]["category"] != "ok":
                return name
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.endpoint.env,
            "revision": self.endpoint.revision,
            "url": self.endpoint.base_url,
            "at": round(self.at, 3),
            "ok": self.ok,
            "category": self.category,
            "kind": self.kind,
            "code": self.code,
            "phase": self.phase,
            "detail": self.detail,
            "hint": self.hint,
            "handshake_ms": _r(self.handshake_ms),
            "total_ms": _r(self.total_ms),
            "checks": {k: dict(v) for k, v in self.checks.items()},
        }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _handshake_ms(result: ProbeResult) -> float | None:
    """Connect plus upgrade, when the upgrade was answered (accepted or refused)."""
    if "upgrade" not in result.timings:
        return None
    return sum(result.timings.get(p, 0.0) for p in _HANDSHAKE_PHASES)


def _check(result: ProbeResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict.as_dict(),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
    }


class EndpointProber:
    def __init__(
        self,
        *,
        ws_path: str = "/ws",
        health_prefix: str = "/health",
        token_source: TokenSource | None = None,
        steps: Sequence[Step] = (),
        timeout: float = 2.0,
    ) -> None:
        self.ws_path = ws_path
        self.health_prefix = health_prefix
        self.token_source = token_source
        self.steps = tuple(steps)
        self.timeout = timeout
        # One TLS context for every probe: loading the trust store costs tens of ms of CPU,
        # which httpx would otherwise spend on each probe, for http:// URLs too.
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, env: str, environ: Mapping[str, str] | None = None
    ) -> EndpointProber:
        """The prober of ``env``: tokens minted like the deploy's probes (``[deploy]
        probe_secret``), the deploy's round trip, ``[monitor] timeout``.

        Raises:
            SecretError: no secret to mint tokens from for ``env``.
            ConfigError: ``probe_expect`` without ``probe_send``, or a send that is not JSON.
        """
        steps = [
            Step(s.send, s.expect, timeout=manifest.monitor.timeout) for s in probe_steps(manifest)
        ]
        return cls(
            ws_path=manifest.service.ws_path,
            health_prefix=manifest.service.health_prefix,
            token_source=probe_token_source(manifest, env, environ),
            steps=steps,
            timeout=manifest.monitor.timeout,
        )

    async def probe(self, endpoint: Endpoint) -> Sample:
        """Probe ``endpoint`` once; never raises for a failed service."""
        at = time.time()
        base = endpoint.base_url
        health_url = f"{base}{self.health_prefix.rstrip('/')}/ready"
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        health, ws = await asyncio.gather(
            probe_http(health_url, timeout=self.timeout, ssl_context=self._ssl),
            probe_ws(
                ws_url(base, self.ws_path),
                token_source=self.token_source,
                steps=self.steps,
                timeout=self.timeout * (1 + len(self.steps)),
                open_timeout=self.timeout,
                ssl_context=self._ssl,
            ),
        )
        decisive = ws if not ws.ok or health.ok else health
        verdict = decisive.verdict
        return Sample(
            endpoint=endpoint,
            at=at,
            category=verdict.category.value,
            kind=verdict.kind.value,
            detail=verdict.detail,
            code=verdict.code,
            phase=verdict.phase,
            hint=verdict.hint,
            handshake_ms=_handshake_ms(ws),
            total_ms=max(health.timings.get("total", 0.0), ws.timings.get("total", 0.0)),
            checks={"health": _check(health), "websocket": _check(ws)},
        )
