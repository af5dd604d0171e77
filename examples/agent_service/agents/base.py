"""What an agent is, and what it may do during a run.

An agent is a class with ``name`` and ``async run(ctx) -> output``. It reports progress
through the :class:`RunContext`: ``think`` (``agent_thinking``), ``tool`` (``tool_executing``
then ``tool_completed``) and ``next_message`` (the user's ``user_message``). The runtime emits
``agent_started`` before ``run`` and ``agent_completed`` (with the output) or ``agent_error``
(when ``run`` raises) after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from ..db import SessionManager
    from ..settings import Settings

__all__ = ["Agent", "AgentInputError", "RunContext"]


class AgentInputError(ValueError):
    """The run's ``input`` does not suit the agent; reported as ``agent_error`` with code
    ``invalid_input``."""


class RunContext(Protocol):
    run_id: str
    user: str
    input: Any
    settings: Settings

    async def think(self, text: str, **details: Any) -> None:
        """Emit ``agent_thinking``."""
        ...

    async def tool(
        self, name: str, args: dict[str, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run a tool call between ``tool_executing`` and ``tool_completed``; returns its result."""
        ...

    async def next_message(self, wait: float) -> str | None:
        """The next ``user_message`` for this run, or None after ``wait`` seconds."""
        ...


class Agent:
    """Base class. Subclasses set ``name`` and implement :meth:`run`. One instance serves every
    run, so per-run state belongs in locals, not on ``self``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, sessions: SessionManager) -> None:
        self.sessions = sessions

    async def run(self, ctx: RunContext) -> Any:
        raise NotImplementedError
