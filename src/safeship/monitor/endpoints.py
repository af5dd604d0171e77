"""What the monitor probes: each environment's front URL, and each running revision's own URL.

An environment's URL is its ``url`` in the manifest; without one, it is the deploy target's
front when the target serves that environment (the environment of its last deploy that
promoted or restored a revision). Revisions come from the target's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Manifest
from ..errors import ConfigError, SafeshipError

__all__ = ["Endpoint", "TargetView", "endpoints", "read_target"]

_STATE_TIMEOUT = 10.0
_SERVING_OUTCOMES = ("promoted", "restored")


@dataclass(frozen=True)
class Endpoint:
    env: str
    base_url: str
    """``http(s)://host:port``; health is ``<base><health_prefix>/ready``, the WebSocket
    ``ws(s)://host:port<ws_path>``."""
    revision: str | None = None

    @property
    def key(self) -> str:
        """``staging``, or ``staging@r3`` for a revision's own URL."""
        return self.env if self.revision is None else f"{self.env}@{self.revision}"


@dataclass(frozen=True)
class TargetView:
    """What the deploy target and its state store say, read once (no recovery, no changes)."""

    target: str = ""
    serving: str | None = None
    front_url: str | None = None
    env: str | None = None
    """The environment the target serves (of its last successful deploy)."""
    revisions: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = ()
    deploys: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    """Recent deploy records, newest first."""
    error: str | None = None

    def running(self) -> list[dict[str, Any]]:
        return [r for r in self.revisions if r.get("status") == "running" and r.get("url")]


async def read_target(manifest: Manifest, *, deploys: int = 5) -> TargetView:
    """The target's state, or a view with ``error`` when it cannot be read within a deadline."""
    from ..deploy.operations import open_session

    try:
        async with open_session(manifest, recover=False) as session:
            state = await asyncio.wait_for(session.target.state(), _STATE_TIMEOUT)
            rows = session.store.deploys(limit=deploys)
    except (SafeshipError, OSError, TimeoutError) as exc:
        return TargetView(error=f"{type(exc).__name__}: {exc}")
    records = tuple(dict(row.data, status=row.status) for row in rows)
    env = next((r.get("env") for r in records if r.get("outcome") in _SERVING_OUTCOMES), None)
    return TargetView(
        target=state.target,
        serving=state.serving,
        front_url=state.front_url,
        env=env,
        revisions=tuple(r.as_dict() for r in state.revisions),
        problems=tuple(state.problems),
        deploys=records,
    )


def default_environments(manifest: Manifest, view: TargetView) -> list[str]:
    """``[monitor] environments``, else every environment with a URL plus the served one."""
    if manifest.monitor.environments:
        return list(manifest.monitor.environments)
    names = [name for name, env in manifest.environments.items() if env.url]
    if view.env and view.env not in names:
        names.append(view.env)
    return names


def endpoints(
    manifest: Manifest, envs: Sequence[str], view: TargetView, *, revisions: bool
) -> list[Endpoint]:
    """The endpoints of ``envs``.

    Raises:
        ConfigError: an unknown environment, or one with neither a ``url`` nor a revision
            the target serves for it.
    """
    found: list[Endpoint] = []
    for env in envs:
        url = manifest.environment(env).url
        served = view.env == env and view.front_url is not None
        if url is None and served:
            url = view.front_url
        if url is None:
            why = f" ({view.error})" if view.error else ""
            raise ConfigError(
                f"environment {env!r} has no url, and the deploy target serves no revision for "
                f"it{why}",
                file=manifest.display_path,
                key=f"environments.{env}.url",
                hint=f"set [environments.{env}] url, or deploy to it first",
            )
        found.append(Endpoint(env, url.rstrip("/")))
        if revisions and served:
            found += [
                Endpoint(env, str(r["url"]).rstrip("/"), str(r["id"])) for r in view.running()
            ]
    return found
