"""Helpers for testing services built on safeship (and safeship itself).

``run_server`` starts a real uvicorn server on ``127.0.0.1:0`` in a thread and yields its
base URL; ``wait_until`` polls a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from .procs import free_port

__all__ = ["free_port", "run_server", "scaled", "wait_until", "wait_until_async"]

TIMEOUT_SCALE = float(os.environ.get("SAFESHIP_TIMEOUT_SCALE", "1"))


def scaled(seconds: float) -> float:
    """A timeout multiplied by ``SAFESHIP_TIMEOUT_SCALE`` (one factor for every test deadline)."""
    return seconds * TIMEOUT_SCALE


def wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns a truthy value, or raise ``TimeoutError``."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"condition not met within {scaled(timeout):.1f}s: {what or predicate}"
            )
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], Any | Awaitable[Any]],
    within: float = 5.0,
    interval: float = 0.01,
    what: str = "",
) -> Any:
    deadline = time.monotonic() + scaled(within)
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"condition not met within {scaled(within):.1f}s: {what or predicate}"
            )
        await asyncio.sleep(interval)


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # signals belong to the main thread
        pass


@contextlib.contextmanager
def run_server(app: Any, *, startup_timeout: float = 10.0, **config: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on ``127.0.0.1:0`` in a thread; yield ``http://127.0.0.1:PORT``.

    The server is asked to exit on leaving the block, and joined with a deadline.
    """
    config.setdefault("log_level", "warning")
    config.setdefault("lifespan", "on")
    server = _ThreadServer(uvicorn.Config(app, host="127.0.0.1", port=0, **config))
    thread = threading.Thread(target=server.run, name="safeship-test-server", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: server.started or not thread.is_alive(),
            timeout=startup_timeout,
            what="uvicorn to start",
        )
        if not server.started:
            raise RuntimeError("uvicorn exited during startup")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(scaled(15))
