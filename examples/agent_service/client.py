"""``AgentClient``: a client of the ``/ws`` protocol that survives restarts and deploys.

It connects with a fresh token from ``token_factory`` on every attempt, starts runs and follows
their events. When the connection ends with 1012 (drain), 1001 (going away), 1006 (dropped),
1013 (not ready) or 4401 (token expired), or cannot be opened, it reconnects with a short,
bounded backoff and sends ``resume`` for every unfinished run with the last seq it has (and
re-sends any ``start_agent`` still unanswered: starts are idempotent by ``request_id``).

It also keeps score, for tests, benchmarks and the demo's background load: connections by
outcome, events received, gaps (``lost``) and repeats (``duplicates``) per run, and failures
by kind.

    async with AgentClient("ws://127.0.0.1:8000/ws", lambda: token) as client:
        result = await client.run("wordcount", "hello world")
        print(result.status, result.output, client.stats.as_dict())
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from safeship.probe.tokens import subprotocols_for

from .client_stats import ClientStats, RunResult, ServerError, failure_category

__all__ = ["RECONNECT_CODES", "AgentClient", "ClientStats", "RunResult", "ServerError"]

logger = logging.getLogger("agent_service.client")

RECONNECT_CODES = frozenset({1001, 1006, 1012, 1013, 4401})
TERMINAL = frozenset({"agent_completed", "agent_error"})
TokenFactory = Callable[[], "str | Awaitable[str]"]


class _Run:
    def __init__(self, run_id: str, agent: str | None, loop: asyncio.AbstractEventLoop) -> None:
        self.result = RunResult(run_id, agent, "running")
        self.done: asyncio.Future[RunResult] = loop.create_future()


class AgentClient:
    """Args:
    url: the ``ws://.../ws`` URL, or a callable returning it (asked on every connect, e.g. to
        reach another instance).
    token_factory: returns a token (or an awaitable of one); called on every connect.
    subprotocol_token: send the token as the ``jwt.<base64url>`` subprotocol, as browsers
        must, instead of an ``Authorization`` header.
    max_attempts: connection attempts per outage before giving up.
    keep_events: keep every event in ``RunResult.events`` (turn off for load).
    stats: share one :class:`ClientStats` between many clients.

    Every request method takes ``within``: the seconds it may take, reconnects included.
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        token_factory: TokenFactory,
        *,
        subprotocol_token: bool = False,
        max_attempts: int = 10,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        open_timeout: float = 5.0,
        keep_events: bool = True,
        stats: ClientStats | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        origin: str | None = None,
    ) -> None:
        self.url = url
        self.token_factory = token_factory
        self.subprotocol_token = subprotocol_token
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.keep_events = keep_events
        self.stats = stats if stats is not None else ClientStats()
        self.on_event = on_event
        self.origin = origin
        self.runs: dict[str, _Run] = {}
        self.hello: dict[str, Any] | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._failed: BaseException | None = None
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._starts: dict[str, tuple[str, Any]] = {}  # request_id -> (agent, input), unanswered

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> AgentClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def instance(self) -> str | None:
        return self.hello.get("instance") if self.hello else None

    async def connect(self) -> dict[str, Any]:
        """Connect (retrying like a reconnect). Returns ``connection_established``.

        Raises:
            ConnectionError: every attempt failed; ``stats.connects_failed`` says why.
        """
        if not await self._connect_with_retries():
            raise ConnectionError(f"could not connect: {dict(self.stats.connects_failed)}")
        self._reader = asyncio.create_task(self._read_loop(), name="agent-client-reader")
        assert self.hello is not None
        return self.hello

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2.0)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2.0)
        self._fail_all(ConnectionError("client closed"))

    def drop(self) -> None:
        """Cut the TCP connection without a close frame (as a network failure would), for
        tests: the client sees 1006, reconnects and resumes."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    # -- requests ----------------------------------------------------------------------------

    async def start(self, agent: str, input: Any = None, *, within: float = 10.0) -> str:
        """Start a run; returns its id once ``agent_started`` arrives.

        Raises:
            ServerError: refused (unknown agent, too many runs, ...).
        """
        request_id = self._request_id()
        future = self._expect(request_id)
        self._starts[request_id] = (agent, input)
        await self._send(
            {"type": "start_agent", "agent": agent, "input": input, "request_id": request_id},
            within,
        )
        try:
            reply = await asyncio.wait_for(future, within)
        finally:
            self._starts.pop(request_id, None)
        self.stats.runs_started += 1
        return str(reply["run_id"])

    async def wait(self, run_id: str, *, within: float = 30.0) -> RunResult:
        """The result of a run once its last event arrived."""
        run = self.runs[run_id]
        try:
            return await asyncio.wait_for(asyncio.shield(run.done), within)
        except TimeoutError:
            self.stats.failures["run_timeout"] += 1
            raise

    async def run(self, agent: str, input: Any = None, *, within: float = 30.0) -> RunResult:
        end = time.monotonic() + within
        run_id = await self.start(agent, input, within=within)
        return await self.wait(run_id, within=max(0.0, end - time.monotonic()))

    async def resume(
        self, run_id: str, last_seq: int | None = None, *, within: float = 10.0
    ) -> dict[str, Any]:
        """Follow a run (e.g. one started on another connection) from ``last_seq`` (default:
        what this client has, else 0). Returns the ``resumed`` reply."""
        run = self._track(run_id, None)
        if last_seq is not None and last_seq > run.result.last_seq:
            run.result.last_seq = last_seq  # received elsewhere (another connection)
        since = run.result.last_seq
        return await self._request({"type": "resume", "run_id": run_id, "last_seq": since}, within)

    async def send_message(self, run_id: str, text: str, *, within: float = 10.0) -> None:
        await self._request({"type": "user_message", "run_id": run_id, "text": text}, within)

    async def ping(self, *, within: float = 5.0) -> float:
        """Round trip of a protocol ``ping``, in seconds."""
        started = time.perf_counter()
        await self._request({"type": "ping"}, within)
        return time.perf_counter() - started

    async def send_raw(self, data: str | bytes, *, within: float = 5.0) -> None:
        """Send a frame as is (for tests of the server's refusals)."""
        await self._wait_connected(within)
        assert self._ws is not None
        await self._ws.send(data)

    # -- internals: connecting ---------------------------------------------------------------

    def _request_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _expect(self, request_id: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        future.add_done_callback(lambda _: self._requests.pop(request_id, None))
        return future

    async def _request(self, message: dict[str, Any], within: float) -> dict[str, Any]:
        request_id = self._request_id()
        future = self._expect(request_id)
        await self._send({**message, "request_id": request_id}, within)
        return await asyncio.wait_for(future, within)

    async def _wait_connected(self, within: float) -> None:
        if self._failed is not None:
            raise ConnectionError(f"the client gave up: {self._failed}")
        try:
            await asyncio.wait_for(self._connected.wait(), within)
        except TimeoutError:
            raise ConnectionError(f"not connected within {within:g}s") from None

    async def _send(self, message: dict[str, Any], within: float) -> None:
        await self._wait_connected(within)
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed:
            # Lost in flight: unanswered starts are re-sent after the reconnect.
            if message.get("type") != "start_agent":
                raise ConnectionError("the connection closed while sending") from None

    async def _open(self) -> dict[str, Any]:
        token = self.token_factory()
        if inspect.isawaitable(token):
            token = await token
        url = self.url if isinstance(self.url, str) else self.url()
        options: dict[str, Any] = {
            "open_timeout": self.open_timeout,
            "ping_interval": 20,
            "compression": None,
        }
        if self.origin is not None:
            options["origin"] = self.origin
        if self.subprotocol_token:
            options["subprotocols"] = subprotocols_for(str(token))
        else:
            options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        ws = await connect(url, **options)
        try:
            hello = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
            raise
        if not isinstance(hello, dict) or hello.get("type") != "connection_established":
            await ws.close()
            raise InvalidHandshake(f"expected connection_established, got {str(hello)[:80]}")
        self._ws = ws
        return hello

    async def _connect_with_retries(self) -> bool:
        for attempt in range(self.max_attempts):
            if self._closing:
                return False
            try:
                self.hello = await self._open()
            except Exception as exc:
                category = failure_category(exc)
                self.stats.connects_failed[category] += 1
                self.stats.failures[f"connect:{category}"] += 1
                delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                await asyncio.sleep(delay)
                continue
            self.stats.connects_ok += 1
            self._connected.set()
            return True
        return False

    async def _read_loop(self) -> None:
        try:
            await self._read_and_reconnect()
        except Exception as exc:  # a bug here must fail the waiters, not leave them hanging
            logger.exception("the agent client's reader failed")
            self.stats.failures["client_error"] += 1
            self._give_up(exc)

    async def _read_and_reconnect(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._on_message(raw)
            except (ConnectionClosed, OSError):
                pass
            self._connected.clear()
            close = ws.protocol.close_rcvd
            code = close.code if close is not None else 1006
            self.stats.closes[code] += 1
            if self._closing:
                return
            if code not in RECONNECT_CODES:
                self.stats.failures[f"closed:{code}"] += 1
                self._give_up(ConnectionError(f"closed with code {code}"))
                return
            self.stats.reconnects += 1
            if not await self._connect_with_retries():
                self.stats.failures["gave_up"] += 1
                self._give_up(ConnectionError("reconnecting failed"))
                return
            await self._after_reconnect()

    async def _after_reconnect(self) -> None:
        assert self._ws is not None
        for run_id, run in list(self.runs.items()):
            if not run.done.done():
                self.stats.resumes += 1
                message = {"type": "resume", "run_id": run_id, "last_seq": run.result.last_seq}
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(json.dumps(message))
        for request_id, (agent, input) in list(self._starts.items()):
            message = {
                "type": "start_agent",
                "agent": agent,
                "input": input,
                "request_id": request_id,
            }
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps(message))

    def _give_up(self, error: BaseException) -> None:
        self._failed = error
        self._fail_all(error)

    def _fail_all(self, error: BaseException) -> None:
        for future in list(self._requests.values()):
            if not future.done():
                future.set_exception(error)
        for run in self.runs.values():
            if not run.done.done():
                run.done.set_exception(error)
                run.done.exception()  # retrieved: nobody may be waiting for it

    # -- internals: messages -----------------------------------------------------------------

    def _on_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            self.stats.failures["protocol:bad_json"] += 1
            return
        if not isinstance(message, dict):
            self.stats.failures["protocol:not_an_object"] += 1
            return
        kind = message.get("type")
        if "run_id" in message and "seq" in message:
            self._on_event(message)
        elif kind == "error":
            code = str(message.get("code"))
            future = self._requests.get(str(message.get("request_id")))
            if future is not None and not future.done():
                future.set_exception(ServerError(code, str(message.get("detail"))))
            else:
                self.stats.failures[f"error:{code}"] += 1
        elif kind in ("pong", "resumed", "message_accepted"):
            future = self._requests.get(str(message.get("request_id")))
            if future is not None and not future.done():
                future.set_result(message)

    def _track(self, run_id: str, agent: str | None) -> _Run:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = _Run(run_id, agent, asyncio.get_running_loop())
        return run

    def _on_event(self, event: dict[str, Any]) -> None:
        run_id, seq, kind = str(event["run_id"]), int(event["seq"]), event.get("type")
        payload = event.get("payload") or {}
        run = self._track(run_id, payload.get("agent") if kind == "agent_started" else None)
        result = run.result
        if seq <= result.last_seq:
            result.duplicates += 1
            self.stats.duplicates += 1
            return
        if seq > result.last_seq + 1:
            gap = seq - result.last_seq - 1
            result.lost += gap
            self.stats.lost += gap
        result.last_seq = seq
        self.stats.events += 1
        if self.keep_events:
            result.events.append(event)
        if kind == "agent_started":
            result.agent = result.agent or payload.get("agent")
            future = self._requests.get(str(event.get("request_id")))
            if future is not None and not future.done():
                future.set_result(event)
        if kind in TERMINAL and not run.done.done():
            if kind == "agent_completed":
                result.status, result.output = "completed", payload.get("output")
                self.stats.runs_completed += 1
            else:
                result.status = "interrupted" if payload.get("code") == "interrupted" else "failed"
                result.error = payload
                self.stats.runs_failed += 1
            run.done.set_result(result)
        if self.on_event is not None:
            self.on_event(event)
