"""The SQLite state store, on real files."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeship.deploy.state import StateStore
from safeship.errors import DeployError, TargetError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state" / "state.db") as opened:
        yield opened


def test_revision_ids_are_monotonic_and_rows_round_trip(store: StateStore) -> None:
    first = store.new_revision(created=1.0, app="app.main:app", owner_pid=10, owner_start=7)
    second = store.new_revision(created=2.0)
    assert (first.id, second.id) == ("r1", "r2")
    assert first.status == "starting"
    assert (first.owner_pid, first.owner_start, first.app) == (10, 7, "app.main:app")
    updated = store.update_revision("r1", status="running", port=4100, pid=55, traffic_at=3.0)
    assert (updated.status, updated.port, updated.pid, updated.traffic_at) == (
        "running",
        4100,
        55,
        3.0,
    )
    assert [r.id for r in store.revisions()] == ["r1", "r2"]
    assert store.revision("r3") is None


def test_unknown_fields_and_ids_are_refused(store: StateStore) -> None:
    store.new_revision(created=1.0)
    with pytest.raises(ValueError, match="env"):
        store.update_revision("r1", env="x")  # there is no column for an environment
    with pytest.raises(ValueError, match="read-only"):
        store.update_revision("r1", id="r9")
    with pytest.raises(TargetError, match="no revision 'r7'"):
        store.update_revision("r7", status="running")


def test_front_is_a_single_row_upserted(store: StateStore) -> None:
    assert store.front() is None
    store.set_front(host="127.0.0.1", port=8700, pid=1, pid_start=2, control="/x.sock")
    front = store.set_front(active="r1")
    assert (front.port, front.pid, front.active, front.control) == (8700, 1, "r1", "/x.sock")
    assert store.set_front(active=None).active is None


def test_one_running_deploy_at_a_time(store: StateStore) -> None:
    first = store.begin_deploy(pid=100, pid_start=1, started=1.0, alive=lambda p, s: True)
    assert (first.id, first.status) == ("d1", "running")
    with pytest.raises(DeployError, match=r"deploy d1 \(pid 100\) is still running"):
        store.begin_deploy(pid=101, pid_start=1, started=2.0, alive=lambda p, s: True)
    # A running deploy whose process is gone does not block (recover() marks it).
    second = store.begin_deploy(
        pid=101, pid_start=1, started=2.0, alive=lambda p, s: False, previous="r1"
    )
    assert (second.id, second.previous) == ("d2", "r1")


def test_deploy_records_and_history_order(store: StateStore) -> None:
    for i in range(3):
        d = store.begin_deploy(pid=i, pid_start=None, started=float(i), alive=lambda p, s: False)
        store.update_deploy(d.id, status="promoted", ended=i + 0.5, record={"n": i, "steps": []})
    history = store.deploys()
    assert [d.id for d in history] == ["d3", "d2", "d1"]
    assert history[0].data == {"n": 2, "steps": []}
    assert [d.id for d in store.deploys(limit=2)] == ["d3", "d2"]


def test_wal_mode_and_visibility_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as a, StateStore(path) as b:
        a.new_revision(created=1.0)
        assert [r.id for r in b.revisions()] == ["r1"]
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_concurrent_allocation_never_reuses_an_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    ids: list[str] = []
    lock = threading.Lock()

    def allocate() -> None:
        with StateStore(path) as own:
            for _ in range(10):
                row = own.new_revision(created=0.0)
                with lock:
                    ids.append(row.id)

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ids) == 40
    assert sorted(ids, key=lambda i: int(i[1:])) == [f"r{n}" for n in range(1, 41)]


def test_unopenable_state_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TargetError, match=r"cannot open the deploy state .*file/state\.db"):
        StateStore(blocker / "state.db")


def test_state_directory_is_private(tmp_path: Path) -> None:
    StateStore(tmp_path / "fresh" / "state.db").close()
    assert (tmp_path / "fresh").stat().st_mode & 0o077 == 0
