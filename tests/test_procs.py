"""Process helpers on real processes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from safeship import procs
from safeship.testing import scaled, wait_until

pytestmark = pytest.mark.e2e

IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(1)\n"
)
LISTENS = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "time.sleep(60)\n"
)


def test_identity_needs_the_same_start_time() -> None:
    me = procs.ProcessRef.current()
    assert procs.is_alive(me)
    if me.start_time is None:
        pytest.skip("no /proc: start times unavailable")
    # The same pid with another start time is a different (recycled) process.
    assert not procs.is_alive(procs.ProcessRef(me.pid, me.start_time + 1))


def test_spawned_child_logs_and_is_reaped_with_its_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(7)"
    ref = procs.spawn(
        [sys.executable, "-c", code], log_path=log, env=dict(os.environ), banner="--- start"
    )
    assert asyncio.run(procs.wait_exit(ref, scaled(10)))
    assert procs.exit_code(ref.pid) == 7
    assert not procs.is_alive(ref)
    assert not Path(f"/proc/{ref.pid}").exists() or not procs.is_alive(ref)
    assert procs.tail(log) == ["--- start", "out", "err"]
    assert os.getsid(0) != ref.pid  # it had its own session


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    ref = procs.spawn([sys.executable, "-c", IGNORES_SIGTERM], log_path=log, env=dict(os.environ))

    wait_until(lambda: procs.tail(log) == ["ready"], timeout=10, what="the child to be ready")
    assert asyncio.run(procs.terminate(ref, within=0.2, grace=scaled(10)))
    assert not procs.is_alive(ref)
    assert procs.exit_code(ref.pid) == -9


def test_wait_port_outcomes(tmp_path: Path) -> None:
    port = procs.free_port()
    env = dict(os.environ)
    listening = procs.spawn(
        [sys.executable, "-c", LISTENS, str(port)], log_path=tmp_path / "l.log", env=env
    )
    exits = procs.spawn([sys.executable, "-c", "pass"], log_path=tmp_path / "e.log", env=env)
    silent = procs.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "s.log", env=env
    )
    try:
        assert asyncio.run(procs.wait_port(listening, "127.0.0.1", port, scaled(10))) == "listening"
        closed = procs.free_port()  # nothing listens there
        assert asyncio.run(procs.wait_port(exits, "127.0.0.1", closed, scaled(10))) == "exited"
        assert asyncio.run(procs.wait_port(silent, "127.0.0.1", closed, 0.2)) == "timeout"
    finally:
        for ref in (listening, exits, silent):
            asyncio.run(procs.terminate(ref, within=scaled(5)))


def test_tail_of_a_missing_or_long_file(tmp_path: Path) -> None:
    assert procs.tail(tmp_path / "missing") == []
    log = tmp_path / "long.log"
    log.write_text("".join(f"line {i}\n\n" for i in range(100)))
    assert procs.tail(log, 3) == ["line 97", "line 98", "line 99"]
