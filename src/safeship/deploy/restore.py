"""``safeship rollback``: which revision is the previous good one, and how to get back to it.

When it still runs (a paused deploy left it serving nothing, or a deploy is mid-watch), the
rollback is one switch: at once. When it was drained and stopped after a later promotion,
its code is still in its snapshot: the rollback starts that code as a new revision, verifies
it like any deploy, switches, and drains the current one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import procs
from ..config import current_env
from ..errors import DeployError, SafeshipError
from ._actions import Executor
from .pipeline import DeployResult
from .record import EventSink, Recorder
from .state import DeployRow
from .targets.base import Revision, RevisionSpec, RevisionStatus, TargetState

if TYPE_CHECKING:
    from .operations import Session

__all__ = ["GOOD_STATUSES", "instant_rollback", "previous_good", "restore_spec"]

GOOD_STATUSES = frozenset({"promoted", "restored"})
"""Deploy outcomes that leave their revision known good."""

# Runs uvicorn from the project directory (shared relative data paths, as for any revision)
# while the code comes from the snapshot (PYTHONSAFEPATH keeps the project off sys.path).
_IN_PROJECT = (
    "import os, runpy, sys; os.chdir(sys.argv.pop(1)); sys.argv[0] = 'uvicorn'; "
    "runpy.run_module('uvicorn', run_name='__main__', alter_sys=True)"
)


def previous_good(state: TargetState, deploys: Sequence[DeployRow]) -> Revision | None:
    """The most recently promoted (or restored) revision other than the serving one."""
    promoted = [row.revision for row in deploys if row.status in GOOD_STATUSES and row.revision]
    for revision_id in dict.fromkeys(promoted):
        if revision_id == state.serving:
            continue
        revision = state.revision(revision_id)
        if revision is not None:
            return revision
    return None


def restore_spec(session: Session, goal: Revision) -> tuple[str, RevisionSpec]:
    """The environment and spec that run ``goal``'s code again, from its snapshot.

    Raises:
        DeployError: the snapshot is gone, or the target keeps no snapshots.
    """
    from .operations import revision_spec

    manifest = session.manifest
    origin = next((row for row in session.store.deploys() if row.revision == goal.id), None)
    env = str(origin.data.get("env")) if origin and origin.data.get("env") else current_env()
    snapshot = manifest.resolve(manifest.deploy.state_dir) / "revisions" / goal.id / "src"
    if session.target.name != "local" or not snapshot.is_dir():
        raise DeployError(
            f"cannot restore {goal.id}: it is {goal.status} and its code ({snapshot}) is gone",
            hint="deploy the previous version from source with `safeship deploy --source DIR`",
        )
    spec = revision_spec(manifest, env, snapshot)
    if manifest.service.command:
        return env, spec
    service = manifest.service
    command = (
        sys.executable, "-c", _IN_PROJECT, str(manifest.root), service.app or "",
        "--app-dir", "{snapshot}/" + service.app_dir, "--host", "{host}", "--port", "{port}",
        "--no-use-colors",
    )  # fmt: skip
    env_vars = {**spec.env, "PYTHONSAFEPATH": "1"}
    return env, dataclasses.replace(spec, command=command, env=env_vars)


async def instant_rollback(
    session: Session, state: TargetState, goal: Revision, *, on_event: EventSink | None = None
) -> DeployResult:
    """Switch new connections to ``goal`` (running), then drain the revision that served."""
    store, audit, target = session.store, session.audit, session.target
    serving = state.serving
    me = procs.ProcessRef.current()
    row = store.begin_deploy(
        pid=me.pid,
        pid_start=me.start_time,
        started=time.time(),
        alive=lambda pid, start: procs.is_alive(procs.ProcessRef(pid, start)),
        revision=goal.id,
        previous=serving,
    )
    rec = Recorder(
        kind="rollback",
        on_event=on_event,
        target=target.name,
        env=None,
        previous=serving,
        candidate=goal.id,
        restored_from=goal.id,
        recovered=list(session.recovered),
    )
    rec.set(id=row.id)

    def persist(record: dict[str, Any]) -> None:
        store.update_deploy(row.id, record=record)

    rec.persist = persist
    audit.append("rollback_started", {"deploy": row.id, "from": serving, "to": goal.id})
    rec.begin("switch", f"new connections to {goal.id}")
    try:
        await target.switch(goal.id)
    except SafeshipError as exc:
        rec.end("switch", "failed", exc.message)
        rec.set(error=exc.as_dict())
        outcome, reason, code = "failed", f"could not switch to {goal.id}: {exc.message}", 1
    else:
        rec.mark("switched_at")
        rec.end("switch", "ok", f"new connections go to {goal.id}")
        audit.append(
            "rolled_back", {"deploy": row.id, "manual": True, "from": serving, "to": goal.id}
        )
        if serving is not None and serving != goal.id:
            executor = Executor(target, rec, audit, session.manifest.deploy.drain_seconds)
            serving_revision = state.revision(serving)
            if serving_revision is not None and serving_revision.status is RevisionStatus.RUNNING:
                await executor.stop(serving, drained=True)
        outcome, reason, code = "restored", f"traffic is back on {goal.id}", 0
    record = rec.finish(outcome, reason, exit_code=code)
    store.update_deploy(row.id, status=outcome, ended=time.time(), record=record)
    return DeployResult(record)
