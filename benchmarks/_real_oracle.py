"""Run inside an application's own venv (stdlib only): import its entry, call it when it is a
factory, run its ASGI lifespan startup, and print what happened as one JSON line.

    python _real_oracle.py MODULE:ATTR [--factory] [--trace TREE]

The output is ``{"ok": bool, "phase": "import"|"factory"|"lifespan"|"done", "error": type,
"message": str, "frames": [[file, line], ...]}``; the frames are those of the exception's
traceback (chained causes included), so a caller can tell at which line startup failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
import traceback
from typing import Any

LIFESPAN_DEADLINE = 60.0


def _frames(exc: BaseException) -> list[list[object]]:
    out: list[list[object]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [[f.filename, f.lineno] for f in traceback.extract_tb(current.__traceback__)]
        current = current.__cause__ or current.__context__
    return out


async def _lifespan(app: object) -> None:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    answered = asyncio.Event()
    answer: dict[str, object] = {}

    async def receive() -> dict[str, object]:
        return await queue.get()

    async def send(message: dict[str, object]) -> None:
        if str(message.get("type", "")).startswith("lifespan.startup"):
            answer.update(message)
            answered.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, receive, send))  # type: ignore[operator]
    waiter = asyncio.ensure_future(answered.wait())
    done, _ = await asyncio.wait(
        {task, waiter}, timeout=LIFESPAN_DEADLINE, return_when="FIRST_COMPLETED"
    )
    if task in done and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    if not done:
        raise TimeoutError(f"lifespan startup did not answer within {LIFESPAN_DEADLINE:.0f}s")
    if answer.get("type") == "lifespan.startup.failed":
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        raise RuntimeError(f"lifespan.startup.failed: {answer.get('message', '')}")
    await queue.put({"type": "lifespan.shutdown"})
    with contextlib.suppress(BaseException):  # shutdown problems are not startup problems
        await asyncio.wait_for(task, 10)


class _Tracer:
    """``--trace TREE``: which functions of the tree ran (at import and factory time, and in
    the lifespan), and which modules were imported, for the caller to sort its mutations."""

    def __init__(self, tree: str) -> None:
        self.tree = tree.rstrip("/") + "/"
        self.ran: set[tuple[str, int]] = set()
        self.lifespan: set[tuple[str, int]] = set()
        self.phase = "import"

        self.lines: set[tuple[str, int]] = set()

    def __call__(self, frame: Any, event: str, arg: object) -> Any:
        """A ``sys.settrace`` function: only frames of the tree are traced line by line."""
        if event != "call":
            return None
        code = frame.f_code
        if not code.co_filename.startswith(self.tree):
            return None
        key = (code.co_filename, code.co_firstlineno)
        (self.lifespan if self.phase == "lifespan" else self.ran).add(key)
        return self._line

    def _line(self, frame: Any, event: str, arg: object) -> Any:
        if event == "line":
            self.lines.add((frame.f_code.co_filename, frame.f_lineno))
        return self._line


def main() -> None:
    spec = sys.argv[1]
    factory = "--factory" in sys.argv[2:]
    tracer = _Tracer(sys.argv[sys.argv.index("--trace") + 1]) if "--trace" in sys.argv else None
    if tracer is not None:
        import threading

        sys.settrace(tracer)
        threading.settrace(tracer)
    module, _, attr = spec.partition(":")
    phase = "import"
    try:
        app = getattr(importlib.import_module(module), attr)
        if factory:
            phase = "factory"
            app = app()
        phase = "lifespan"
        if tracer is not None:
            tracer.phase = "lifespan"
        asyncio.run(_lifespan(app))
        phase = "done"
        result = {"ok": True, "phase": phase}
    except BaseException as exc:
        result = {
            "ok": False,
            "phase": phase,
            "error": type(exc).__name__,
            "message": str(exc)[:2000],
            "frames": _frames(exc),
        }
    if tracer is not None:
        sys.settrace(None)
        result["ran"] = sorted(tracer.ran)
        result["lines"] = sorted(tracer.lines)
        result["lifespan"] = sorted(tracer.lifespan - tracer.ran)
        result["modules"] = sorted(sys.modules)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
