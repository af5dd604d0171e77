"""wordcount: counts the words of its input through a tool call, so a run shows every kind of
event: started, thinking, tool_executing, tool_completed, completed."""

from __future__ import annotations

from typing import Any

from .base import Agent, AgentInputError, RunContext


def count_words(text: str) -> dict[str, int]:
    words = text.split()
    return {"words": len(words), "characters": len(text), "unique": len({w.lower() for w in words})}


class WordCountAgent(Agent):
    name = "wordcount"
    description = "counts the words of a text (input: a string, or {'text': ...})"

    async def run(self, ctx: RunContext) -> Any:
        text = ctx.input.get("text") if isinstance(ctx.input, dict) else ctx.input
        if not isinstance(text, str):
            raise AgentInputError("input must be a string, or an object with a 'text' string")
        await ctx.think("counting the words with the count_words tool")

        async def call() -> dict[str, int]:
            return count_words(text)

        counts = await ctx.tool("count_words", {"characters": len(text)}, call)
        return counts


AGENT = WordCountAgent
