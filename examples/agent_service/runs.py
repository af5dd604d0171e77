"""Agent runs: start them, number and store their events, fan the events out, stop cleanly.

Each event takes one path, in this order: the next seq of its run, the database, the local hub
(every connection of the user on this instance), then the broker (other instances). Storing
first is what makes resume exact: whatever a client has seen is in the database.

Runs belong to the instance, not to a connection: a client that drops does not stop its run.
On shutdown (after the WebSocket drain) the runs still going get ``run_grace`` seconds to
finish; any left are cancelled and end with ``agent_error`` (code ``interrupted``), so a client
resuming elsewhere sees every event and a definite end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .agents.base import Agent, AgentInputError
from .broker import Broker
from .hub import Hub
from .metrics import ServiceMetrics
from .protocol import ErrorCode, Event, ProtocolError, StartAgent, UserMessage
from .registry import AgentRegistry
from .settings import Settings
from .store import EventStore, EventWriter

__all__ = ["RunManager"]

logger = logging.getLogger("agent_service.runs")


class _Run:
    __slots__ = (
        "agent",
        "calls",
        "inbox",
        "inflight",
        "input",
        "lock",
        "request_id",
        "run_id",
        "seq",
        "task",
        "user",
    )

    def __init__(self, run_id: str, user: str, agent: str, input: Any, request_id: str) -> None:
        self.run_id = run_id
        self.user = user
        self.agent = agent
        self.input = input
        self.request_id = request_id
        self.seq = 0
        self.calls = itertools.count(1)
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        # Agent code and user messages may emit concurrently; seq order must equal store order.
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.inflight: asyncio.Future[None] | None = None


class _Context:
    """The :class:`~agent_service.agents.base.RunContext` given to an agent."""

    def __init__(self, manager: RunManager, run: _Run) -> None:
        self._manager = manager
        self._run = run
        self.run_id = run.run_id
        self.user = run.user
        self.input = run.input
        self.settings = manager.settings

    async def think(self, text: str, **details: Any) -> None:
        await self._manager.emit(self._run, "agent_thinking", {"text": text, **details})

    async def tool(
        self, name: str, args: dict[str, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        call_id = f"call_{next(self._run.calls)}"
        await self._manager.emit(
            self._run, "tool_executing", {"tool": name, "call_id": call_id, "args": args}
        )
        result = await call()
        await self._manager.emit(
            self._run, "tool_completed", {"tool": name, "call_id": call_id, "result": result}
        )
        return result

    async def next_message(self, wait: float) -> str | None:
        try:
            return await asyncio.wait_for(self._run.inbox.get(), wait)
        except TimeoutError:
            return None


class RunManager:
    def __init__(
        self,
        *,
        store: EventStore,
        registry: AgentRegistry,
        hub: Hub,
        broker: Broker,
        settings: Settings,
        instance: str,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.hub = hub
        self.broker = broker
        self.settings = settings
        self.instance = instance
        self.metrics = metrics
        self.clock = clock
        self.active: dict[str, _Run] = {}
        self.writer = EventWriter(store)
        self._commands: set[asyncio.Task[None]] = set()

    def active_for(self, user: str) -> int:
        return sum(1 for run in self.active.values() if run.user == user)

    async def start(self, user: str, msg: StartAgent) -> tuple[str, bool]:
        """Start a run (the caller has checked ``check_start``). Returns ``(run_id, created)``;
        ``created`` is False when this request id already started a run."""
        agent = self.registry.get(msg.agent)
        if agent is None:
            raise KeyError(msg.agent)
        run_id, created = await self.store.create_run(
            user=user,
            agent=msg.agent,
            request_id=msg.request_id,
            input=msg.input,
            instance=self.instance,
            now=self.clock(),
        )
        if created:
            run = _Run(run_id, user, msg.agent, msg.input, msg.request_id)
            self.active[run_id] = run
            run.task = asyncio.create_task(self._execute(run, agent), name=f"run-{run_id}")
            if self.metrics is not None:
                self.metrics.runs_started.labels(msg.agent).inc()
                self.metrics.runs_active.inc()
        return run_id, created

    async def emit(
        self,
        run: _Run,
        kind: str,
        payload: dict[str, Any],
        *,
        status: str | None = None,
        request_id: str | None = None,
    ) -> Event:
        """Number, store, then deliver one event of ``run``."""
        async with run.lock:
            await self._settle(run)
            run.seq += 1
            event = Event(
                run.run_id,
                run.seq,
                kind,
                self.clock(),
                payload,
                user=run.user,
                request_id=request_id,
            )
            # Shielded: a run cancelled mid-write (a drain) still stores and sends that event,
            # so the seq it took is never a hole; the next emit waits for it (_settle).
            run.inflight = asyncio.ensure_future(self._commit(event, status))
            try:
                await asyncio.shield(run.inflight)
            except asyncio.CancelledError:
                raise
            except BaseException:
                run.inflight = None
                run.seq -= 1  # not stored, so never sent: the seq stays free
                raise
            run.inflight = None
        return event

    @staticmethod
    async def _settle(run: _Run) -> None:
        inflight, run.inflight = run.inflight, None
        if inflight is not None:
            await asyncio.wait([inflight])
            if inflight.cancelled() or inflight.exception() is not None:
                run.seq -= 1

    async def _commit(self, event: Event, status: str | None) -> None:
        await self.writer.append(event, status=status)
        self.hub.dispatch(event)
        self.broker.publish(event)
        if self.metrics is not None:
            self.metrics.events.labels(event.type).inc()

    async def _execute(self, run: _Run, agent: Agent) -> None:
        status = "failed"
        try:
            await self.emit(
                run,
                "agent_started",
                {"agent": run.agent, "input": run.input},
                request_id=run.request_id,
            )
            output = await agent.run(_Context(self, run))
            await self.emit(run, "agent_completed", {"output": output}, status="completed")
            status = "completed"
        except asyncio.CancelledError:
            status = "interrupted"
            await self._end_with_error(
                run,
                "interrupted",
                "the instance stopped before the run finished: start it again",
                status=status,
                retryable=True,
            )
            raise
        except AgentInputError as exc:
            await self._end_with_error(run, "invalid_input", str(exc), status=status)
        except Exception as exc:
            error_id = os.urandom(4).hex()
            logger.error(
                "agent %s failed in run %s (error id %s)",
                run.agent,
                run.run_id,
                error_id,
                exc_info=exc,
            )
            await self._end_with_error(
                run,
                "agent_failed",
                f"{type(exc).__name__}: {exc}",
                status=status,
                error_id=error_id,
            )
        finally:
            self.active.pop(run.run_id, None)
            if self.metrics is not None:
                self.metrics.runs_active.dec()
                self.metrics.runs_finished.labels(run.agent, status).inc()

    async def _end_with_error(
        self, run: _Run, code: str, detail: str, *, status: str, **extra: Any
    ) -> None:
        try:
            await self.emit(
                run, "agent_error", {"code": code, "detail": detail, **extra}, status=status
            )
        except Exception as exc:
            # The database is gone: nothing can be stored, so nothing is sent either.
            logger.error("run %s could not record its end (%s): %s", run.run_id, code, exc)

    # -- user messages ---------------------------------------------------------------------

    async def post_message(self, user: str, msg: UserMessage) -> ProtocolError | None:
        run = self.active.get(msg.run_id)
        if run is not None and run.user == user:
            await self._deliver_message(run, msg.text)
            return None
        info = await self.store.get_run(msg.run_id)
        if info is None or info.user != user:
            return ProtocolError(
                ErrorCode.UNKNOWN_RUN, f"no run {msg.run_id!r} for this user", msg.request_id
            )
        if info.finished:
            return ProtocolError(
                ErrorCode.RUN_FINISHED,
                f"run {msg.run_id!r} has ended ({info.status}): start a new run",
                msg.request_id,
            )
        command = {"type": "user_message", "run_id": msg.run_id, "user": user, "text": msg.text}
        if self.broker.forward(command):
            return None
        return ProtocolError(
            ErrorCode.RUN_UNAVAILABLE,
            f"run {msg.run_id!r} is running on another instance that cannot be reached now: "
            "retry shortly",
            msg.request_id,
        )

    def on_command(self, command: dict[str, Any]) -> None:
        """A command from another instance; only the owner of the run acts on it."""
        if command.get("type") != "user_message":
            return
        run = self.active.get(str(command.get("run_id")))
        if (
            run is None
            or run.user != command.get("user")
            or not isinstance(command.get("text"), str)
        ):
            return
        task = asyncio.create_task(self._deliver_message(run, command["text"]))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _deliver_message(self, run: _Run, text: str) -> None:
        await self.emit(run, "user_message", {"text": text})
        run.inbox.put_nowait(text)

    # -- shutdown --------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Let runs finish for up to ``grace`` seconds, then interrupt the rest; then stop
        writing."""
        tasks = [run.task for run in self.active.values() if run.task is not None]
        if tasks:
            logger.info("waiting up to %.1fs for %d run(s) to finish", grace, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                logger.warning(
                    "interrupting %d run(s) still going after %.1fs", len(pending), grace
                )
                for task in pending:
                    task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.wait(pending, timeout=5.0)
        await self.writer.close()
