"""Credentials in URLs: every URL-like form is redacted (no '://', '@' in the password), and a
configuration error names the setting without echoing its value."""

from __future__ import annotations

import pytest
from agent_service.settings import load_settings

from safeship.errors import ConfigError
from safeship.secrets import redact

from ..e2e.conftest_agent import agent_services, failure_line  # noqa: F401  (fixture)

PW = "Sup3r-Pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql+asyncpg:/app:{PW}@db/app", "postgresql+asyncpg:/app:[redacted]@db/app"),
        (f"postgresql://app:{PW}@x@db/app", "postgresql://app:[redacted]@db/app"),
        (f"postgresql://app:p@ss@{PW}@db:5432/app", "postgresql://app:[redacted]@db:5432/app"),
        (f"redis://:{PW}@127.0.0.1:6379/0", "redis://:[redacted]@127.0.0.1:6379/0"),
        (f"mysql:///app:{PW}@db", "mysql:///app:[redacted]@db"),
        (f"DATABASE_URL=postgresql://u:{PW}@h/db", "DATABASE_URL=postgresql://u:[redacted]@h/db"),
        (f"'postgresql://u:{PW}@h/db'", "'postgresql://u:[redacted]@h/db'"),
    ],
)
def test_url_passwords_are_redacted_in_every_form(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg:/app:{PW}@db/app",  # one slash: not a URL at all
        f"mysql://app:{PW}@db/app",  # unsupported scheme
        f"post gres://app:{PW}@db/app",  # malformed scheme
    ],
)
def test_a_bad_database_url_is_named_not_quoted(url: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load_settings({"DATABASE_URL": url}, env="test")
    text = f"{bad.value.message} {bad.value.hint}"
    assert "DATABASE_URL" in text or "database URL" in text
    assert PW not in text and "app:" not in text


def test_a_bad_redis_url_is_named_not_quoted() -> None:
    with pytest.raises(ConfigError) as bad:
        load_settings({"REDIS_URL": f"redis:/:{PW}@h:6379"}, env="test")
    assert "REDIS_URL is not a URL" in bad.value.message and PW not in bad.value.message


@pytest.mark.e2e
def test_the_startup_failed_line_shows_no_password(agent_services) -> None:  # noqa: F811
    server = agent_services.start(
        {"DATABASE_URL": f"postgresql+asyncpg:/app:{PW}@127.0.0.1/test"}, wait=False
    )
    assert server.wait_exit(30) == 3
    output = server.output()
    assert PW not in output
    failure = failure_line(output)
    assert "DATABASE_URL is not a URL: expected scheme://" in failure["error"]
