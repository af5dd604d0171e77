"""failing: always raises, to show that a failing agent ends its run with ``agent_error`` while
the connection and the service stay healthy."""

from __future__ import annotations

from typing import Any

from .base import Agent, RunContext


class FailingAgent(Agent):
    name = "failing"
    description = "raises on purpose: its run ends with agent_error"

    async def run(self, ctx: RunContext) -> Any:
        await ctx.think("about to fail on purpose")
        raise RuntimeError("the failing agent always fails (by design)")


AGENT = FailingAgent
