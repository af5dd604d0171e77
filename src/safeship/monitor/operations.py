"""``safeship monitor`` as library calls: build a :class:`Monitor` from the manifest, probe
once, or run until stopped with the HTTP server and notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Manifest
from ..core.slo import CheckClass
from ..errors import ConfigError
from . import evidence
from .endpoints import Endpoint, TargetView, default_environments, endpoints, read_target
from .history import History
from .probing import EndpointProber, Sample
from .scheduler import IncidentEvent, Monitor, MonitorSettings

__all__ = ["MonitorRun", "build_monitor", "explain_auth", "monitor_forever", "monitor_once"]


@dataclass
class MonitorRun:
    monitor: Monitor
    view: TargetView
    envs: list[str]
    manifest: Manifest | None = None

    async def refresh(self) -> tuple[list[str], list[str]]:
        """Read the target again and follow its revisions (deploys start and stop them)."""
        if self.manifest is None:
            return [], []
        view = await read_target(self.manifest)
        if view.error is not None:
            return [], []  # keep probing what is known
        try:
            found = endpoints(
                self.manifest, self.envs, view, revisions=self.manifest.monitor.revisions
            )
        except ConfigError:
            return [], []
        self.view = view
        return self.monitor.set_endpoints(found)


def history_for(manifest: Manifest) -> History:
    state_dir = manifest.resolve(manifest.deploy.state_dir)
    return History(state_dir / "monitor.db", max_age=manifest.monitor.history_hours * 3600)


async def build_monitor(
    manifest: Manifest,
    envs: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    history: bool = True,
    on_incident: Callable[[IncidentEvent], Any] | None = None,
) -> MonitorRun:
    """A monitor of ``envs`` (default: ``[monitor] environments``, else every environment with
    a URL plus the one the target serves).

    Raises:
        ConfigError: an unknown environment, one with no URL, bad thresholds, no environment
            to monitor. SecretError: no secret to mint probe tokens from.
    """
    environ = os.environ if environ is None else environ
    settings = MonitorSettings.from_manifest(manifest)
    view = await read_target(manifest)
    names = list(envs) or default_environments(manifest, view)
    if not names:
        raise ConfigError(
            "nothing to monitor: no environment has a url and the deploy target serves none",
            file=manifest.display_path,
            key="monitor.environments",
            hint="pass --env E, set [environments.E] url, or deploy first",
        )
    found = endpoints(manifest, names, view, revisions=manifest.monitor.revisions)
    probers = {env: EndpointProber.from_manifest(manifest, env, environ) for env in names}

    async def explain(endpoint: Endpoint, check: CheckClass, sample: Sample) -> str:
        if check is not CheckClass.AUTH:
            return ""
        # run.view: the target as last read (the serving revision changes with deploys).
        return await asyncio.to_thread(explain_auth, manifest, endpoint, run.view, environ)

    monitor = Monitor(
        found,
        probers,
        settings,
        history=history_for(manifest) if history else None,
        on_incident=on_incident,
        explain=explain,
    )
    run = MonitorRun(monitor, view, names, manifest)
    return run


def explain_auth(
    manifest: Manifest, endpoint: Endpoint, view: TargetView, environ: Mapping[str, str]
) -> str:
    """The auth alert's diagnosis: the clients' secret fingerprint against the backend's (its
    log), and which consumer holds which."""
    client = evidence.client_secret(manifest, endpoint.env, environ)
    revision_id = endpoint.revision or (view.serving if view.env == endpoint.env else None)
    revision = next((r for r in view.revisions if r.get("id") == revision_id), None)
    backend = evidence.backend_secret(evidence.revision_log(revision)) if revision else None
    parts = [
        f"clients sign with {client.get('name') or '?'} fingerprint {client.get('fingerprint') or 'unreadable'}"
    ]
    if backend is not None:
        verdict = "the same" if backend["fingerprint"] == client.get("fingerprint") else "DIFFERENT"
        parts.append(
            f"backend {revision_id} verifies with {backend['name']} fingerprint "
            f"{backend['fingerprint']} ({verdict})"
        )
    else:
        parts.append("the backend's fingerprint is not readable here")
    holders = [
        f"{c['consumer']}={c.get('fingerprint') or c.get('error', '?')}"
        for c in evidence.consumer_secrets(manifest, endpoint.env, environ)
    ]
    if holders:
        parts.append("consumers: " + ", ".join(holders))
    return "; ".join(parts)


async def monitor_once(run: MonitorRun) -> dict[str, Any]:
    """Probe every endpoint once. ``ok`` is true when every probe passed."""
    samples = await run.monitor.probe_once()
    return {
        "ok": all(s.ok for s in samples),
        "envs": run.envs,
        "samples": [s.as_dict() for s in samples],
        "analysis": run.monitor.snapshot(),
    }


async def monitor_forever(
    run: MonitorRun,
    stop: asyncio.Event,
    *,
    listen: str | None = None,
    on_start: Callable[[str | None], None] | None = None,
    refresh: float = 15.0,
) -> None:
    """Probe until ``stop`` is set, serving ``/metrics`` and ``/analysis`` on ``listen``;
    the target is read again every ``refresh`` seconds to follow its revisions."""
    from .server import MonitorServer

    server = MonitorServer(run.monitor, listen) if listen else None
    url = await server.start() if server is not None else None
    run.monitor.restore()
    if on_start is not None:
        on_start(url)

    async def follow() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), refresh)
            if not stop.is_set():
                await run.refresh()

    follower = asyncio.create_task(follow())
    try:
        await run.monitor.run(stop)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        if server is not None:
            await server.stop()
