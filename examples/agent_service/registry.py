"""The agent registry, built in the ``agents`` startup phase from import paths in the settings.

Each module is imported by name and must define ``AGENT``, an :class:`Agent` subclass. Any
exception while importing (``NameError`` and ``SyntaxError`` included, not only
``ImportError``) fails the phase with the agent, the module and the exception named, chained
as the cause so the startup failure line shows the error behind the error.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .agents.base import Agent
from .errors import AgentLoadError

if TYPE_CHECKING:
    from .db import SessionManager

__all__ = ["AGENT_ATTRIBUTE", "AgentRegistry", "load_agent"]

AGENT_ATTRIBUTE = "AGENT"


def load_agent(name: str, module: str, sessions: SessionManager) -> Agent:
    """Import ``module`` and build its ``AGENT``.

    Raises:
        AgentLoadError: the import failed, ``AGENT`` is missing or not an ``Agent`` subclass,
            or building it failed; the original exception is the ``__cause__``.
    """
    where = f"agent {name!r} (module {module})"
    try:
        loaded = importlib.import_module(module)
    except Exception as exc:
        raise AgentLoadError(
            f"{where} failed to import: {type(exc).__name__}: {exc}",
            hint=None,  # the startup line derives the fix from the cause (e.g. a legacy name)
        ) from exc
    factory = getattr(loaded, AGENT_ATTRIBUTE, None)
    if not (isinstance(factory, type) and issubclass(factory, Agent)):
        raise AgentLoadError(
            f"{where} does not define {AGENT_ATTRIBUTE} as an Agent subclass",
            hint=f"add `{AGENT_ATTRIBUTE} = YourAgent` at the end of {module}",
        )
    try:
        return factory(sessions)
    except Exception as exc:
        raise AgentLoadError(f"{where} could not be created: {type(exc).__name__}: {exc}") from exc


class AgentRegistry:
    """The agents this instance serves, by name."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self._agents = dict(agents)
        self.names = frozenset(self._agents)

    @classmethod
    def load(cls, modules: Mapping[str, str], sessions: SessionManager) -> AgentRegistry:
        """Load every entry of ``modules`` (name -> module path); the first failure raises."""
        return cls({name: load_agent(name, module, sessions) for name, module in modules.items()})

    def get(self, name: str) -> Agent | None:
        return self._agents.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._agents))

    def __len__(self) -> int:
        return len(self._agents)
