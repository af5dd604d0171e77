"""An agent module whose import of DatabaseSessionManager was removed while a method annotation
still names it: importing it raises NameError (the demo's broken revision, in miniature)."""

from agent_service.agents.base import Agent


class ResearchAgent(Agent):
    name = "research"

    def __init__(self, sessions: DatabaseSessionManager) -> None:  # noqa: F821
        super().__init__(sessions)


AGENT = ResearchAgent
