"""The WebSocket probe: every phase timed on its own, every failure returned as a verdict.

DNS is resolved with ``loop.getaddrinfo``, the TCP connection opened here with a deadline,
then the connected socket is handed to ``websockets`` (``sock=``), which wraps TLS for
``wss://`` and performs the upgrade. What was seen goes into an ``Observation``; the verdict is
decided by ``safeship.core.verdict.classify``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State
from websockets.uri import parse_uri

from ..core.verdict import Observation, classify
from ..errors import ProbeError
from ._net import CLOSE_WAIT, connect_tcp, ms_since, resolve, ws_connector
from .result import ProbeResult, StepResult, display_url
from .steps import Decision, Step, StepMatcher
from .tokens import TokenSource, subprotocols_for

__all__ = ["probe_ws"]

_BODY_EXCERPT = 500


class _WsProbe:
    def __init__(
        self,
        url: str,
        *,
        token_source: TokenSource | None,
        subprotocol_token: bool,
        steps: Sequence[Step],
        connect_only: bool,
        timeout: float,
        open_timeout: float | None,
        headers: Mapping[str, str] | None,
        subprotocols: Sequence[str],
        settle: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.url = url
        self.token_source = token_source
        self.subprotocol_token = subprotocol_token
        self.steps = list(steps)
        self.connect_only = connect_only
        self.timeout = timeout
        self.open_timeout = timeout if open_timeout is None else min(open_timeout, timeout)
        self.headers = dict(headers or {})
        self.subprotocols = list(subprotocols)
        self.settle = settle
        self.ssl_context = ssl_context
        self.seen: dict[str, Any] = {"transport": "ws"}
        self.timings: dict[str, float] = {}
        self.step_results: list[StepResult] = []
        self.messages_seen = 0
        self.negotiated: str | None = None
        self.upgraded_at: float | None = None
        self.secrets: list[str] = []

    async def run(self) -> ProbeResult:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.timeout
        try:
            await self._run(loop)
        finally:
            self.timings["total"] = ms_since(start)
        verdict = classify(Observation(**self.seen, timings=dict(self.timings)))
        return ProbeResult(
            url=display_url(self.url),
            verdict=verdict,
            timings=self.timings,
            steps=self.step_results,
            messages_seen=self.messages_seen,
            subprotocol=self.negotiated,
            token_source=self.token_source.describe() if self.token_source else None,
        )

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        seen = self.seen
        try:
            wsuri = parse_uri(self.url)
        except InvalidURI as exc:
            seen["setup_error"] = f"not a ws:// or wss:// URL: {display_url(self.url)} ({exc})"
            return
        seen["target"] = f"{wsuri.host}:{wsuri.port}"

        headers = dict(self.headers)
        subprotocols = list(self.subprotocols)
        if self.token_source is not None:
            token = await self._token()
            if token is None:
                return
            self.secrets = [token, *subprotocols_for(token)[1:]]
            if self.subprotocol_token:
                subprotocols += [p for p in subprotocols_for(token) if p not in subprotocols]
            else:
                headers["Authorization"] = f"Bearer {token}"
        seen["token_sent"] = self.token_source is not None
        seen["steps_total"] = 0 if self.connect_only else len(self.steps)
        # The opening budget starts after the token: a slow token endpoint is not the service.
        open_deadline = min(loop.time() + self.open_timeout, self.deadline)

        phase_args = (open_deadline, self.open_timeout, seen, self.timings)
        infos = await resolve(wsuri.host, wsuri.port, *phase_args)
        sock = await connect_tcp(infos, *phase_args) if infos is not None else None
        if sock is None:
            return
        ws = await self._upgrade(
            sock, wsuri.secure, wsuri.host, headers, subprotocols, open_deadline
        )
        if ws is None:
            return
        try:
            if self.steps and not self.connect_only:
                for index, step in enumerate(self.steps, start=1):
                    if not await self._step(loop, ws, index, step):
                        return
            elif not await self._settle(loop, ws):
                return
            await self._close(ws)
        finally:
            if ws.state is not State.CLOSED:
                ws.transport.abort()

    async def _token(self) -> str | None:
        assert self.token_source is not None
        try:
            async with asyncio.timeout_at(self.deadline):
                return await self.token_source.get()
        except ProbeError as exc:
            self.seen.update(setup_error=exc.message, setup_hint=exc.hint)
        except TimeoutError:
            self.seen["setup_error"] = (
                f"{self.token_source.describe()} gave no token within {self.timeout:g} s"
            )
        return None

    async def _upgrade(
        self,
        sock: socket.socket,
        secure: bool,
        host: str,
        headers: dict[str, str],
        subprotocols: list[str],
        deadline: float,
    ) -> ClientConnection | None:
        seen = self.seen
        kwargs: dict[str, Any] = {}
        if secure:
            kwargs = {
                "ssl": self.ssl_context or ssl.create_default_context(),
                "server_hostname": host,
            }
        try:
            connector = ws_connector(self.url, sock, headers, subprotocols, kwargs)
        except ValueError as exc:  # e.g. an application subprotocol that is not an HTTP token
            sock.close()
            seen["setup_error"] = f"invalid handshake options: {self._scrub(str(exc))}"
            return None
        started = time.perf_counter()

        def phase() -> str:
            return "tls" if secure and connector.transport_ready is None else "upgrade"

        def record_timings() -> None:
            ready = connector.transport_ready
            if secure:
                self.timings["tls"] = ms_since(started, ready)
            if ready is not None:
                self.timings["upgrade"] = ms_since(ready)

        try:
            async with asyncio.timeout_at(deadline):
                ws = await connector
        except TimeoutError:
            seen.update(timed_out_phase=phase(), timeout_seconds=self.open_timeout)
        except InvalidStatus as exc:
            self._refused(exc)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            seen["tls_error"] = str(exc)
        except ValueError as exc:
            # A redirect cannot be followed on a socket opened here: report the 3xx itself.
            if isinstance(exc.__cause__, InvalidStatus):
                self._refused(exc.__cause__)
            else:
                seen.update(protocol_error=self._scrub(str(exc)), protocol_phase=phase())
        except InvalidHandshake as exc:
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            seen.update(
                protocol_error=self._scrub(f"invalid upgrade response: {exc}{cause}"),
                protocol_phase="upgrade",
            )
        except OSError as exc:
            if phase() == "tls":
                seen["tls_error"] = f"connection lost during the TLS handshake: {exc}"
            else:
                seen.update(
                    protocol_error=f"connection lost during the upgrade: {exc}",
                    protocol_phase="upgrade",
                )
        else:
            record_timings()
            seen["upgraded"] = True
            self.upgraded_at = time.perf_counter()
            negotiated: str | None = ws.subprotocol
            if negotiated is not None and negotiated.startswith("jwt."):
                negotiated = "jwt.<redacted>"  # a server must never echo the token back
            self.negotiated = negotiated
            return ws
        record_timings()
        sock.close()  # idempotent; the transport (if any) was already aborted by websockets
        return None

    def _refused(self, exc: InvalidStatus) -> None:
        response = exc.response
        body = bytes(response.body[:_BODY_EXCERPT]).decode("utf-8", "replace")
        self.seen.update(
            http_status=response.status_code,
            http_headers={k.lower(): self._scrub(v) for k, v in response.headers.raw_items()},
            http_body=self._scrub(body),
        )

    async def _recv(self, ws: ClientConnection, deadline: float) -> Any:
        """The next data message (JSON-decoded when it parses, else ``None``)."""
        async with asyncio.timeout_at(deadline):
            raw = await ws.recv()
        self.messages_seen += 1
        if self.messages_seen == 1 and self.upgraded_at is not None:
            self.timings["first_message"] = ms_since(self.upgraded_at)
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _closed(self, exc: ConnectionClosed, phase: str) -> None:
        rcvd, sent = exc.rcvd, exc.sent
        if rcvd is not None:
            code, reason = rcvd.code, self._scrub(rcvd.reason)
        elif sent is not None:  # the probe failed the connection, e.g. 1009 for a huge message
            code, reason = sent.code, f"closed by the probe: {sent.reason or 'no reason'}"
        else:
            code, reason = 1006, "the connection dropped without a close frame"
        self.seen.update(close_code=code, close_reason=reason, close_phase=phase)

    async def _settle(self, loop: asyncio.AbstractEventLoop, ws: ClientConnection) -> bool:
        """Accepted is not enough: a guard may accept, then close at once with 4401 or 1013."""
        until = min(loop.time() + self.settle, self.deadline)
        try:
            while True:
                await self._recv(ws, until)
        except TimeoutError:
            return True
        except ConnectionClosed as exc:
            self._closed(exc, "settle")
            return False

    async def _step(
        self, loop: asyncio.AbstractEventLoop, ws: ClientConnection, index: int, step: Step
    ) -> bool:
        phase = f"step {index}"
        message, request_id = step.prepared(f"probe-{uuid.uuid4().hex[:12]}")
        matcher = StepMatcher(step, request_id)
        allowed = max(0.0, min(step.timeout, self.deadline - loop.time()))
        until = loop.time() + allowed
        started = time.perf_counter()

        def record(passed: bool, detail: str) -> bool:
            self.step_results.append(
                StepResult(index, request_id, passed, ms_since(started), detail, matcher.skipped)
            )
            return passed

        try:
            async with asyncio.timeout_at(until):
                await ws.send(json.dumps(message))
            while True:
                decision = matcher.feed(await self._recv(ws, until))
                if decision is Decision.PASS:
                    return record(True, "matched")
                if decision is Decision.FAIL:
                    failure = self._scrub(matcher.failure or "reply did not match")
                    self.seen.update(check_failure=failure, check_phase=phase)
                    return record(False, failure)
        except TimeoutError:
            closest = matcher.closest_report()
            if closest is not None:
                failure = self._scrub(closest)
                self.seen.update(check_failure=failure, check_phase=phase)
                return record(False, failure)
            self.seen.update(timed_out_phase=phase, timeout_seconds=round(allowed, 3))
            skipped = (
                f" ({matcher.skipped} unrelated message(s) skipped)" if matcher.skipped else ""
            )
            return record(False, f"no matching reply within {allowed:g} s{skipped}")
        except ConnectionClosed as exc:
            self._closed(exc, phase)
            return record(False, f"connection closed ({self.seen['close_code']})")
        finally:
            self.seen["steps_passed"] = sum(r.passed for r in self.step_results)

    async def _close(self, ws: ClientConnection) -> None:
        """Close with 1000; a close the server started first is recorded (1000/1001 is fine)."""
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await ws.close()
        except (TimeoutError, OSError):
            return  # the probe already succeeded; the finally clause aborts the transport
        protocol = ws.protocol
        if protocol.close_rcvd is not None and protocol.close_rcvd_then_sent:
            self.seen.update(
                close_code=protocol.close_rcvd.code,
                close_reason=self._scrub(protocol.close_rcvd.reason),
                close_phase="close",
            )

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        return text


async def probe_ws(
    url: str,
    *,
    token_source: TokenSource | None = None,
    subprotocol_token: bool = False,
    steps: Sequence[Step] = (),
    connect_only: bool = False,
    timeout: float = 5.0,  # noqa: ASYNC109 -- the probe API is a deadline in seconds
    open_timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] = (),
    settle: float = 0.1,
    ssl_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """Probe a WebSocket endpoint once. Never raises for a failed probe: see ``result.verdict``.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        token_source: asked for a token on every probe; sent as ``Authorization: Bearer``, or
            as the ``jwt.<base64url>`` subprotocol (with ``jwt-auth``) if ``subprotocol_token``.
        steps: request/reply checks run in order after the upgrade.
        connect_only: ignore ``steps``; succeed when the upgrade is accepted and the connection
            is not closed within ``settle`` seconds (also what happens without steps).
        timeout: deadline for the whole probe, in seconds; each step also has its own.
        open_timeout: deadline for DNS + TCP + TLS + upgrade (at most ``timeout``).
        headers: extra handshake headers (e.g. ``Origin``).
        subprotocols: the application's own subprotocols to offer.
        settle: how long an accepted connection must stay open without steps.
        ssl_context: TLS settings for ``wss://`` (default: system trust store).

    Returns:
        A ``ProbeResult`` whose verdict is classified by ``safeship.core.verdict.classify``.
    """
    probe = _WsProbe(
        url,
        token_source=token_source,
        subprotocol_token=subprotocol_token,
        steps=steps,
        connect_only=connect_only,
        timeout=timeout,
        open_timeout=open_timeout,
        headers=headers,
        subprotocols=subprotocols,
        settle=settle,
        ssl_context=ssl_context,
    )
    return await probe.run()
