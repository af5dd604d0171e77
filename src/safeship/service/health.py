"""Health endpoints that tell the truth.

- ``GET /health/live``: 200 while the process runs.
- ``GET /health/ready``: 200 only when startup is complete, required dependencies pass and the
  service is not draining; otherwise 503 with ``{status, phase, error?, since}``.
- ``GET /health/startup``: every phase with its state and duration (200 once started, else 503),
  which suits Kubernetes and Cloud Run startup probes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core.handshake import Readiness, readiness_with_checks
from ..secrets import redact
from .metrics import Metrics
from .startup import Startup

__all__ = ["DependencyCheck", "Health"]


@dataclass
class DependencyCheck:
    """A dependency readiness depends on. ``fn`` raises or returns ``False`` when unhealthy."""

    name: str
    fn: Callable[[], Awaitable[Any]]
    timeout: float = 2.0
    cache_seconds: float = 2.0
    required: bool = True
    _result: tuple[float, bool, str | None, float] | None = field(default=None, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def last_ok(self) -> bool:
        """The cached outcome (``True`` before the first run): read on the handshake path, which
        must never wait on I/O."""
        return self._result is None or self._result[1]

    async def result(self, now: float) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        # One check in flight at a time: a burst of probes shares it instead of piling up.
        async with self._lock:
            if self._result is None or now - self._result[0] >= self.cache_seconds:
                self._result = await self._run(now)
        checked_at, ok, error, latency = self._result
        return {
            "ok": ok,
            "required": self.required,
            "latency_ms": round(latency * 1000, 1),
            "error": error,
            "checked_at": checked_at,
        }

    async def _run(self, now: float) -> tuple[float, bool, str | None, float]:
        started = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(self.fn(), timeout=self.timeout)
        except TimeoutError:
            return now, False, f"no answer within {self.timeout:g}s", time.perf_counter() - started
        except Exception as exc:
            return now, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
        ok = outcome is not False
        return now, ok, None if ok else "check returned False", time.perf_counter() - started


class Health:
    def __init__(
        self,
        startup: Startup,
        checks: Sequence[DependencyCheck] = (),
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.startup = startup
        self.checks = list(checks)
        self.metrics = metrics
        self.clock = clock

    def readiness(self) -> Readiness:
        """Readiness without I/O: startup state, then the cached outcome of required checks."""
        return readiness_with_checks(
            self.startup.readiness, all(c.last_ok for c in self.checks if c.required)
        )

    def routes(self, prefix: str = "/health") -> list[Route]:
        return [
            Route(f"{prefix}/live", self.live, methods=["GET", "HEAD"]),
            Route(f"{prefix}/ready", self.ready, methods=["GET", "HEAD"]),
            Route(f"{prefix}/startup", self.startup_status, methods=["GET", "HEAD"]),
        ]

    async def live(self, request: Request) -> JSONResponse:
        return _json({"status": "alive"}, headers=_NO_STORE)

    async def ready(self, request: Request) -> JSONResponse:
        snapshot = self.startup.snapshot()
        body: dict[str, Any] = {
            "status": snapshot["status"],
            "phase": snapshot["phase"],
            "since": snapshot["since"],
        }
        if snapshot["error"]:
            body["error"] = snapshot["error"]
            body["hint"] = snapshot["hint"]
        if snapshot["degraded"]:
            body["degraded"] = snapshot["degraded"]
        if self.startup.readiness is not Readiness.READY:
            return _json(body, status_code=503, headers=_RETRY)
        if self.checks:
            now = self.clock()
            results = await asyncio.gather(*(c.result(now) for c in self.checks))
            body["checks"] = {c.name: r for c, r in zip(self.checks, results, strict=True)}
            failing = [c.name for c, r in zip(self.checks, results, strict=True) if not r["ok"]]
            if self.metrics is not None:
                for name in failing:
                    self.metrics.dependency_failures.labels(name).inc()
            required_failing = [c.name for c in self.checks if c.required and c.name in failing]
            if required_failing:
                body["status"] = "unhealthy"
                body["error"] = "dependency check failed: " + ", ".join(required_failing)
                return _json(body, status_code=503, headers=_RETRY)
        return _json(body, headers=_NO_STORE)

    async def startup_status(self, request: Request) -> JSONResponse:
        snapshot = self.startup.snapshot()
        started = snapshot["status"] in ("ready", "draining")
        return _json(snapshot, status_code=200 if started else 503, headers=_NO_STORE)


def _redacted(value: Any) -> Any:
    """``value`` with every string in it redacted, before it is serialized: JSON escaping
    would otherwise hide a registered secret holding a quote or a backslash from ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _json(body: dict[str, Any], **kwargs: Any) -> JSONResponse:
    """Every health answer goes out through here: what a phase or a dependency check raised
    (a DSN with its password, a secret in a message) is redacted as in the logs."""
    return JSONResponse(_redacted(body), **kwargs)


_NO_STORE = {"cache-control": "no-store"}
_RETRY = {"cache-control": "no-store", "retry-after": "1"}
