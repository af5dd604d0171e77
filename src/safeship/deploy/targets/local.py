"""The local target: each revision a snapshot of the source tree, run as its own uvicorn
process on a free loopback port, behind the front listener on the stable port.

The front and the revisions are detached: they keep running after the CLI exits, and every
later command finds them through the state store (pid + start time, never a bare pid).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import procs
from ...core.startup import startup_failed_event
from ...errors import TargetError
from ...service.deadline import uvicorn_options
from ..front import control_path, launch, request
from ..state import FrontRow, RevisionRow, StateStore
from .base import (
    LIVE_STATUSES,
    Revision,
    RevisionSpec,
    RevisionStatus,
    StartFailure,
    TargetState,
    missing_app_module,
)

if TYPE_CHECKING:
    from ...config import Manifest

__all__ = ["SNAPSHOT_SKIP", "LocalTarget"]

SNAPSHOT_SKIP = frozenset(
    {".git", ".venv", ".safeship", "__pycache__", "node_modules"}
    | {".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
LOOPBACK = "127.0.0.1"
PORT_ATTEMPTS = 3
MARKER = "--- safeship:"


class LocalTarget:
    """The embedded default target. ``port=0`` lets the front pick a port (tests)."""

    name = "local"

    def __init__(
        self,
        state_dir: Path | str,
        *,
        port: int = 8700,
        host: str = LOOPBACK,
        start_timeout: float = 30.0,
        stop_grace: float = 5.0,
        op_timeout: float = 10.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.host, self.port = host, port
        self.start_timeout, self.stop_grace, self.op_timeout = start_timeout, stop_grace, op_timeout
        self._store: StateStore | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> LocalTarget:
        deploy = manifest.deploy
        return cls(
            manifest.resolve(deploy.state_dir),
            port=deploy.port,
            host=deploy.host,
            start_timeout=deploy.ready_timeout,
            stop_grace=deploy.stop_grace_seconds,
        )

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.state_dir / "state.db")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- Target ---------------------------------------------------------------------------

    async def start(self, spec: RevisionSpec) -> Revision:
        """Snapshot the source, spawn it on a free port, return once it listens or exited.

        Raises:
            TargetError: the source is not the configured app, the snapshot failed, or the
                front cannot listen on its port.
        """
        self._check_source(spec)
        await self._ensure_front()
        owner = procs.ProcessRef.current()
        row = self.store.new_revision(
            created=time.time(),
            app=spec.app,
            source=str(spec.source.resolve()),
            owner_pid=owner.pid,
            owner_start=owner.start_time,
        )
        try:
            return await self._run(spec, row)
        except asyncio.CancelledError:
            # Ctrl-C mid-start: leave no half-started process behind, then let it propagate.
            await self._stop_process(self._require(row.id), 0.0, RevisionStatus.ABANDONED)
            raise

    async def _run(self, spec: RevisionSpec, row: RevisionRow) -> Revision:
        home = self.state_dir / "revisions" / row.id
        snapshot, log = home / "src", home / "log"
        try:
            await asyncio.to_thread(_snapshot, spec.source.resolve(), snapshot, self.state_dir)
        except OSError as exc:
            self.store.update_revision(
                row.id, status=RevisionStatus.FAILED, failure_error=f"snapshot: {exc}"
            )
            raise TargetError(
                f"could not snapshot {spec.source} into {snapshot}: {exc}",
                hint="check free disk space and permissions of the state directory",
            ) from None
        self.store.update_revision(row.id, snapshot=str(snapshot), log=str(log))
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = procs.free_port(LOOPBACK)
            ref = procs.spawn(
                self._argv(spec, snapshot, port),
                log_path=log,
                env=self._env(spec, row.id),
                cwd=spec.source.resolve(),
                banner=f"{MARKER} {row.id} on {LOOPBACK}:{port} (attempt {attempt})",
            )
            self.store.update_revision(row.id, pid=ref.pid, pid_start=ref.start_time, port=port)
            outcome = await procs.wait_port(ref, LOOPBACK, port, self.start_timeout)
            if outcome != "exited":
                # Listening, or still starting past the deadline: the caller's probes decide.
                return self._revision(
                    self.store.update_revision(row.id, status=RevisionStatus.RUNNING)
                )
            lines = _since_marker(procs.tail(log, 60))
            if attempt < PORT_ATTEMPTS and any("address already in use" in x for x in lines):
                continue  # another process took the port between our check and the bind
            failure = _failure(lines, procs.exit_code(ref.pid))
            failed = self.store.update_revision(
                row.id,
                status=RevisionStatus.FAILED,
                exit_code=failure.exit_code,
                failure_phase=failure.phase,
                failure_error=failure.error,
                failure_hint=failure.hint,
                stopped_at=time.time(),
            )
            return self._revision(failed)
        raise AssertionError("unreachable")

    async def switch(self, revision_id: str) -> None:
        """Point the front at the revision; returns once the front confirmed it."""
        row = self._require(revision_id)
        if row.status != RevisionStatus.RUNNING or not self._alive(row):
            raise TargetError(
                f"revision {revision_id} is not running (status {row.status}); "
                "traffic was not moved",
                hint="start a new revision with `safeship deploy`",
            )
        front = await self._ensure_front()
        reply = await self._control(front, {"op": "switch", "port": row.port})
        if not reply.get("ok") or reply.get("backend") != row.port:
            raise TargetError(f"the front refused to switch to {revision_id}: {reply}")
        now = time.time()
        # Recorded only once confirmed: a crash before this line leaves the previous
        # revision recorded, and recover() points the front back at it.
        self.store.set_front(active=revision_id, updated=now)
        if row.traffic_at is None:
            self.store.update_revision(revision_id, traffic_at=now)

    async def split(self, new: str, old: str, percent: int) -> None:
        """A canary step: ``percent`` % of new connections to ``new``, the rest to ``old``
        (which must be the serving revision); returns once the front confirmed it."""
        if not 1 <= percent <= 99:
            raise TargetError(f"a split takes 1..99 percent, got {percent}; 100 is a switch")
        rows = [self._require(revision_id) for revision_id in (new, old)]
        for row in rows:
            if row.status != RevisionStatus.RUNNING or not self._alive(row):
                raise TargetError(
                    f"revision {row.id} is not running (status {row.status}); traffic was not "
                    "split",
                    hint="see `safeship status`",
                )
        front = await self._ensure_front()
        if front.active != old:
            raise TargetError(
                f"{old} is not the serving revision ({front.active or 'nothing'} is); traffic "
                "was not split",
                hint="see `safeship status`",
            )
        port = rows[0].port
        reply = await self._control(front, {"op": "split", "port": port, "percent": percent})
        confirmed = {"port": port, "percent": percent}
        if not reply.get("ok") or reply.get("canary") != confirmed:
            raise TargetError(f"the front refused to send {percent}% to {new}: {reply}")
        if rows[0].traffic_at is None:
            # It has users now: recovery must drain it, never abandon it.
            self.store.update_revision(new, traffic_at=time.time())

    async def state(self) -> TargetState:
        await self._refresh()
        problems: list[str] = []
        front = self.store.front()
        serving = None
        if front is not None and self._front_alive(front):
            try:
                status = await self._control(front, {"op": "status"})
            except TargetError as exc:
                problems.append(str(exc))
            else:
                backend = status.get("backend")
                serving = front.active
                canary = status.get("canary")
                if canary:
                    problems.append(
                        f"the front sends {canary['percent']}% of new connections to port "
                        f"{canary['port']} (a canary step)"
                    )
                if backend != self._port_of(front.active):
                    problems.append(
                        f"the front sends new connections to port {backend}, but the state "
                        f"records {front.active or 'nothing'} as serving; recovery points it "
                        "back at the recorded one"
                    )
        elif front is not None and front.active:
            problems.append(
                f"the front on {front.host}:{front.port} is not running, so nothing serves "
                f"(recorded: {front.active}); the next command restarts it"
            )
        revisions = tuple(self._revision(r) for r in self.store.revisions())
        active = next((r for r in revisions if r.id == serving), None)
        if active is not None and active.status != RevisionStatus.RUNNING:
            problems.append(f"{active.id} is recorded as serving but is {active.status}")
        return TargetState(self.name, revisions, serving, self._front_url(front), tuple(problems))

    async def stop(self, revision_id: str, *, drain_seconds: float) -> None:
        """SIGTERM (the service drains: readiness off, WebSockets closed with 1012), wait
        ``drain_seconds`` plus a grace period, then SIGKILL. Stopping the serving revision
        first points the front at nothing, so new connections get an immediate 503."""
        row = self._require(revision_id)
        front = self.store.front()
        if front is not None and front.active == revision_id:
            if self._front_alive(front):
                await self._control(front, {"op": "switch", "port": None})
            self.store.set_front(active=None, updated=time.time())
        elif front is not None and row.port is not None and self._front_alive(front):
            # A canary being stopped gets no more new connections first.
            status = await self._control(front, {"op": "status"})
            if (status.get("canary") or {}).get("port") == row.port:
                await self._control(front, {"op": "switch", "port": status.get("backend")})
        await self._stop_process(row, drain_seconds, RevisionStatus.STOPPED)

    # -- Lifecycle ------------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Clean up after an interrupted command; returns what was done, in words."""
        done = await self._refresh()
        for deploy in self.store.deploys():
            if deploy.status == "running" and not _alive_pid(deploy.pid, deploy.pid_start):
                self.store.update_deploy(deploy.id, status="interrupted", ended=time.time())
                done.append(f"deploy {deploy.id} (pid {deploy.pid}) was interrupted")
        front = self.store.front()
        active = front.active if front else None
        for row in self.store.revisions():
            orphan = row.traffic_at is None and row.id != active
            if row.status in LIVE_STATUSES and orphan and not self._owner_alive(row):
                await self._stop_process(row, 0.0, RevisionStatus.ABANDONED)
                done.append(
                    f"{row.id}: started by pid {row.owner_pid}, which is gone, and never given "
                    "traffic; stopped and marked abandoned"
                )
        if front is not None and active is not None:
            if not self._front_alive(front):
                front = await self._spawn_front(self._port_of(active))
                done.append(f"restarted the front on {front.host}:{front.port}, serving {active}")
            else:
                backend = (await self._control(front, {"op": "status"})).get("backend")
                port = self._port_of(active)
                if backend != port:
                    await self._control(front, {"op": "switch", "port": port})
                    done.append(f"pointed the front back at {active} (it sent to port {backend})")
        return done

    async def down(self, *, drain_seconds: float = 0.0) -> list[str]:
        """Stop the revisions (new connections get 503 meanwhile), then the front."""
        done: list[str] = []
        front = self.store.front()
        if front is not None and self._front_alive(front):
            await self._control(front, {"op": "switch", "port": None})
        if front is not None:
            self.store.set_front(active=None, updated=time.time())
        for row in self.store.revisions():
            if row.status in LIVE_STATUSES:
                await self._stop_process(row, drain_seconds, RevisionStatus.STOPPED)
                done.append(f"stopped {row.id}")
        if front is not None and front.pid is not None and self._front_alive(front):
            ref = procs.ProcessRef(front.pid, front.pid_start)
            await procs.terminate(ref, within=self.op_timeout, grace=self.stop_grace)
            done.append(f"stopped the front on {front.host}:{front.port}")
        if front is not None:
            self.store.set_front(pid=None, pid_start=None, updated=time.time())
        return done

    # -- revisions ------------------------------------------------------------------------

    def _check_source(self, spec: RevisionSpec) -> None:
        if spec.image is not None:
            raise TargetError(
                "the local target runs source trees, not images", hint="pass --source DIR"
            )
        source = spec.source
        if not source.is_dir():
            raise TargetError(
                f"source directory {source} does not exist",
                hint="pass --source with the project directory that holds the service",
            )
        if spec.command:
            return
        problem = missing_app_module(source, spec.app, spec.app_dir)
        if problem is not None:
            raise TargetError(
                problem,
                hint="run from the project root or pass --source DIR; check [service] app "
                "and app_dir in safeship.toml",
            )

    def _argv(self, spec: RevisionSpec, snapshot: Path, port: int) -> list[str]:
        app_dir = str(snapshot / spec.app_dir)
        if spec.command:
            values = {"{port}": str(port), "{host}": LOOPBACK, "{snapshot}": str(snapshot)}
            argv = list(spec.command)
            for key, value in values.items():  # replace, not format: argv may hold braces
                argv = [part.replace(key, value) for part in argv]
            return argv
        uvicorn = [sys.executable, "-m", "uvicorn", spec.app, "--app-dir", app_dir]
        # uvicorn arms no timer before a response: these options close sockets that never
        # complete a request head (half-open, slowloris) after SAFESHIP_HEAD_TIMEOUT.
        return [
            *uvicorn, "--host", LOOPBACK, "--port", str(port), "--no-use-colors",
            *uvicorn_options(),
        ]  # fmt: skip

    @staticmethod
    def _env(spec: RevisionSpec, revision_id: str) -> dict[str, str]:
        # The working directory is the project, so relative data paths (a SQLite file) are
        # shared by revisions; PYTHONSAFEPATH keeps the live tree off sys.path, so the code
        # comes from the snapshot only.
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1", "SAFESHIP_REVISION": revision_id}
        if not spec.command:
            env["PYTHONSAFEPATH"] = "1"
        return env

    def _require(self, revision_id: str) -> RevisionRow:
        row = self.store.revision(revision_id)
        if row is None:
            known = ", ".join(r.id for r in self.store.revisions()) or "none yet"
            raise TargetError(
                f"no revision {revision_id!r} in {self.state_dir}; known: {known}",
                hint="see `safeship status`",
            )
        return row

    @staticmethod
    def _alive(row: RevisionRow) -> bool:
        return _alive_pid(row.pid, row.pid_start)

    @staticmethod
    def _owner_alive(row: RevisionRow) -> bool:
        return _alive_pid(row.owner_pid, row.owner_start)

    async def _stop_process(self, row: RevisionRow, drain: float, final: RevisionStatus) -> None:
        if row.pid is not None and self._alive(row):
            self.store.update_revision(row.id, status=RevisionStatus.DRAINING)
            ref = procs.ProcessRef(row.pid, row.pid_start)
            if not await procs.terminate(
                ref, within=drain + self.stop_grace, grace=self.stop_grace
            ):
                raise TargetError(
                    f"revision {row.id} (pid {row.pid}) survived SIGKILL",
                    hint=f"inspect the process (ps -o stat -p {row.pid}); it is stuck in the kernel",
                )
        status = (
            row.status if row.status in (RevisionStatus.FAILED, RevisionStatus.ABANDONED) else final
        )
        code = procs.exit_code(row.pid) if row.pid is not None else None
        self.store.update_revision(
            row.id,
            status=status,
            stopped_at=row.stopped_at or time.time(),
            exit_code=row.exit_code if code is None else code,
        )

    async def _refresh(self) -> list[str]:
        """Record revisions that exited on their own since the last look."""
        changed: list[str] = []
        for row in self.store.revisions():
            if row.status not in LIVE_STATUSES or row.pid is None or self._alive(row):
                continue
            status = (
                RevisionStatus.STOPPED
                if row.status == RevisionStatus.DRAINING
                else RevisionStatus.EXITED
            )
            code = procs.exit_code(row.pid)
            found = {}
            if status == RevisionStatus.EXITED and row.log:
                # A service in background startup mode fails after binding: keep its reason.
                event = startup_failed_event(_since_marker(procs.tail(Path(row.log))))
                if event is not None:
                    found = {
                        "failure_phase": event.get("phase"),
                        "failure_error": str(event.get("error") or "startup failed"),
                        "failure_hint": event.get("hint"),
                    }
            self.store.update_revision(
                row.id, status=status, exit_code=code, stopped_at=time.time(), **found
            )
            changed.append(f"{row.id} is no longer running (now {status})")
        return changed

    def _revision(self, row: RevisionRow) -> Revision:
        failure = None
        if row.failure_error:
            tail = _since_marker(procs.tail(Path(row.log))) if row.log else []
            failure = StartFailure(
                row.failure_error, row.failure_phase, row.failure_hint, row.exit_code, tuple(tail)
            )
        return Revision(
            id=row.id,
            url=f"http://{LOOPBACK}:{row.port}" if row.port else "",
            status=RevisionStatus(row.status),
            created=row.created,
            traffic=row.traffic_at is not None,
            port=row.port,
            pid=row.pid,
            log_path=row.log,
            failure=failure,
        )

    def _port_of(self, revision_id: str | None) -> int | None:
        row = self.store.revision(revision_id) if revision_id else None
        return row.port if row is not None and row.status == RevisionStatus.RUNNING else None

    # -- front ----------------------------------------------------------------------------

    def _front_alive(self, front: FrontRow) -> bool:
        return _alive_pid(front.pid, front.pid_start)

    def _front_url(self, front: FrontRow | None) -> str | None:
        if front is not None and front.port:
            return f"http://{front.host}:{front.port}"
        return f"http://{self.host}:{self.port}" if self.port else None

    async def _ensure_front(self) -> FrontRow:
        front = self.store.front()
        if front is not None and self._front_alive(front):
            if self.port and front.port != self.port:
                raise TargetError(
                    f"the front already listens on port {front.port}, not {self.port} as "
                    "configured",
                    hint="run `safeship down` to stop it, then deploy again",
                )
            return front
        return await self._spawn_front(self._port_of(front.active if front else None))

    async def _spawn_front(self, backend: int | None) -> FrontRow:
        ref, status = await launch(
            self.state_dir, host=self.host, port=self.port, backend=backend, within=self.op_timeout
        )
        return self.store.set_front(
            host=self.host,
            port=status["port"],
            pid=ref.pid,
            pid_start=ref.start_time,
            control=str(control_path(self.state_dir)),
            updated=time.time(),
        )

    async def _control(self, front: FrontRow, message: dict[str, Any]) -> dict[str, Any]:
        path = Path(front.control) if front.control else control_path(self.state_dir)
        try:
            return await request(path, message, self.op_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise TargetError(
                f"the front (pid {front.pid}) did not answer on {path}: {exc or 'timeout'}",
                hint="run `safeship status`; `safeship down` then a deploy restarts it",
            ) from None


def _alive_pid(pid: int | None, start: int | None) -> bool:
    return pid is not None and procs.is_alive(procs.ProcessRef(pid, start))


def _snapshot(source: Path, dest: Path, state_dir: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            path = Path(directory) / name
            if name in SNAPSHOT_SKIP or path == state_dir:
                skipped.add(name)
                continue
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                skipped.add(name)  # sockets, fifos: not source
        return skipped

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=ignore, symlinks=True)


def _since_marker(lines: list[str]) -> list[str]:
    """The lines of the latest attempt (after the last ``--- safeship:`` marker)."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(MARKER):
            return lines[index + 1 :]
    return lines


def _failure(lines: list[str], code: int | None) -> StartFailure:
    """From the service's ``startup_failed`` line when present, else the last log line."""
    tail = tuple(lines[-20:])
    event = startup_failed_event(lines)
    if event is not None:
        error = str(event.get("error") or "startup failed")
        return StartFailure(error, event.get("phase"), event.get("hint"), code, tail)
    error = lines[-1].strip() if lines else f"exited with code {code}"
    return StartFailure(error, None, None, code, tail)
