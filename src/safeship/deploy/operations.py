"""The deploy commands as library calls: ``deploy``, ``rollback``, ``status``, ``history``,
``down``. The CLI parses, calls one of these and renders the answer.

Each opens a :class:`Session` on the manifest's target and state directory. Opening one first
cleans up what an interrupted command left behind (the target's ``recover()``, then
:func:`~.recovery.recover_interrupted`) and says what it did; closing it releases the target.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import procs
from ..config import Manifest
from ..core.policy import DEPLOY_GATES, GatePlan, deploy_gates
from ..core.rollout import RolloutPolicy
from ..errors import ConfigError, DeployError, UsageError
from ..gates.model import GateResult
from ..secrets import candidate_names, register_secret
from ._actions import GateRunner
from .audit import AuditLog, audit_path
from .canary import MetricsReader
from .pipeline import DeployRequest, DeployResult, Pipeline, Services
from .probes import RevisionProber
from .record import EventSink
from .recovery import recover_interrupted
from .restore import instant_rollback, previous_good, restore_spec
from .state import StateStore
from .targets import Lifecycle, RevisionSpec, Target, create_target, target_class
from .targets.base import missing_app_module

__all__ = [
    "Session",
    "check_source",
    "deploy",
    "down",
    "history",
    "open_session",
    "revision_spec",
    "rollback",
    "status",
]


@dataclass
class Session:
    manifest: Manifest
    target: Target
    store: StateStore
    audit: AuditLog
    recovered: list[str] = field(default_factory=list)

    @property
    def policy(self) -> RolloutPolicy:
        return RolloutPolicy.from_config(self.manifest.deploy)

    def services(self, prober: Any, run_gates: GateRunner) -> Services:
        metrics = MetricsReader(
            timeout=self.manifest.deploy.probe_timeout,
            headers=getattr(self.target, "probe_headers", None),
        )
        return Services(self.target, prober, run_gates, self.store, self.audit, metrics=metrics)


@asynccontextmanager
async def open_session(
    manifest: Manifest, target_name: str | None = None, *, recover: bool = True
) -> AsyncIterator[Session]:
    """The target and state of ``manifest``, recovered from any interrupted command.

    Raises:
        UsageError: an unknown target. TargetError: the state cannot be opened.
    """
    target = create_target(target_name or manifest.deploy.target, manifest)
    state_dir = manifest.resolve(manifest.deploy.state_dir)
    try:
        store = StateStore(state_dir / "state.db")
    except BaseException:
        _close(target)
        raise
    session = Session(manifest, target, store, AuditLog(audit_path(manifest)))
    try:
        if recover:
            if isinstance(target, Lifecycle):
                session.recovered += await target.recover()
            session.recovered += await recover_interrupted(
                store,
                target,
                session.audit,
                policy=session.policy,
                drain_seconds=manifest.deploy.drain_seconds,
            )
        yield session
    finally:
        store.close()
        _close(target)


def _close(target: Target) -> None:
    close = getattr(target, "close", None)
    if callable(close):
        close()


# -- deploy ---------------------------------------------------------------------------------


def check_source(manifest: Manifest, source: Path) -> None:
    """Refuse, before anything runs, a source directory that is not the configured app.

    Raises:
        ConfigError: ``[service] app`` is not set. UsageError: the directory does not exist or
            does not hold the app's module.
    """
    service = manifest.service
    if not service.app and not service.command:
        raise ConfigError(
            "no app to deploy: [service] app is not set",
            file=manifest.display_path,
            key="service.app",
            hint='set it to the ASGI import string, e.g. app = "myapp.main:app"',
        )
    if not source.is_dir():
        raise UsageError(
            f"source directory {source} does not exist",
            hint="pass --source with the project directory that holds the service",
        )
    if service.command or not service.app:
        return
    problem = missing_app_module(source, service.app, service.app_dir)
    if problem is not None:
        raise UsageError(
            problem,
            hint="run from the project root or pass --source DIR; check [service] app and "
            "app_dir in " + manifest.display_path,
        )


def revision_spec(
    manifest: Manifest, env: str, source: Path, image: str | None = None
) -> RevisionSpec:
    """What to run: the app from ``source``, with the environment's variables.

    The environment is the caller's, overlaid with the manifest environment's ``env_file``
    and ``env`` table (``SAFESHIP_ENV`` set to ``env``). Secrets in it go to the process only.

    Raises:
        ConfigError: unknown environment, or its ``env_file`` is missing.
    """
    from ..gates.runner import target_environ

    environ = target_environ(manifest, env, os.environ)
    config = manifest.secret_config(manifest.auth.secret)
    for name in candidate_names(manifest.auth.secret, env, config.per_environment):
        if environ.get(name):
            register_secret(environ[name])  # redacted from anything the deploy prints
    service = manifest.service
    return RevisionSpec(
        source=source,
        app=service.app or "",
        app_dir=service.app_dir,
        env=environ,
        command=tuple(service.command) if service.command else None,
        image=image,
    )


def _gate_runner(manifest: Manifest, env: str, source: Path) -> GateRunner:
    async def run(gates: Sequence[str]) -> list[GateResult]:
        from ..gates.runner import build_context, run_check

        ctx = build_context(source, manifest, env, base_environ=os.environ)
        report = await asyncio.to_thread(run_check, ctx, gates)
        return report.results

    return run


async def deploy(
    manifest: Manifest,
    request: DeployRequest,
    *,
    target_name: str | None = None,
    image: str | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Deploy ``request.source`` to ``request.env``: gates, start, verify, switch, watch,
    promote or roll back, drain.

    Returns:
        The result; its record says what happened, its ``exit_code`` is the command's.

    Raises:
        UsageError, ConfigError, SecretError: before anything is started (``--force``
            without ``--reason``, an unknown gate or environment, a source that is not the
            app, ``--image`` on the local target, no probe secret...).
        DeployError: another deploy is running.
    """
    env = request.env
    if request.force and not (request.reason or "").strip():
        raise UsageError(
            "--force needs --reason TEXT: a forced deploy must say why (it goes to the audit log)",
            hint='e.g. --force --reason "hotfix for INC-42; the current revision is down"',
        )
    manifest.environment(env)  # an unknown environment is a config error, first
    plan = deploy_gates(env, manifest.is_critical(env), request.skip, request.force, request.reason)
    name = target_name or manifest.deploy.target
    target_class(name)  # an unknown target (or its missing extra) is refused up front
    if image is not None and name == "local":
        raise UsageError(
            "the local target runs source trees, not images: --image is not supported",
            hint="pass --source DIR (default: the project root), or use a target that runs "
            "images (cloudrun, kubernetes)",
        )
    source = request.source.resolve()
    check_source(manifest, source)
    notifier = _notifier(manifest)  # a bad [notify] is a config error before anything runs
    spec = revision_spec(manifest, env, source, image)
    prober = RevisionProber.from_manifest(manifest, env, os.environ)
    async with open_session(manifest, name) as session:
        prober.headers = getattr(session.target, "probe_headers", None)
        pipeline = Pipeline(
            DeployRequest(env, source, request.skip, request.force, request.reason),
            spec,
            plan,
            session.policy,
            session.services(prober, _gate_runner(manifest, env, source)),
            drain_seconds=manifest.deploy.drain_seconds,
            on_event=notifier.deploy_sink(env, on_event),
            extra={"recovered": list(session.recovered)},
        )
        result = await pipeline.run()
    await notifier.close()  # within [notify] timeout
    return result


def _notifier(manifest: Manifest) -> Any:
    from ..monitor.notify import Notifier

    return Notifier.from_manifest(manifest)


# -- rollback, status, history, down --------------------------------------------------------


async def rollback(manifest: Manifest, *, on_event: EventSink | None = None) -> DeployResult:
    """Send traffic back to the previous good revision: at once when it still runs; else
    restart its code as a new revision, verify it, switch, and drain the current one.

    Raises:
        DeployError: there is no previous good revision, or a deploy is running.
    """
    async with open_session(manifest) as session:
        state = await session.target.state()
        goal = previous_good(state, session.store.deploys())
        if goal is None:
            raise DeployError(
                "there is no previous good revision to roll back to"
                + (f" (serving: {state.serving})" if state.serving else ""),
                hint="see `safeship history`: a revision counts once a deploy promoted it",
            )
        if goal.status == "running":
            return await instant_rollback(session, state, goal, on_event=on_event)
        env, spec = restore_spec(session, goal)
        prober = RevisionProber.from_manifest(manifest, env, os.environ)
        prober.headers = getattr(session.target, "probe_headers", None)
        plan = GatePlan(
            env=env,
            critical=manifest.is_critical(env),
            run=(),
            skipped=DEPLOY_GATES,
            reason=f"restoring the code of {goal.id}, which passed them when it was deployed",
        )
        policy = RolloutPolicy.from_config(manifest.deploy.model_copy(update={"watch_seconds": 0}))
        pipeline = Pipeline(
            DeployRequest(env, spec.source),
            spec,
            plan,
            policy,
            session.services(prober, _no_gates),
            drain_seconds=manifest.deploy.drain_seconds,
            on_event=on_event,
            kind="rollback",
            check_health=False,
            extra={"restored_from": goal.id, "recovered": list(session.recovered)},
        )
        return await pipeline.run()


async def _no_gates(gates: Sequence[str]) -> list[GateResult]:
    return []


async def status(manifest: Manifest) -> dict[str, Any]:
    """The revisions, which one serves, and the readiness of each running one.

    ``ok`` is true when nothing was deployed yet, or a revision serves and is ready.
    """
    async with open_session(manifest) as session:
        state = await session.target.state()
        prober = RevisionProber(
            health_prefix=manifest.service.health_prefix,
            timeout=manifest.deploy.probe_timeout,
            headers=getattr(session.target, "probe_headers", None),
        )
        checks = {r.id: r.url for r in state.revisions if r.status == "running" and r.url}
        if state.serving and state.front_url:
            checks["front"] = state.front_url
        outcomes = await asyncio.gather(*(prober.ready(url) for url in checks.values()))
        health = {key: o.as_dict() for key, o in zip(checks, outcomes, strict=True)}
        serving_ok = state.serving is not None and health.get("front", {}).get("category") == "ok"
        deployed = bool(state.revisions)
        last = session.store.deploys(limit=1)
        return {
            "ok": (serving_ok or not deployed) and not state.problems,
            **state.as_dict(),
            "health": health,
            "recovered": session.recovered,
            "last_deploy": _summary(last[0]) if last else None,
        }


async def history(manifest: Manifest, last: int | None = None) -> list[dict[str, Any]]:
    """Past deploys and rollbacks, most recent first."""
    async with open_session(manifest) as session:
        return [_summary(row, full=True) for row in session.store.deploys(limit=last)]


def _summary(row: Any, *, full: bool = False) -> dict[str, Any]:
    record = row.data
    summary = {
        "id": row.id,
        "kind": record.get("kind", "deploy"),
        "status": row.status,
        "env": record.get("env"),
        "revision": row.revision,
        "previous": row.previous,
        "started": row.started,
        "ended": row.ended,
        "duration_s": record.get("duration_s"),
        "reason": record.get("reason", ""),
        "exit_code": record.get("exit_code"),
    }
    if full:
        summary["record"] = record
    return summary


async def down(manifest: Manifest) -> list[str]:
    """Stop the front and every revision.

    Raises:
        DeployError: a deploy is running (stop it first); the target cannot be stopped.
    """
    async with open_session(manifest) as session:
        for row in session.store.deploys():
            alive = row.pid is not None and procs.is_alive(procs.ProcessRef(row.pid, row.pid_start))
            if row.status == "running" and row.pid != os.getpid() and alive:
                raise DeployError(
                    f"deploy {row.id} (pid {row.pid}) is running; `down` would pull the "
                    "revisions from under it",
                    hint="wait for it, or stop it with Ctrl-C, then run `safeship down`",
                )
        target = session.target
        if not isinstance(target, Lifecycle):
            raise DeployError(
                f"the {target.name} target has no `down`: its revisions live on the provider",
                hint="delete them with the provider's own tools",
            )
        done = session.recovered + await target.down()
        session.audit.append("down", {"target": target.name, "done": done})
        return done
