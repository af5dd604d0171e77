"""Reading a revision's WebSocket counters from its ``/metrics`` during a canary step.

The service library exports ``safeship_websocket_handshakes_total{outcome}`` and
``safeship_websocket_closes_total{code}``; :func:`parse_counts` turns them into
:class:`~safeship.core.canary.Counts`, which ``core.canary.compare`` judges. A revision that
does not expose them (no ``/metrics``, another format, unreachable) yields ``None``: the step
is then judged on the probes alone.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ..core.canary import BAD_CLOSE_CODES, Counts
from ..errors import SafeshipError

__all__ = ["MetricsReader", "RevisionMetrics", "parse_counts"]

_HANDSHAKES = "safeship_websocket_handshakes"
_CLOSES = "safeship_websocket_closes"


class RevisionMetrics(Protocol):
    async def counts(self, base_url: str) -> Counts | None:
        """The revision's counters, or ``None`` when it exposes none we can read."""
        ...


def parse_counts(text: str) -> Counts | None:
    """Counts from a Prometheus text exposition; ``None`` without safeship's counters."""
    from prometheus_client.parser import text_string_to_metric_families

    handshakes = accepted = bad = 0
    found = False
    try:
        for family in text_string_to_metric_families(text):
            name = family.name.removesuffix("_total")  # untyped: the sample's own name
            if name not in (_HANDSHAKES, _CLOSES):
                continue
            found = True
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue  # the _created gauges
                value = int(sample.value)
                if name == _HANDSHAKES:
                    handshakes += value
                    accepted += value if sample.labels.get("outcome") == "accepted" else 0
                elif sample.labels.get("code", "").isdigit():
                    bad += value if int(sample.labels["code"]) in BAD_CLOSE_CODES else 0
    except ValueError:
        return None
    if not found:
        return None
    return Counts(handshakes, handshakes - accepted, accepted, bad)


class MetricsReader:
    """``GET <base>/metrics`` with a deadline.

    Args:
        headers: extra request headers per base URL (a platform's own authorization, e.g. a
            target's ``probe_headers``: Cloud Run's ID token in ``X-Serverless-Authorization``).
    """

    def __init__(
        self,
        *,
        path: str = "/metrics",
        timeout: float = 3.0,
        headers: Callable[[str], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        self.path, self.timeout, self.headers = path, timeout, headers
        self._tls: ssl.SSLContext | None = None

    async def counts(self, base_url: str) -> Counts | None:
        import httpx

        url = f"{base_url.rstrip('/')}{self.path}"
        try:
            extra = dict(await self.headers(base_url)) if self.headers is not None else {}
        except SafeshipError:
            return None  # no platform credential: the probes alone judge
        if self._tls is None:
            # Built once: loading the CA bundle costs tens of CPU-ms, on the event loop that
            # also runs the canary's probes (it would delay them, and so the detection).
            self._tls = ssl.create_default_context()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, verify=self._tls) as client:
                reply = await client.get(url, headers=extra)
        except httpx.HTTPError:
            return None
        if reply.status_code != 200:
            return None
        return parse_counts(reply.text)
