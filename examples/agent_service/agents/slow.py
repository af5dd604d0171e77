"""slow: thinks for ``steps`` steps, ``delay`` seconds apart (for tests, drains and load).
Input: ``{"steps": 5, "delay": 0.2}``; both optional (delay defaults to
``AGENT_SERVICE_SLOW_DELAY``)."""

from __future__ import annotations

import asyncio
from typing import Any

from .base import Agent, AgentInputError, RunContext

MAX_STEPS = 10_000
MAX_DELAY = 60.0


class SlowAgent(Agent):
    name = "slow"
    description = "thinks for {'steps'} steps, {'delay'} seconds apart"

    async def run(self, ctx: RunContext) -> Any:
        data = ctx.input if isinstance(ctx.input, dict) else {}
        steps = data.get("steps", 5)
        delay = data.get("delay", ctx.settings.slow_delay)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
            raise AgentInputError(f"'steps' must be an integer from 1 to {MAX_STEPS}")
        if (
            not isinstance(delay, int | float)
            or isinstance(delay, bool)
            or not 0 <= delay <= MAX_DELAY
        ):
            raise AgentInputError(f"'delay' must be a number of seconds from 0 to {MAX_DELAY:g}")
        for step in range(1, steps + 1):
            await ctx.think(f"step {step} of {steps}", step=step, steps=steps)
            if delay:
                await asyncio.sleep(delay)
        return {"steps": steps}


AGENT = SlowAgent
