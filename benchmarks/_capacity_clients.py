"""Client process for ``service_capacity``: holds N idle authenticated WebSockets to the
service, in a process of its own so that the server's memory is measured alone.

    python benchmarks/_capacity_clients.py URL N [--compression deflate|none]

Prints one JSON line once every connection got ``connection_established`` (or failed), then
waits for a line on stdin and closes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from collections import Counter

from websockets.asyncio.client import ClientConnection, connect

from safeship.tokens import mint


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def hold(url: str, n: int, compression: str | None, concurrency: int) -> None:
    secret = os.environ["JWT_SECRET"]
    gate = asyncio.Semaphore(concurrency)
    open_: list[ClientConnection] = []
    failures: Counter[str] = Counter()

    async def one(i: int) -> None:
        async with gate:
            try:
                ws = await connect(
                    url,
                    additional_headers={
                        "Authorization": f"Bearer {mint(secret, f'idle-{i}', ttl=3600)}"
                    },
                    open_timeout=60,
                    ping_interval=None,
                    compression=compression,
                    max_queue=4,
                )
                hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if hello.get("type") != "connection_established":
                    failures["unexpected_first_message"] += 1
                open_.append(ws)
            except Exception as exc:
                failures[type(exc).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps({"open": len(open_), "failed": dict(failures)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def close(ws: ClientConnection) -> None:
        try:
            await asyncio.wait_for(ws.close(), 10)
        except Exception:
            ws.transport.abort()

    await asyncio.gather(*(close(ws) for ws in open_))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("n", type=int)
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    raise_fd_limit()
    compression = None if args.compression == "none" else "deflate"
    asyncio.run(hold(args.url, args.n, compression, args.concurrency))


if __name__ == "__main__":
    main()
