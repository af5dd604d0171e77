from __future__ import annotations

import sys

import pytest
from agent_service.agents.base import Agent
from agent_service.errors import AgentLoadError
from agent_service.registry import AgentRegistry, load_agent
from agent_service.settings import AGENT_MODULES

SESSIONS = object()  # agents only keep it; loading never touches the database


def test_every_registered_agent_loads():
    registry = AgentRegistry.load(AGENT_MODULES, SESSIONS)  # type: ignore[arg-type]
    assert set(registry) == {"echo", "wordcount", "slow", "failing", "history"}
    assert len(registry) == 5
    for name in registry:
        agent = registry.get(name)
        assert isinstance(agent, Agent) and agent.name == name and agent.sessions is SESSIONS
    assert registry.get("nope") is None


def test_a_name_error_at_import_names_the_agent_the_module_and_the_error():
    with pytest.raises(AgentLoadError) as exc:
        AgentRegistry.load(
            {"echo": "agent_service.agents.echo", "research": "nameerror_agent"},
            SESSIONS,  # type: ignore[arg-type]
        )
    message = str(exc.value)
    assert "agent 'research'" in message
    assert "module nameerror_agent" in message
    assert "NameError" in message and "DatabaseSessionManager" in message
    assert isinstance(exc.value.__cause__, NameError)
    # No hint of its own: the startup line derives it from the cause (the [legacy] table).
    assert exc.value.hint is None
    sys.modules.pop("nameerror_agent", None)


def test_a_missing_module_a_syntax_error_and_a_missing_agent_attribute(tmp_path, monkeypatch):
    with pytest.raises(
        AgentLoadError,
        match=r"agent 'ghost' \(module agent_service.agents.ghost\) failed to import: ModuleNotFoundError",
    ) as exc:
        load_agent("ghost", "agent_service.agents.ghost", SESSIONS)  # type: ignore[arg-type]
    assert isinstance(exc.value.__cause__, ModuleNotFoundError)

    (tmp_path / "syntax_broken_agent.py").write_text("def broken(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AgentLoadError, match="SyntaxError") as exc:
        load_agent("broken", "syntax_broken_agent", SESSIONS)  # type: ignore[arg-type]
    assert isinstance(exc.value.__cause__, SyntaxError)

    with pytest.raises(AgentLoadError, match="does not define AGENT") as exc:
        load_agent("forgot", "no_agent_attribute", SESSIONS)  # type: ignore[arg-type]
    assert "AGENT = YourAgent" in (exc.value.hint or "")


def test_the_history_agent_names_the_legacy_alias_in_a_method_annotation():
    # The demo's broken revision removes this module's import of DatabaseSessionManager; the
    # annotation is evaluated when the class body runs, which is what makes the import fail.
    from agent_service.agents import history
    from agent_service.db import DatabaseSessionManager

    annotation = history.HistoryAgent.__init__.__annotations__["sessions"]
    assert annotation is DatabaseSessionManager
