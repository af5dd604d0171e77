"""history: reports the user's past runs, read from the database.

This module still names the database through its legacy alias ``DatabaseSessionManager``, in a
method annotation (evaluated when the class body runs, as there is no postponed evaluation
here) and inside a function body. It is the module of the demo's broken revision, which
removes the import line below.
"""

from typing import Any, cast

from agent_service.agents.base import Agent, AgentInputError, RunContext
from agent_service.db import DatabaseSessionManager
from agent_service.store import EventStore

MAX_LIMIT = 50


class HistoryAgent(Agent):
    name = "history"
    description = "lists the user's past runs (input: {'limit': 10})"

    def __init__(self, sessions: DatabaseSessionManager) -> None:
        super().__init__(sessions)

    async def run(self, ctx: RunContext) -> Any:
        limit = ctx.input.get("limit", 10) if isinstance(ctx.input, dict) else 10
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise AgentInputError(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
        sessions = cast(DatabaseSessionManager, self.sessions)
        await ctx.think("looking up your past runs")

        async def call() -> list[dict[str, Any]]:
            return await EventStore(sessions).recent_runs(ctx.user, limit=limit + 1)

        runs = await ctx.tool("list_runs", {"limit": limit}, call)
        # The current run is the newest one: report only the past.
        past = [run for run in runs if run["run_id"] != ctx.run_id][:limit]
        return {"runs": past, "count": len(past)}


AGENT = HistoryAgent
