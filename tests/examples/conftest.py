"""Unit tests of the reference service ``examples/agent_service`` (not an installed package)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BROKEN_AGENTS = Path(__file__).resolve().parent / "broken_agents"

for path in (EXAMPLES, BROKEN_AGENTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
