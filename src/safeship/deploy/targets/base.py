"""The ``Target`` protocol: where revisions run and how traffic moves between them.

A target starts a revision with no traffic, gives its own URL (so it can be verified before
anyone uses it), switches new traffic to it, reports the state, and drains and stops a
revision. ``docs/targets.md`` maps each method onto the local target, Cloud Run and Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "LIVE_STATUSES",
    "Lifecycle",
    "Revision",
    "RevisionSpec",
    "RevisionStatus",
    "StartFailure",
    "Target",
    "TargetState",
    "TrafficSplit",
    "missing_app_module",
]


class RevisionStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"  # never started: exited during startup, or could not be created
    EXITED = "exited"  # was running, then exited on its own
    DRAINING = "draining"
    STOPPED = "stopped"
    ABANDONED = "abandoned"  # left behind by an interrupted deploy; cleaned up by recover()


LIVE_STATUSES = frozenset(
    {RevisionStatus.STARTING, RevisionStatus.RUNNING, RevisionStatus.DRAINING}
)


@dataclass(frozen=True)
class RevisionSpec:
    """What to run. ``env`` holds secrets: targets pass it to the process and never persist,
    log or print it (it is left out of ``repr`` and comparisons)."""

    source: Path
    app: str
    """ASGI import string, ``module:attribute``."""
    app_dir: str = "."
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    command: tuple[str, ...] | None = None
    """Run this argv instead of uvicorn; ``{port}`` and ``{host}`` are replaced."""
    image: str | None = None
    """A prebuilt image, for targets that run images (``--image``)."""


@dataclass(frozen=True)
class StartFailure:
    """Why a revision did not start, as the service reported it."""

    error: str
    phase: str | None = None
    hint: str | None = None
    exit_code: int | None = None
    log_tail: tuple[str, ...] = ()

    def summary(self) -> str:
        where = f" in phase {self.phase!r}" if self.phase else ""
        code = f" (exit code {self.exit_code})" if self.exit_code is not None else ""
        return f"failed{where}{code}: {self.error}"


@dataclass(frozen=True)
class Revision:
    id: str
    url: str
    """The revision's own base URL, reachable without going through the traffic switch."""
    status: RevisionStatus
    created: float
    """Wall-clock seconds since the epoch."""
    traffic: bool = False
    """Whether it has ever been given traffic."""
    port: int | None = None
    pid: int | None = None
    log_path: str | None = None
    failure: StartFailure | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        if self.failure is not None:
            data["failure"]["log_tail"] = list(self.failure.log_tail)
        return data


@dataclass(frozen=True)
class TargetState:
    target: str
    revisions: tuple[Revision, ...]
    serving: str | None
    """The revision new connections go to; ``None`` when nothing serves."""
    front_url: str | None
    """The stable URL users connect to."""
    problems: tuple[str, ...] = ()
    """Inconsistencies found while reading the state, in words (e.g. a dead front)."""

    def revision(self, revision_id: str) -> Revision | None:
        return next((r for r in self.revisions if r.id == revision_id), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "serving": self.serving,
            "front_url": self.front_url,
            "revisions": [r.as_dict() for r in self.revisions],
            "problems": list(self.problems),
        }


@runtime_checkable
class Target(Protocol):
    """A place revisions run. Every method has a deadline; operational failures raise
    ``TargetError`` naming what failed and what to do; a revision that fails to start is
    data (``Revision.status == "failed"`` with ``failure``), not an exception."""

    name: str

    async def start(self, spec: RevisionSpec) -> Revision:
        """Start a new revision with NO traffic; return once it runs (or failed to start).
        It does not wait for readiness: the caller probes ``Revision.url`` itself."""
        ...

    async def switch(self, revision_id: str) -> None:
        """Send all NEW connections to the revision; returns once the switch is confirmed.
        Open connections keep their revision until it is drained."""
        ...

    async def state(self) -> TargetState: ...

    async def stop(self, revision_id: str, *, drain_seconds: float) -> None:
        """Drain the revision (readiness off, WebSockets closed with 1012 over the window),
        then stop it. Also for revisions that never had traffic (``drain_seconds=0``)."""
        ...


@runtime_checkable
class TrafficSplit(Protocol):
    """Optional: targets that can send a share of NEW connections to a candidate."""

    async def split(self, new: str, old: str, percent: int) -> None:
        """Send ``percent`` % of new connections to revision ``new`` and the rest to ``old``;
        return once the split is confirmed. ``percent`` is 1..99 (100 is ``switch(new)``)."""
        ...


@runtime_checkable
class Lifecycle(Protocol):
    """Optional: targets whose processes outlive the CLI (the local target)."""

    async def recover(self) -> list[str]:
        """Clean up what an interrupted command left behind; say what was done."""
        ...

    async def down(self) -> list[str]:
        """Stop everything the target runs."""
        ...


def missing_app_module(source: Path, app: str, app_dir: str) -> str | None:
    """Why ``source`` does not hold the ASGI app ``app`` (``module:attr``) under ``app_dir``;
    ``None`` when it does. Shared by the deploy command (before anything starts) and the
    targets (for callers that use them directly)."""
    module = app.split(":", 1)[0]
    base = source / app_dir / Path(*module.split("."))
    candidates = (base.with_suffix(".py"), base / "__init__.py")
    if any(path.is_file() for path in candidates):
        return None
    looked = " or ".join(str(p.relative_to(source)) for p in candidates)
    return (
        f"{source} is not the configured app: module {module!r} (app {app!r}, app_dir "
        f"{app_dir!r}) is not there; looked for {looked}"
    )
