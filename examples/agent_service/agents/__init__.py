"""The agents. Each module defines ``AGENT``, an :class:`~agent_service.agents.base.Agent`
subclass; ``agent_service.settings.AGENT_MODULES`` lists them by name."""
