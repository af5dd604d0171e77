"""echo: answers with its input. With ``{"text": ..., "turns": n}`` it also waits for ``n``
user messages and echoes each one (the conversational path of the protocol)."""

from __future__ import annotations

from typing import Any

from .base import Agent, AgentInputError, RunContext

MAX_TURNS = 20
TURN_TIMEOUT = 60.0


class EchoAgent(Agent):
    name = "echo"
    description = "answers with its input; {'text', 'turns'} echoes user messages too"

    async def run(self, ctx: RunContext) -> Any:
        data = ctx.input
        turns = 0
        if isinstance(data, dict) and "turns" in data:
            turns = data["turns"]
            if not isinstance(turns, int) or isinstance(turns, bool) or not 0 <= turns <= MAX_TURNS:
                raise AgentInputError(f"'turns' must be an integer from 0 to {MAX_TURNS}")
            data = data.get("text")
        await ctx.think("echoing the input")
        for turn in range(1, turns + 1):
            message = await ctx.next_message(TURN_TIMEOUT)
            if message is None:
                raise TimeoutError(f"no user_message for turn {turn} within {TURN_TIMEOUT:g}s")
            await ctx.think(f"echo: {message}", turn=turn, echo=message)
        return data


AGENT = EchoAgent
