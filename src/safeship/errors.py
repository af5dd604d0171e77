"""The one exception hierarchy of safeship.

Every error speaks to the user: it names what is wrong (file, key, phase, variable),
what was expected, and what to do next. None ever carries a secret value.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "ConfigError",
    "DeployError",
    "GateError",
    "IllegalTransition",
    "ProbeError",
    "SafeshipError",
    "SecretError",
    "StartupError",
    "TargetError",
    "TokenError",
    "UsageError",
]


class SafeshipError(Exception):
    """Base class. ``hint`` says what to do next; the CLI prints it under the message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, str | None]:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint}


class UsageError(SafeshipError):
    """A command line that cannot be carried out as given."""


class ConfigError(SafeshipError):
    """The manifest (or an environment section of it) is invalid.

    ``file`` and ``key`` locate the problem, e.g. ``safeship.toml`` and ``environments.staging.url``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ":".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file = file
        self.key = key


class SecretError(SafeshipError):
    """A secret is missing, weak, or inconsistent. ``tried`` lists every name looked up."""

    def __init__(self, message: str, *, tried: tuple[str, ...] = (), hint: str | None = None):
        super().__init__(message, hint=hint)
        self.tried = tried


class TokenError(SafeshipError):
    """A token was rejected. ``kind`` is machine-readable: missing, malformed, oversized,
    bad_algorithm, bad_signature, expired, immature, bad_issuer, bad_audience, missing_claim,
    bad_ticket."""

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class StartupError(SafeshipError):
    """A critical startup phase failed. The CLI/server exits with code 3."""

    exit_code = 3

    def __init__(self, phase: str, error: str, *, hint: str | None = None) -> None:
        super().__init__(f"startup failed in phase {phase!r}: {error}", hint=hint)
        self.phase = phase
        self.error = error


class GateError(SafeshipError):
    """A gate could not run at all (as opposed to running and reporting findings)."""


class ProbeError(SafeshipError):
    """A probe could not be set up (bad URL, unreadable token file, ...)."""


class TargetError(SafeshipError):
    """A deploy target could not carry out an operation."""


class DeployError(SafeshipError):
    """A deploy was refused or could not proceed."""


class AuditError(SafeshipError):
    """The audit log is unreadable or broken."""


class IllegalTransition(RuntimeError):
    """A state machine was driven out of order: a programming error, never user input."""
