"""``safeship diagnose`` as a library call: gather what the target, fresh probes, the health
endpoints, the serving revision's log and the secrets' consumers know about an environment,
within a deadline, and let ``core.chain`` explain it.

Everything runs concurrently: three probes of the environment's URL, its ``/health/ready``,
and the serving revision's own ``/health/ready`` and ``/health/startup``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from ..config import Manifest
from ..core.chain import Chain, Facts, ProbeFact, RevisionFact, error_id, explain
from ..core.startup import startup_failed_event
from ..errors import ConfigError, SafeshipError
from . import evidence
from .endpoints import Endpoint, TargetView, read_target
from .probing import EndpointProber, Sample

__all__ = ["diagnose", "gather"]

_PROBES = 3
_PROBE_TIMEOUT = 2.0
_BUDGET = 4.5


def _probe_fact(sample: Sample, timeout: float) -> ProbeFact:
    ws = sample.checks.get("websocket", {})
    verdict = ws.get("verdict", {})
    failed_ws = verdict.get("category") not in (None, "ok")
    return ProbeFact(
        category=sample.category,
        kind=sample.kind,
        code=sample.code,
        detail=sample.detail,
        phase=sample.phase,
        reason=verdict.get("reason") if failed_ws else None,
        connect_ms=(ws.get("timings") or {}).get("tcp"),
        timeout_s=timeout,
    )


def _revision(view: TargetView, env: str) -> dict[str, Any] | None:
    if view.env != env or view.serving is None:
        return None
    return next((r for r in view.revisions if r.get("id") == view.serving), None)


async def gather(
    manifest: Manifest, env: str, environ: Mapping[str, str], *, now: float | None = None
) -> tuple[Facts, dict[str, Any]]:
    """The facts about ``env``, and extra data for ``--json`` (the probes, the revision).

    Raises:
        ConfigError: an unknown environment, or one with neither a url nor a revision served
            by the target.
    """
    manifest.environment(env)
    view = await read_target(manifest)
    url = manifest.environment(env).url
    if url is None and view.env == env:
        url = view.front_url
    if url is None:
        raise ConfigError(
            f"environment {env!r} has no url, and the deploy target serves no revision for it"
            + (f" ({view.error})" if view.error else ""),
            file=manifest.display_path,
            key=f"environments.{env}.url",
            hint=f"set [environments.{env}] url, or deploy to it first",
        )
    timeout = min(manifest.monitor.timeout, _PROBE_TIMEOUT)
    setup_error = None
    try:
        prober = EndpointProber.from_manifest(manifest, env, environ)
    except SafeshipError as exc:  # no client secret: probe without a token, and say so
        setup_error = exc.message
        prober = EndpointProber(
            ws_path=manifest.service.ws_path, health_prefix=manifest.service.health_prefix
        )
    prober.timeout = timeout
    revision = _revision(view, env)
    prefix = manifest.service.health_prefix.rstrip("/")
    endpoint = Endpoint(env, url.rstrip("/"))
    jobs: list[Any] = [prober.probe(endpoint) for _ in range(_PROBES)]
    jobs.append(evidence.fetch_json(f"{endpoint.base_url}{prefix}/ready", timeout))
    revision_url = revision.get("url") if revision else None
    if revision_url and revision is not None and revision.get("status") == "running":
        jobs.append(evidence.fetch_json(f"{revision_url}{prefix}/ready", timeout))
        jobs.append(evidence.fetch_json(f"{revision_url}{prefix}/startup", timeout))
    results = await asyncio.gather(*jobs)
    samples: list[Sample] = list(results[:_PROBES])
    front_health = results[_PROBES]
    revision_health = results[_PROBES + 1] if len(results) > _PROBES + 1 else None
    revision_startup = results[_PROBES + 2] if len(results) > _PROBES + 2 else None

    lines = evidence.log_tail(revision.get("log_path")) if revision else []
    failure = (revision or {}).get("failure") or None
    startup_failed = startup_failed_event(lines) if lines else None
    if startup_failed is None and failure:
        startup_failed = {k: failure.get(k) for k in ("phase", "error", "hint")}
    probes = [_probe_fact(s, timeout) for s in samples]
    error_lines = {}
    for probe in probes:
        found_id = error_id(probe.reason) if probe.reason else None
        if found_id and lines:
            found = evidence.error_line(lines, found_id)
            if found:
                error_lines[found_id] = found
    facts = Facts(
        env=env,
        now=time.time() if now is None else now,
        url=endpoint.base_url,
        probes=probes,
        front_health=front_health,
        revision=RevisionFact(
            str(revision["id"]),
            str(revision.get("status")),
            revision.get("url"),
            (failure or {}).get("exit_code"),
            revision.get("log_path"),
        )
        if revision
        else None,
        revision_health=revision_health,
        revision_startup=revision_startup,
        startup_failed=startup_failed,
        error_lines=error_lines,
        client_secret=evidence.client_secret(manifest, env, environ),
        backend_secret=evidence.backend_secret(lines) if lines else None,
        consumers=evidence.consumer_secrets(manifest, env, environ),
        problems=tuple(view.problems) + ((view.error,) if view.error else ()),
        incidents=_open_incidents(manifest, env),
    )
    extra = {
        "url": endpoint.base_url,
        "revision": revision["id"] if revision else None,
        "probes": [s.as_dict() for s in samples],
        "probe_setup_error": setup_error,
    }
    return facts, extra


def _open_incidents(manifest: Manifest, env: str) -> tuple[dict[str, Any], ...]:
    """The monitor's open incidents for ``env``, when a monitor keeps its history here."""
    from .operations import history_for

    path = manifest.resolve(manifest.deploy.state_dir) / "monitor.db"
    if not path.is_file():
        return ()
    try:
        history = history_for(manifest)
    except SafeshipError:
        return ()
    try:
        return tuple(history.incidents(env, open_only=True))
    finally:
        history.close()


async def diagnose(
    manifest: Manifest, env: str, environ: Mapping[str, str]
) -> tuple[Chain, dict[str, Any]]:
    """The chain for ``env``, within about 5 s (every call has its own deadline too)."""
    started = time.monotonic()
    try:
        facts, extra = await asyncio.wait_for(gather(manifest, env, environ), _BUDGET)
    except TimeoutError:
        facts = Facts(env, time.time())
        extra = {"error": f"gathering the facts took over {_BUDGET:g} s"}
    chain = explain(facts)
    extra["elapsed_s"] = round(time.monotonic() - started, 3)
    return chain, extra
