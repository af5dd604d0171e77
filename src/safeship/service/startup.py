"""Phased startup inside the ASGI lifespan, and a bounded graceful shutdown.

Phases run in order, each under its own deadline. On a critical failure the service writes one
JSON line to stderr, ``{"event":"startup_failed","phase":...,"error":...,"hint":...}``, and exits
with code 3 (or keeps serving the diagnosis, or raises, as configured).

Draining: on SIGTERM, readiness drops at once, open WebSockets are closed with 1012 spread over
the drain window, and only then is the server's own shutdown let through. Uvicorn on its own would
drop every WebSocket in the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from ..core.closecodes import CloseCode
from ..core.handshake import Readiness
from ..core.startup import PhaseSpec, ServiceState, StartupMachine, hint_for, timeout_problem
from ..errors import ConfigError, StartupError
from .connections import ConnectionRegistry
from .metrics import Metrics

__all__ = ["FailureMode", "Phase", "Startup"]

logger = logging.getLogger("safeship.startup")

FailureMode = Literal["exit", "serve", "raise"]
STARTUP_FAILURE_EXIT_CODE = 3
# When set, each phase's start and end is appended to this file as a JSON line, so that a
# supervisor (the boot gate, a deploy target) can tell which phase a hung process is stuck in
# even though the server has not bound its port yet.
EVENTS_ENV = "SAFESHIP_STARTUP_EVENTS"
# A phase that blocks the event loop cannot be cancelled; the watchdog ends the process this
# long after the phase's own timeout.
_WATCHDOG_GRACE = 2.0
# The deadline of a phase declared with an invalid timeout: it fails at once, naming it.
_INVALID_TIMEOUT_STANDIN = 10.0


@dataclass(frozen=True)
class Phase:
    name: str
    fn: Callable[[], Awaitable[Any]]
    timeout: float = 10.0
    critical: bool = True

    def __post_init__(self) -> None:
        PhaseSpec(self.name, self.timeout, self.critical)  # rejects non-finite timeouts


class Startup:
    """Declared startup phases, run deterministically inside the ASGI lifespan.

    Args:
        phases: run in order. More can be added with :meth:`phase` before the app starts.
        background: bind at once and run the phases behind it; until ready, ``/health/ready``
            answers 503 with the current phase and WebSocket handshakes get 503/1013.
        on_failure: ``"exit"`` (one JSON line on stderr, exit code 3), ``"serve"`` (keep serving
            503 with the diagnosis) or ``"raise"`` (raise ``StartupError``; for in-process tests).
        drain_seconds: window over which open WebSockets are closed with 1012 on SIGTERM.
        shutdown_timeout: bound on the shutdown hooks.
        drain_signals: signals that start a drain before the server's own shutdown.
        legacy: the manifest's ``[legacy]`` table, used to word hints about removed names.
    """

    def __init__(
        self,
        phases: Sequence[Phase] = (),
        *,
        background: bool = False,
        on_failure: FailureMode = "exit",
        drain_seconds: float = 10.0,
        shutdown_timeout: float = 10.0,
        drain_signals: Sequence[signal.Signals] = (signal.SIGTERM,),
        legacy: dict[str, str] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if on_failure not in ("exit", "serve", "raise"):
            raise ValueError(f"on_failure must be 'exit', 'serve' or 'raise', not {on_failure!r}")
        for label, seconds in (
            ("drain_seconds", drain_seconds),
            ("shutdown_timeout", shutdown_timeout),
        ):
            if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
                raise ValueError(
                    f"{label} must be a finite number of seconds >= 0, got {seconds!r}"
                )
        self._phases: list[Phase] = list(phases)
        self.background = background
        self.on_failure: FailureMode = on_failure
        self.drain_seconds = drain_seconds
        self.shutdown_timeout = shutdown_timeout
        self.drain_signals = tuple(drain_signals)
        self.legacy = legacy or {}
        self.metrics = metrics
        self.clock = clock
        self.connections = ConnectionRegistry()
        self.machine = StartupMachine.plan([])
        self._shutdown_hooks: list[Callable[[], Awaitable[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._phase_task: asyncio.Future[Any] | None = None
        self._previous_handlers: dict[int, Any] = {}
        self.failure: dict[str, Any] | None = None

    # -- declaration -----------------------------------------------------------------------

    def phase(
        self, name: str, *, timeout: float = 10.0, critical: bool = True
    ) -> Callable[[Callable[[], Awaitable[Any]]], Callable[[], Awaitable[Any]]]:
        """Decorator: declare the next phase.

        ``timeout`` must be a finite number of seconds, > 0 and at most a day; any other value
        (often read from the environment) fails this phase at startup with one
        ``startup_failed`` line naming it, instead of raising at import.
        """

        def register(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
            problem = timeout_problem(timeout)
            if problem is None:
                self.add_phase(Phase(name, fn, timeout, critical))
            else:
                # Timeouts often come from the environment: a bad one ends like every other
                # startup failure (one startup_failed line, exit 3), not as a traceback at import.
                error = ConfigError(
                    f"phase {name!r}: {problem}",
                    hint="give the phase a finite timeout in seconds, e.g. 10",
                )

                async def refuse() -> None:
                    raise error

                self.add_phase(Phase(name, refuse, _INVALID_TIMEOUT_STANDIN, critical=True))
            return fn

        return register

    def add_phase(self, phase: Phase) -> None:
        if self.machine.state is not ServiceState.PENDING:
            raise RuntimeError(f"cannot add phase {phase.name!r}: startup has already begun")
        if any(p.name == phase.name for p in self._phases):
            raise ValueError(f"duplicate startup phase {phase.name!r}")
        self._phases.append(phase)

    def on_shutdown(self, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        """Register a shutdown hook; hooks run in reverse order, bounded by ``shutdown_timeout``."""
        self._shutdown_hooks.append(fn)
        return fn

    # -- state -----------------------------------------------------------------------------

    @property
    def readiness(self) -> Readiness:
        state = self.machine.state
        if state is ServiceState.READY:
            return Readiness.READY
        if state is ServiceState.FAILED:
            return Readiness.FAILED
        if state in (ServiceState.DRAINING, ServiceState.STOPPED):
            return Readiness.DRAINING
        return Readiness.STARTING

    def snapshot(self) -> dict[str, Any]:
        return self.machine.snapshot()

    # -- lifespan --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """The ASGI lifespan, for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``."""
        self._install_signal_handlers()
        try:
            if self.background:
                self._task = asyncio.create_task(self.run(), name="safeship-startup")
            else:
                await self.run()
                if self.machine.state is ServiceState.DRAINING:
                    await self._stopped_while_starting()
            yield
        finally:
            await self.shutdown()
            self._restore_signal_handlers()

    async def _stopped_while_starting(self) -> None:
        """A stop signal arrived before startup completed: never report the app started (the
        server would log "Application startup complete" and then shut down); run the shutdown
        hooks for what the phases built, then exit 0, or raise in ``raise`` mode."""
        phase = self.machine.snapshot().get("phase")
        logger.info("stopped by a signal during startup (phase %s): exiting without serving", phase)
        await self.shutdown()
        self._restore_signal_handlers()
        if self.on_failure == "raise":
            raise StartupError(str(phase), "stopped by a signal during startup")
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    async def run(self) -> None:
        """Run every phase. Failure handling follows ``on_failure``."""
        self.machine = StartupMachine.plan(
            [PhaseSpec(p.name, p.timeout, p.critical) for p in self._phases]
        )
        by_name = {p.name: p for p in self._phases}
        spec = self.machine.begin(self.clock())
        while spec is not None:
            phase = by_name[spec.name]
            if self.machine.state is not ServiceState.STARTING:
                return  # drained while starting
            spec = await self._run_phase(phase)
        self._record_metrics()
        if self.machine.state is ServiceState.READY:
            logger.info("startup complete: ready (%s)", self._timings())
        elif self.machine.state is ServiceState.FAILED:
            self._fail()

    async def _run_phase(self, phase: Phase) -> PhaseSpec | None:
        watchdog = self._start_watchdog(phase) if self.on_failure == "exit" else None
        _report({"event": "phase_started", "phase": phase.name, "timeout": phase.timeout})
        self._phase_task = asyncio.ensure_future(phase.fn())
        try:
            await asyncio.wait_for(self._phase_task, timeout=phase.timeout)
        except TimeoutError:
            error = f"phase {phase.name!r} did not finish within its timeout of {phase.timeout:g}s"
            hint = hint_for("TimeoutError", error, phase=phase.name, timeout=phase.timeout)
            return self._phase_failed(phase, error, hint, timed_out=True, causes=[], where=None)
        except asyncio.CancelledError:
            if self.machine.state is ServiceState.DRAINING:
                logger.info("phase %s cancelled: the service is stopping", phase.name)
                return None
            raise
        except Exception as exc:
            chain = _exception_chain(exc)
            root = chain[-1]
            where = _user_frame(root)
            hint = getattr(exc, "hint", None) or hint_for(
                type(root).__name__, str(root), phase=phase.name, where=where, legacy=self.legacy
            )
            causes = [_describe(e) for e in chain[1:]]
            return self._phase_failed(
                phase, _describe(exc), hint, timed_out=False, causes=causes, where=where
            )
        finally:
            if watchdog is not None:
                watchdog.cancel()
        logger.debug("phase %s ok", phase.name)
        _report({"event": "phase_ok", "phase": phase.name})
        return self.machine.succeeded(phase.name, self.clock())

    def _phase_failed(
        self,
        phase: Phase,
        error: str,
        hint: str,
        *,
        timed_out: bool,
        causes: list[str],
        where: str | None,
    ) -> PhaseSpec | None:
        if not phase.critical:
            logger.warning(
                "optional phase %s failed (service will be degraded): %s", phase.name, error
            )
        self.failure = {
            "event": "startup_failed",
            "phase": phase.name,
            "error": error,
            "hint": hint,
            "where": where,
            "causes": causes,
            "timed_out": timed_out,
        }
        _report({"event": "phase_failed", "phase": phase.name, "error": error})
        if not phase.critical:
            self.failure = None
        return self.machine.failed(phase.name, error, self.clock(), hint=hint, timed_out=timed_out)

    def _fail(self) -> None:
        failure = self.failure or {}
        line = _redacted_json(failure)
        if self.on_failure == "raise":
            raise StartupError(
                failure.get("phase", "?"), failure.get("error", "?"), hint=failure.get("hint")
            )
        if self.on_failure == "serve":
            logger.error("startup failed; serving the diagnosis on /health/ready: %s", line)
            return
        _exit_with(line)

    def _start_watchdog(self, phase: Phase) -> threading.Timer:
        def fire() -> None:
            line = _redacted_json(
                {
                    "event": "startup_failed",
                    "phase": phase.name,
                    "error": f"phase {phase.name!r} hung past its timeout of {phase.timeout:g}s "
                    "while blocking the event loop",
                    "hint": "a blocking call (sync I/O, time.sleep) runs inside an async phase: "
                    "make it async or run it with asyncio.to_thread",
                    "timed_out": True,
                }
            )
            _exit_with(line)

        timer = threading.Timer(phase.timeout + _WATCHDOG_GRACE, fire)
        timer.daemon = True
        timer.start()
        return timer

    def _record_metrics(self) -> None:
        if self.metrics is None:
            return
        for record in self.machine.phases:
            if record.duration is not None:
                self.metrics.phase_seconds.labels(record.spec.name, str(record.state)).set(
                    record.duration
                )
        self.metrics.ready.set(1 if self.machine.ready else 0)

    def _timings(self) -> str:
        return ", ".join(
            f"{r.spec.name} {r.duration * 1000:.0f}ms"
            for r in self.machine.phases
            if r.duration is not None
        )

    # -- drain and shutdown ----------------------------------------------------------------

    async def drain(self) -> None:
        """Drop readiness at once, then close open WebSockets with 1012 over the drain window."""
        if self.machine.state in (ServiceState.DRAINING, ServiceState.STOPPED):
            return
        if self.machine.state is ServiceState.PENDING:
            self.machine.begin(self.clock())
        self.machine.drain(self.clock())
        if self.metrics is not None:
            self.metrics.ready.set(0)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        # A stop request during startup must not wait for the running phase to time out.
        if self._phase_task is not None and not self._phase_task.done():
            self._phase_task.cancel()
        await self.connections.close_all(
            CloseCode.SERVICE_RESTART,
            "service restart: reconnect",
            window=self.drain_seconds,
            deadline=self.drain_seconds + 5.0,
        )

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._drain_task is not None and not self._drain_task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain_task, self.drain_seconds + 5.0)
        self.machine.stop(self.clock())
        if self.metrics is not None:
            self.metrics.ready.set(0)
        hooks = list(reversed(self._shutdown_hooks))
        if not hooks:
            return

        async def run_hooks() -> None:
            for hook in hooks:
                try:
                    await hook()
                except Exception:
                    logger.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))

        try:
            await asyncio.wait_for(run_hooks(), timeout=self.shutdown_timeout)
        except TimeoutError:
            logger.error("shutdown hooks did not finish within %gs", self.shutdown_timeout)

    def _install_signal_handlers(self) -> None:
        # signal.signal only works in the main thread; in-process test servers run elsewhere.
        if not self.drain_signals or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        # SIGINT (Ctrl-C) also stops a startup in progress: the server's own handler only asks
        # it to exit once startup returns, so a hanging phase ran to its timeout and ended as
        # a startup failure. Once started, SIGINT is the server's alone.
        for sig in dict.fromkeys((*self.drain_signals, signal.SIGINT)):
            previous = signal.getsignal(sig)
            self._previous_handlers[sig] = previous
            drains = sig in self.drain_signals

            def handler(
                signum: int,
                frame: FrameType | None,
                previous: Any = previous,
                drains: bool = drains,
            ) -> None:
                starting = self.machine.state in (ServiceState.PENDING, ServiceState.STARTING)
                if self._drain_task is not None or not (drains or starting):
                    # A second signal while draining: let the server stop now.
                    _call_previous(previous, signum, frame)
                    return
                loop.call_soon_threadsafe(self._start_drain, signum, frame, previous)

            signal.signal(sig, handler)

    def _start_drain(self, signum: int, frame: FrameType | None, previous: Any) -> None:
        async def drain_then_exit() -> None:
            try:
                await self.drain()
            finally:
                _call_previous(previous, signum, frame)

        logger.info("received signal %d: draining before shutdown", signum)
        self._drain_task = asyncio.ensure_future(drain_then_exit())

    def _restore_signal_handlers(self) -> None:
        for sig, previous in self._previous_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous)
        self._previous_handlers.clear()


def _report(event: dict[str, Any]) -> None:
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(_redacted_json({**event, "ts": time.time()}) + "\n")
    except OSError as exc:  # progress reporting must never break startup
        logger.debug("cannot write startup events to %s: %s", path, exc)


def _call_previous(previous: Any, signum: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors behind it (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame outside the standard library, site-packages and
    safeship itself: where the user's code went wrong."""
    library = os.path.dirname(os.path.dirname(__file__))
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = frame.filename
        if (
            "site-packages" in path
            or path.startswith(library)
            or path.startswith((sys.prefix, sys.base_prefix))
        ):
            continue
        if path.startswith("<") or not path.endswith(".py") or not os.path.isabs(path):
            continue  # frozen modules and compiled extensions (uvloop's .pyx) are not user code
        return f"{_relative(path)}:{frame.lineno}"
    # A SyntaxError or NameError raised while importing carries its location on itself.
    filename = getattr(exc, "filename", None)
    lineno = getattr(exc, "lineno", None)
    if isinstance(filename, str) and lineno:
        return f"{_relative(filename)}:{lineno}"
    return None


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _redacted_json(data: dict[str, Any]) -> str:
    from ..secrets import redact

    return redact(json.dumps({k: v for k, v in data.items() if v not in (None, [])}))


def _exit_with(line: str) -> None:
    """Write the failure line and end the process with code 3, without a traceback dump."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(STARTUP_FAILURE_EXIT_CODE)
