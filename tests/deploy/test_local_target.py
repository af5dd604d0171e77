"""The local target, for real: revisions are uvicorn processes, the front a TCP forwarder."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from safeship import procs
from safeship.config import DeployConfig, Manifest
from safeship.deploy.front import request
from safeship.deploy.targets import (
    Lifecycle,
    RevisionSpec,
    RevisionStatus,
    Target,
    TargetState,
    create_target,
)
from safeship.deploy.targets.local import LocalTarget
from safeship.errors import TargetError, UsageError
from safeship.testing import scaled, wait_until_async

pytestmark = pytest.mark.e2e

SECRET = "local-target-secret-3f1e9c7a5b2d4e6f8a0c"
APP = """
import hashlib, json, os, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

VERSION = {version!r}
if os.environ.get("FAIL_STARTUP"):
    failure = {{"event": "startup_failed", "phase": "services",
               "error": "NameError: name 'agent' is not defined", "hint": "restore the import"}}
    sys.stderr.write(json.dumps(failure) + "\\n")
    sys.exit(3)
if os.environ.get("FAIL_IMPORT"):
    raise RuntimeError("boom at import")


async def info(request):
    secret = os.environ.get("APP_SECRET", "")
    return JSONResponse({{
        "revision": os.environ.get("SAFESHIP_REVISION"),
        "version": VERSION,
        "secret_sha": hashlib.sha256(secret.encode()).hexdigest() if secret else None,
    }})


async def echo(ws):
    await ws.accept()
    while True:
        await ws.send_text(VERSION + ":" + await ws.receive_text())


app = Starlette(routes=[Route("/", info), WebSocketRoute("/ws", echo)])
"""


def write_app(root: Path, version: str) -> None:
    package = root / "svc"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(APP.format(version=version))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write_app(root, "one")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def spec(project: Path, **env: str) -> RevisionSpec:
    return RevisionSpec(source=project, app="svc.main:app", env=env)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(
        tmp_path / "state",
        port=0,
        start_timeout=scaled(20),
        stop_grace=scaled(5),
        op_timeout=scaled(10),
    )
    try:
        yield local
    finally:
        # Clean up every process even when the test failed half-way.
        with contextlib.suppress(Exception):
            asyncio.run(local.down())
        for pid, start in _recorded_pids(local):
            asyncio.run(procs.terminate(procs.ProcessRef(pid, start), within=1, grace=5))
        local.close()


def _recorded_pids(local: LocalTarget) -> list[tuple[int, int | None]]:
    rows = [(r.pid, r.pid_start) for r in local.store.revisions()]
    front = local.store.front()
    if front is not None:
        rows.append((front.pid, front.pid_start))
    return [(pid, start) for pid, start in rows if pid is not None]


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=scaled(5)) as client:
        return await client.get(url)


async def front_url(local: LocalTarget) -> str:
    url = (await local.state()).front_url
    assert url is not None
    return url


def status_of(state: TargetState, revision_id: str) -> RevisionStatus | None:
    revision = state.revision(revision_id)
    return None if revision is None else revision.status


def dead_process() -> procs.ProcessRef:
    """A pid that existed and is gone: the 'deployer' killed with SIGKILL."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ref = procs.ProcessRef.of(child.pid)
    child.wait(timeout=scaled(10))
    return ref


def test_start_switch_start_switch_drain(target: LocalTarget, project: Path) -> None:
    async def scenario() -> None:
        r1 = await target.start(spec(project))
        assert (r1.id, r1.status, r1.traffic) == ("r1", RevisionStatus.RUNNING, False)
        assert (await get(r1.url)).json()["version"] == "one"
        front = await front_url(target)
        assert (await get(front)).status_code == 503  # started with no traffic

        await target.switch(r1.id)
        assert (await get(front)).json()["revision"] == "r1"
        ws_front = front.replace("http", "ws") + "/ws"
        async with connect(ws_front, open_timeout=scaled(5)) as old:
            await old.send("a")
            assert await asyncio.wait_for(old.recv(), scaled(5)) == "one:a"

            write_app(project, "two")  # the snapshot of r1 must not see this
            r2 = await target.start(spec(project))
            assert r2.id == "r2"
            assert (await get(r2.url)).json()["version"] == "two"
            assert (await get(r1.url)).json()["version"] == "one"
            assert (await get(front)).json()["revision"] == "r1"  # still the old one

            await target.switch(r2.id)
            assert (await get(front)).json()["revision"] == "r2"
            await old.send("b")  # opened before the switch: keeps its revision
            assert await asyncio.wait_for(old.recv(), scaled(5)) == "one:b"

            await target.stop(r1.id, drain_seconds=scaled(5))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(old.recv(), scaled(5))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

        state = await target.state()
        assert state.serving == "r2"
        assert state.problems == ()
        by_id = {r.id: r for r in state.revisions}
        assert by_id["r1"].status == RevisionStatus.STOPPED and by_id["r1"].traffic
        assert by_id["r2"].status == RevisionStatus.RUNNING and by_id["r2"].traffic
        snapshot = target.state_dir / "revisions" / "r1" / "src"
        assert (snapshot / "svc" / "main.py").is_file()
        assert not (snapshot / ".git").exists()
        assert "r1 on 127.0.0.1" in (target.state_dir / "revisions" / "r1" / "log").read_text()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("env", "code", "phase", "error"),
    [
        ({"FAIL_STARTUP": "1"}, 3, "services", "NameError: name 'agent' is not defined"),
        ({"FAIL_IMPORT": "1"}, 1, None, "RuntimeError: boom at import"),
    ],
    ids=["startup_failed_line", "crash"],
)
def test_revision_that_exits_during_startup_is_reported(
    target: LocalTarget,
    project: Path,
    env: dict[str, str],
    code: int,
    phase: str | None,
    error: str,
) -> None:
    async def scenario() -> None:
        revision = await target.start(spec(project, **env))
        assert revision.status == RevisionStatus.FAILED
        assert revision.failure is not None
        assert revision.failure.exit_code == code
        assert revision.failure.phase == phase
        assert error in revision.failure.error
        assert any(error in line for line in revision.failure.log_tail)
        if phase:
            assert revision.failure.hint == "restore the import"
        with pytest.raises(TargetError, match="r1 is not running"):
            await target.switch(revision.id)
        state = await target.state()
        assert state.serving is None
        assert state.revision("r1") == revision

    asyncio.run(scenario())


def test_source_that_is_not_the_app_is_refused_before_anything_runs(
    target: LocalTarget, project: Path
) -> None:
    async def scenario() -> None:
        with pytest.raises(TargetError, match="is not the configured app") as refused:
            await target.start(RevisionSpec(source=project, app="other.main:app"))
        assert "other/main.py" in refused.value.message and refused.value.hint
        with pytest.raises(TargetError, match="does not exist"):
            await target.start(RevisionSpec(source=project / "nope", app="svc.main:app"))
        assert target.store.revisions() == []
        assert target.store.front() is None

    asyncio.run(scenario())


def test_secrets_reach_the_process_and_nothing_else(target: LocalTarget, project: Path) -> None:
    async def scenario() -> None:
        revision = await target.start(spec(project, APP_SECRET=SECRET))
        await target.switch(revision.id)
        served = (await get(await front_url(target))).json()
        assert served["secret_sha"] == hashlib.sha256(SECRET.encode()).hexdigest()
        await target.stop(revision.id, drain_seconds=0)
        assert SECRET not in repr(spec(project, APP_SECRET=SECRET))

    asyncio.run(scenario())
    target.close()  # checkpoint the WAL into the file too
    for path in target.state_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_recover_after_the_deployer_was_killed(target: LocalTarget, project: Path) -> None:
    async def scenario() -> None:
        r1 = await target.start(spec(project))
        await target.switch(r1.id)
        dead = dead_process()
        deploy = target.store.begin_deploy(
            pid=dead.pid, pid_start=dead.start_time, started=0.0, alive=lambda p, s: False
        )
        r2 = await target.start(spec(project))
        # The deploy was killed after starting r2, with the front already switched but the
        # switch not yet recorded; then the front itself died. Its pid has been recycled by
        # another live process (ours): the start time tells them apart.
        me = procs.ProcessRef.current()
        assert me.start_time is not None
        target.store.update_revision(r2.id, owner_pid=me.pid, owner_start=me.start_time + 1)
        front = target.store.front()
        assert front is not None and front.control is not None and front.pid is not None
        await request(Path(front.control), {"op": "switch", "port": r2.port})
        assert (await get(await front_url(target))).json()["revision"] == "r2"

        done = await target.recover()
        assert any(f"deploy {deploy.id}" in line and "interrupted" in line for line in done)
        assert any(line.startswith("r2:") and "abandoned" in line for line in done)
        assert any("pointed the front back at r1" in line for line in done), done
        assert (await get(await front_url(target))).json()["revision"] == "r1"
        row2 = target.store.revision("r2")
        assert row2 is not None and row2.pid is not None
        assert not procs.is_alive(procs.ProcessRef(row2.pid, row2.pid_start))
        assert status_of(await target.state(), "r2") == RevisionStatus.ABANDONED
        assert status_of(await target.state(), "r1") == RevisionStatus.RUNNING
        row_deploy = target.store.deploy(deploy.id)
        assert row_deploy is not None and row_deploy.status == "interrupted"

        os.kill(front.pid, signal.SIGKILL)
        await procs.wait_exit(procs.ProcessRef(front.pid, front.pid_start), scaled(10))
        broken = await target.state()
        assert broken.serving is None
        assert any("not running" in p for p in broken.problems)
        done = await target.recover()
        assert any("restarted the front" in line and "serving r1" in line for line in done)
        assert (await get(await front_url(target))).json()["revision"] == "r1"
        assert await target.recover() == []  # nothing left to do

    asyncio.run(scenario())


def test_cancelled_start_leaves_no_process_behind(target: LocalTarget, project: Path) -> None:
    async def scenario() -> None:
        task = asyncio.ensure_future(target.start(spec(project, SLOW_IMPORT="1")))
        row = await wait_until_async(
            lambda: (r := target.store.revision("r1")) is not None and r.pid is not None and r,
            within=20,
            what="the revision process to be spawned",
        )
        ref = procs.ProcessRef(row.pid, row.pid_start)
        assert procs.is_alive(ref)
        task.cancel()  # what Ctrl-C does to the deploy's main task
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not procs.is_alive(ref)
        assert status_of(await target.state(), "r1") == RevisionStatus.ABANDONED

    asyncio.run(scenario())


def test_stopping_the_serving_revision_answers_503_at_once(
    target: LocalTarget, project: Path
) -> None:
    async def scenario() -> None:
        r1 = await target.start(spec(project))
        await target.switch(r1.id)
        await target.stop(r1.id, drain_seconds=0)
        response = await get(await front_url(target))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert (await target.state()).serving is None

    asyncio.run(scenario())


def test_revision_that_dies_is_seen_by_state(target: LocalTarget, project: Path) -> None:
    async def scenario() -> None:
        r1 = await target.start(spec(project))
        await target.switch(r1.id)
        assert r1.pid is not None
        os.killpg(r1.pid, signal.SIGKILL)
        await procs.wait_exit(procs.ProcessRef.of(r1.pid), scaled(10))
        state = await target.state()
        assert status_of(state, "r1") == RevisionStatus.EXITED
        assert any("r1 is recorded as serving but is exited" in p for p in state.problems)
        assert (await get(await front_url(target))).status_code == 503

    asyncio.run(scenario())


def test_down_stops_the_front_and_every_revision(target: LocalTarget, project: Path) -> None:
    async def scenario() -> None:
        r1 = await target.start(spec(project))
        await target.switch(r1.id)
        r2 = await target.start(spec(project))
        url = await front_url(target)
        done = await target.down()
        assert done[:2] == ["stopped r1", "stopped r2"]
        assert done[2].startswith("stopped the front")
        for revision in (r1, r2):
            row = target.store.revision(revision.id)
            assert row is not None and row.status == "stopped"
            assert not procs.is_alive(procs.ProcessRef(row.pid or 0, row.pid_start))
        with pytest.raises(httpx.ConnectError):
            await get(url)
        assert (await target.state()).problems == ()

    asyncio.run(scenario())


def test_front_port_in_use_is_a_clear_error(tmp_path: Path, project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        local = LocalTarget(tmp_path / "state", port=port, op_timeout=scaled(10))
        try:
            with pytest.raises(TargetError, match=f"port {port} on 127.0.0.1 is already in use"):
                asyncio.run(local.start(spec(project)))
            assert local.store.revisions() == []
        finally:
            local.close()


def test_unknown_revision_names_the_known_ones(target: LocalTarget) -> None:
    target.store.new_revision(created=0.0)
    with pytest.raises(TargetError, match=r"no revision 'r9'.*known: r1"):
        asyncio.run(target.stop("r9", drain_seconds=0))


def test_registry_builds_the_local_target_from_the_manifest(tmp_path: Path) -> None:
    manifest = Manifest(root=tmp_path, deploy=DeployConfig(port=8799, state_dir="st"))
    local = create_target("local", manifest)
    assert isinstance(local, LocalTarget)
    assert isinstance(local, Target) and isinstance(local, Lifecycle)
    assert (local.port, local.state_dir) == (8799, tmp_path / "st")
    with pytest.raises(UsageError, match=r"unknown deploy target 'heroku'.*local"):
        create_target("heroku", manifest)


def test_custom_command_gets_port_host_and_snapshot(target: LocalTarget, project: Path) -> None:
    command = (sys.executable, "-m", "uvicorn", "svc.main:app", "--app-dir", "{snapshot}")
    custom = RevisionSpec(
        source=project,
        app="svc.main:app",
        command=(*command, "--host", "{host}", "--port", "{port}"),
    )

    async def scenario() -> None:
        revision = await target.start(custom)
        assert revision.status == RevisionStatus.RUNNING
        assert (await get(revision.url)).json()["revision"] == revision.id

    asyncio.run(scenario())


def test_split_sends_a_share_of_new_connections_then_a_switch_or_stop_ends_it(
    target: LocalTarget, project: Path
) -> None:
    async def scenario() -> None:
        r1 = await target.start(spec(project))
        await target.switch(r1.id)
        write_app(project, "two")
        r2 = await target.start(spec(project))
        front = await front_url(target)
        with pytest.raises(TargetError, match=r"1\.\.99 percent"):
            await target.split(r2.id, r1.id, 100)
        with pytest.raises(TargetError, match="r2 is not the serving revision"):
            await target.split(r1.id, r2.id, 10)

        await target.split(r2.id, r1.id, 20)
        landed = [(await get(front)).json()["revision"] for _ in range(10)]
        assert landed.count("r2") == 2 and landed.count("r1") == 8
        state = await target.state()
        assert state.serving == "r1"  # the previous revision still serves the rest
        assert any("20% of new connections" in p for p in state.problems)
        canary = state.revision("r2")
        assert canary is not None and canary.traffic

        await target.stop(r2.id, drain_seconds=0)  # a stopped canary gets nothing more
        assert {(await get(front)).json()["revision"] for _ in range(5)} == {"r1"}
        assert (await target.state()).problems == ()

    asyncio.run(scenario())
