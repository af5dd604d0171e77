"""Errors of the agent service, rooted in safeship's hierarchy so that the startup failure line
and the CLI render them the same way: a message naming what failed, and a hint."""

from __future__ import annotations

from safeship.errors import SafeshipError

__all__ = [
    "AgentLoadError",
    "AgentServiceError",
    "CacheUnavailable",
    "DatabaseUnavailable",
    "InjectedFault",
    "SchemaMismatch",
]


class AgentServiceError(SafeshipError):
    """Base class of the agent service's errors."""


class DatabaseUnavailable(AgentServiceError):
    """The database did not answer; the message names the host (or file) and the deadline."""


class SchemaMismatch(AgentServiceError):
    """The database holds tables that lack what this version needs; names table and column."""


class CacheUnavailable(AgentServiceError):
    """Redis (``REDIS_URL``) did not answer at startup; the message names the host."""


class AgentLoadError(AgentServiceError):
    """An agent of the registry could not be loaded; names the agent, the module and the
    exception, which is chained as ``__cause__``."""


class InjectedFault(AgentServiceError):
    """Raised by the ``AGENT_SERVICE_FAULT`` test hook."""
