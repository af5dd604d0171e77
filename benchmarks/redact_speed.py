"""Redaction on adversarial input: milliseconds per KB, and how long one request blocks the loop.

Part 1 times ``safeship.secrets.redact`` on inputs of 8 KB to 1 MB built to make each of its
patterns work hardest (repeated token prefixes, credential names, URL fragments, ...), beside a
plain ``str.replace`` over the same text measured in the same run. Redaction examines at most
``MAX_EXAMINED_CHARS``; the 1 MB rows show that the bound holds. Goal: <= 0.05 ms/KB.

Part 2 starts a real uvicorn server (h11, access log on, redaction installed) with a task that
measures event-loop lag every millisecond, sends requests whose query is the worst input for
each pattern, up to the server's header limit, and prints the longest stall. Goal: <= 20 ms.

    .venv/bin/python benchmarks/redact_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import h11._connection
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from safeship.secrets import install_redaction, redact
from safeship.secrets.redact import MAX_EXAMINED_CHARS
from safeship.testing import run_server

UNITS = (
    "eyJ", "a.eyJ", ".eyJa.", "x.eyJ.", "authorization: ", "Authorization=Bearer ",
    "cookie:", "token=&", "st=", "?%", "a%", "://a:", ":/a:@", "Bearer ", 'bearer a="',
    "jwt.1", "jwt.", " ", "=",
)  # fmt: skip
SIZES_KB = (8, 64, 256, 1024)


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def part1(repeat: int) -> float:
    print(f"redact() examines at most {MAX_EXAMINED_CHARS // 1024} KB of a text")
    print(f"{'input':<24}{'KB':>6}{'redact ms/KB':>14}{'replace ms/KB':>15}{'ratio':>8}")
    worst = 0.0
    for unit in UNITS:
        for kb in SIZES_KB:
            n = kb * 1024
            text = (unit * (n // len(unit) + 1))[:n]
            t_redact = _best(lambda text=text: redact(text), repeat) * 1000 / kb
            t_base = _best(lambda text=text: text.replace("\x00", "-"), repeat) * 1000 / kb
            worst = max(worst, t_redact)
            ratio = t_redact / t_base if t_base else float("inf")
            print(f"{unit!r:<24}{kb:>6}{t_redact:>14.4f}{t_base:>15.4f}{ratio:>8.0f}")
    print(f"worst: {worst:.4f} ms/KB (goal <= 0.05)")
    return worst


def part2() -> float:
    install_redaction()
    lag = {"max": 0.0}

    async def monitor() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lag["max"] = max(lag["max"], time.perf_counter() - start - 0.001)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(monitor())
        yield
        task.cancel()

    async def live(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def reset(request: Request) -> JSONResponse:
        seen, lag["max"] = lag["max"], 0.0
        return JSONResponse({"max": seen})

    app = Starlette(routes=[Route("/health/live", live), Route("/lag", reset)], lifespan=lifespan)
    limit = h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
    logging.getLogger("uvicorn.access").addHandler(logging.NullHandler())
    worst = 0.0
    server = run_server(app, http="h11", access_log=True, log_config=None, log_level="info")
    logging.getLogger("uvicorn.access").propagate = False
    with server as url, httpx.Client(timeout=30) as client:
        client.get(f"{url}/lag")
        print(f"\nevent-loop stall per request, query up to h11's limit ({limit // 1024} KB):")
        for unit in UNITS:
            query = (unit * (limit // len(unit)))[: limit - 300]
            client.get(f"{url}/lag")
            response = client.get(f"{url}/health/live?{query}")
            seen = client.get(f"{url}/lag").json()["max"] * 1000
            worst = max(worst, seen)
            print(f"  {unit!r:<24} HTTP {response.status_code}  max stall {seen:6.2f} ms")
    print(f"worst stall: {worst:.2f} ms (goal <= 20)")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings per input; best kept")
    args = parser.parse_args()
    part1(args.repeat)
    part2()


if __name__ == "__main__":
    main()
