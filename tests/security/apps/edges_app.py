"""A service for tests/security/test_startup_edges.py: a phase that announces itself on
stderr and hangs, so a test can stop the process in the middle of startup. Its timeout comes
from ``EDGES_TIMEOUT``, as services often read theirs from the environment."""

from __future__ import annotations

import asyncio
import os
import sys

from starlette.applications import Starlette

from safeship.config import Manifest
from safeship.service import Safeship

ship = Safeship(manifest=Manifest(), secrets_phase=False)


@ship.phase("database", timeout=float(os.environ.get("EDGES_TIMEOUT", "60")))
async def hang() -> None:
    sys.stderr.write("phase database: hanging\n")
    sys.stderr.flush()
    await asyncio.Event().wait()


app = Starlette(lifespan=ship.lifespan)
ship.install(app)
