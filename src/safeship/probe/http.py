"""The HTTP probe (``/health/ready`` and friends), classified like the WebSocket probe.

DNS is resolved and timed here first, then httpx sends one GET; its trace hooks time TCP,
TLS and the response apart and say which phase a timeout hit.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..core.verdict import Observation, classify
from ..errors import ProbeError
from ._net import ms_since, resolve
from .result import ProbeResult, display_url
from .tokens import TokenSource

__all__ = ["probe_http"]

_BODY_EXCERPT = 500

# httpcore trace events -> our phase names.
_TRACE_PHASES = {
    "connection.connect_tcp": "tcp",
    "connection.start_tls": "tls",
    "http11.send_request_headers": "response",
    "http2.send_request_headers": "response",
}
_RESPONSE_DONE = (
    "http11.receive_response_headers.complete",
    "http2.receive_response_headers.complete",
)


class _Trace:
    """Remembers when each phase started and ended, and which one is in progress."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        self.current: str = "tcp"

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        name, _, state = event.rpartition(".")
        phase = _TRACE_PHASES.get(name)
        if phase is not None and state == "started" and phase not in self.started:
            self.started[phase] = now
            self.current = phase
        elif phase in ("tcp", "tls") and state == "complete":
            self.timings[phase] = ms_since(self.started[phase], now)
            self.current = "response"
        if event in _RESPONSE_DONE and "response" in self.started:
            self.timings["response"] = ms_since(self.started["response"], now)


def _connect_failure(exc: BaseException, seen: dict[str, Any], phase: str) -> None:
    """Walk the cause chain of an httpx connect error down to the OS or TLS error."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            seen["tls_error"] = str(cause)
            return
        if isinstance(cause, OSError) and cause.errno:
            if phase == "tls":
                seen["tls_error"] = f"connection lost during the TLS handshake: {cause}"
            else:
                seen["connect_error"] = os.strerror(cause.errno)
                seen["connect_errno"] = errno.errorcode.get(cause.errno, str(cause.errno))
            return
        cause = cause.__cause__ or cause.__context__
    if phase == "tls":
        seen["tls_error"] = str(exc) or type(exc).__name__
    else:
        seen["connect_error"] = str(exc) or type(exc).__name__


class _HttpProbe:
    def __init__(
        self,
        url: str,
        timeout: float,
        token_source: TokenSource | None,
        headers: Mapping[str, str] | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.token_source = token_source
        self.headers = dict(headers or {})
        self.ssl_context = ssl_context
        self.seen: dict[str, Any] = {"transport": "http"}
        self.timings: dict[str, float] = {}
        self.trace = _Trace()
        self.secrets: list[str] = []

    async def run(self) -> ProbeResult:
        start = time.perf_counter()
        self.deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            await self._run()
        finally:
            self.timings.update(self.trace.timings)
            self.timings["total"] = ms_since(start)
        return ProbeResult(
            url=display_url(self.url),
            verdict=classify(Observation(**self.seen, timings=dict(self.timings))),
            timings=self.timings,
            token_source=self.token_source.describe() if self.token_source else None,
        )

    async def _run(self) -> None:
        seen = self.seen
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            seen["setup_error"] = f"invalid URL {display_url(self.url)}: {exc}"
            return
        if parsed.scheme not in ("http", "https") or not parsed.host:
            seen["setup_error"] = f"not an http:// or https:// URL: {display_url(self.url)}"
            return
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        seen["target"] = f"{parsed.host}:{port}"
        if self.token_source is not None and not await self._token():
            return
        seen["token_sent"] = self.token_source is not None
        if (
            await resolve(parsed.host, port, self.deadline, self.timeout, seen, self.timings)
            is not None
        ):
            await self._request()

    async def _token(self) -> bool:
        assert self.token_source is not None
        try:
            async with asyncio.timeout_at(self.deadline):
                token = await self.token_source.get()
        except ProbeError as exc:
            self.seen.update(setup_error=exc.message, setup_hint=exc.hint)
            return False
        except TimeoutError:
            self.seen["setup_error"] = (
                f"{self.token_source.describe()} gave no token within {self.timeout:g} s"
            )
            return False
        self.headers["Authorization"] = f"Bearer {token}"
        self.secrets.append(token)
        return True

    async def _request(self) -> None:
        seen = self.seen
        verify: ssl.SSLContext | bool = self.ssl_context if self.ssl_context is not None else True
        body = b""
        try:
            async with (
                asyncio.timeout_at(self.deadline),
                httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout),
                    trust_env=False,
                    follow_redirects=False,
                    verify=verify,
                ) as client,
                client.stream(
                    "GET", self.url, headers=self.headers, extensions={"trace": self.trace}
                ) as response,
            ):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= _BODY_EXCERPT:
                        break
        except (TimeoutError, httpx.TimeoutException):
            seen.update(timed_out_phase=self.trace.current, timeout_seconds=self.timeout)
            return
        except httpx.ConnectError as exc:
            _connect_failure(exc, seen, self.trace.current)
            return
        except httpx.HTTPError as exc:
            text = self._scrub(str(exc) or type(exc).__name__)
            seen.update(protocol_error=f"invalid HTTP response: {text}", protocol_phase="response")
            return
        seen.update(
            http_status=response.status_code,
            http_headers={k.lower(): v for k, v in response.headers.items()},
            http_body=self._scrub(body[:_BODY_EXCERPT].decode("utf-8", "replace")),
        )

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


async def probe_http(
    url: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 -- the probe API is a deadline in seconds
    token_source: TokenSource | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """GET ``url`` once; 2xx is ``ok``, anything else a classified failure. Never raises for a
    failed probe.

    Args:
        url: ``http://`` or ``https://`` URL, e.g. ``http://127.0.0.1:8700/health/ready``.
        timeout: deadline for the whole probe, in seconds.
        token_source: if given, its token is sent as ``Authorization: Bearer``.
        headers: extra request headers.
        ssl_context: TLS settings for ``https://`` (default: system trust store).

    Returns:
        A ``ProbeResult`` (no steps; timings ``dns``, ``tcp``, ``tls``, ``response``, ``total``).
    """
    return await _HttpProbe(url, timeout, token_source, headers, ssl_context).run()
