"""The deploy driver with a fake target, a scripted prober, fake gates and a fake clock.

No sockets and no real waiting: the clock moves when the driver sleeps. The state store and
the audit log are the real ones, on tmp_path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from safeship import procs
from safeship.core.canary import Counts
from safeship.core.policy import deploy_gates
from safeship.core.rollout import RolloutPolicy
from safeship.deploy.audit import AuditLog, verify
from safeship.deploy.pipeline import DeployRequest, DeployResult, Pipeline, Services
from safeship.deploy.probes import ProbeOutcome
from safeship.deploy.record import EXIT_CODES, Event, Recorder, exit_code_for
from safeship.deploy.recovery import recover_interrupted
from safeship.deploy.state import StateStore
from safeship.deploy.targets.base import (
    Revision,
    RevisionSpec,
    RevisionStatus,
    StartFailure,
    TargetState,
)
from safeship.errors import DeployError, TargetError
from safeship.gates.model import Finding, GateResult, GateStatus, Tier

S = RevisionStatus
POLICY = RolloutPolicy(
    verify_probes=3,
    verify_interval=0.2,
    ready_timeout=5.0,
    watch_seconds=2.0,
    watch_interval=0.5,
    failure_threshold=3,
    inconclusive_threshold=2,
)
DRAIN = 4.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class FakeTarget:
    """Revisions in a dict; every call logged in ``calls``."""

    name = "fake"

    def __init__(self, clock: Clock, serving: str | None = None) -> None:
        self.clock = clock
        self.revisions: dict[str, Revision] = {}
        self.serving = serving
        self.calls: list[tuple[Any, ...]] = []
        self.start_mode = "ok"
        self.fail_switch: set[str] = set()
        self.on_switch: Callable[[str], None] | None = None
        self.ids = itertools.count(1)
        if serving is not None:
            self.revisions[serving] = self._revision(serving, S.RUNNING, traffic=True)
            next(self.ids)

    @staticmethod
    def _revision(rid: str, status: RevisionStatus, **extra: Any) -> Revision:
        return Revision(rid, f"http://{rid}.local", status, 0.0, **extra)

    async def start(self, spec: RevisionSpec) -> Revision:
        rid = f"r{next(self.ids)}"
        self.calls.append(("start", rid))
        if self.start_mode == "error":
            raise TargetError("the front cannot listen on 127.0.0.1:8700: address in use")
        if self.start_mode == "hang":
            self.calls.append(("cancel-me",))
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        if self.start_mode == "failed":
            failure = StartFailure("NameError: name 'x' is not defined", "agents", "fix it", 3,
                                   ("line 1", "line 2"))  # fmt: skip
            revision = self._revision(rid, S.FAILED, failure=failure, log_path="/tmp/log")
        else:
            revision = self._revision(rid, S.RUNNING)
        self.revisions[rid] = revision
        return revision

    async def switch(self, revision_id: str) -> None:
        self.calls.append(("switch", revision_id))
        if self.on_switch is not None:
            self.on_switch(revision_id)
        if revision_id in self.fail_switch:
            raise TargetError(f"the front refused to switch to {revision_id}")
        self.serving = revision_id

    async def state(self) -> TargetState:
        return TargetState(
            "fake", tuple(self.revisions.values()), self.serving, "http://front.local"
        )

    async def stop(self, revision_id: str, *, drain_seconds: float) -> None:
        self.calls.append(("stop", revision_id, drain_seconds))
        if self.serving == revision_id:
            self.serving = None
        old = self.revisions[revision_id]
        self.revisions[revision_id] = self._revision(revision_id, S.STOPPED, traffic=old.traffic)

    def exit(self, revision_id: str) -> None:
        failure = StartFailure("exited", "database", None, 3, ("boom",))
        self.revisions[revision_id] = self._revision(revision_id, S.EXITED, failure=failure)


Script = Callable[[str, int], "str | ProbeOutcome"]


class FakeProber:
    """``ready(url, n)`` and ``websocket(url, n)`` return a category (or an outcome); ``n``
    counts calls per URL."""

    def __init__(self, ready: Script | None = None, websocket: Script | None = None) -> None:
        self._ready = ready or (lambda url, n: "ok")
        self._ws = websocket or (lambda url, n: "ok")
        self.counts: dict[tuple[str, str], int] = {}
        self.log: list[tuple[str, str, str]] = []

    def _run(self, what: str, script: Script, url: str) -> ProbeOutcome:
        n = self.counts.get((what, url), 0)
        self.counts[(what, url)] = n + 1
        got = script(url, n)
        if isinstance(got, ProbeOutcome):
            outcome = got
        else:
            outcome = ProbeOutcome(got, got, f"{got} #{n}", what=what)
        self.log.append((what, url, outcome.category))
        return outcome

    async def ready(self, base_url: str) -> ProbeOutcome:
        return self._run("ready", self._ready, base_url)

    async def websocket(self, base_url: str) -> ProbeOutcome:
        return self._run("websocket", self._ws, base_url)


def gates(**statuses: str) -> Callable[[Sequence[str]], Any]:
    async def run(names: Sequence[str]) -> list[GateResult]:
        results = []
        for name in names:
            status = GateStatus(statuses.get(name, "passed"))
            findings = []
            if status is GateStatus.FAILED:
                findings = [Finding(name, "F821", "undefined name 'agent'", Tier.BREAKS_STARTUP,
                                    "svc/agents.py", 3, blocking=True)]  # fmt: skip
            error = "ruff is not installed" if status is GateStatus.ERROR else None
            results.append(GateResult(name, status, findings, 0.1, error))
        return results

    return run


class World:
    """One fake deployment world: target, prober, gates, store, audit, clock."""

    def __init__(self, tmp_path: Path, *, serving: str | None = "r1") -> None:
        self.clock = Clock()
        self.target = FakeTarget(self.clock, serving)
        self.prober = FakeProber()
        self.run_gates = gates()
        self.store = StateStore(tmp_path / "state.db")
        self.audit_path = tmp_path / "audit.jsonl"
        self.audit = AuditLog(self.audit_path)
        self.events: list[Event] = []
        self.metrics: Any = None

    def services(self) -> Services:
        return Services(
            self.target,
            self.prober,
            self.run_gates,
            self.store,
            self.audit,
            clock=self.clock,
            wall=lambda: 1_700_000_000.0,
            sleep=self.clock.sleep,
            metrics=self.metrics,
        )

    def pipeline(self, *, skip: tuple[str, ...] = (), force: bool = False,
                 reason: str | None = None, env: str = "test", critical: bool = False,
                 policy: RolloutPolicy = POLICY, **kwargs: Any) -> Pipeline:  # fmt: skip
        request = DeployRequest(env, Path("/src"), skip, force, reason)
        plan = deploy_gates(env, critical, skip, force, reason)
        spec = RevisionSpec(Path("/src"), "svc.main:app", env={"JWT_SECRET": "s" * 40})
        return Pipeline(request, spec, plan, policy, self.services(), drain_seconds=DRAIN,
                        on_event=self.events.append, **kwargs)  # fmt: skip

    def deploy(self, **kwargs: Any) -> DeployResult:
        return asyncio.run(self.pipeline(**kwargs).run())

    def audit_events(self) -> list[str]:
        return [e["event"] for e in self.audit.entries()]

    def target_calls(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.target.calls if c[0] == kind]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def steps(result: DeployResult) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result.record["steps"]}


# -- the happy path -------------------------------------------------------------------------


def test_promotes_then_drains_the_previous_revision(world: World) -> None:
    result = world.deploy()
    assert result.outcome == "promoted" and result.exit_code == 0
    assert world.target.calls == [("start", "r2"), ("switch", "r2"), ("stop", "r1", DRAIN)]
    assert world.target.serving == "r2"
    assert steps(result) == {
        "preflight": "ok", "gates": "ok", "start": "ok", "verify": "ok", "switch": "ok",
        "watch": "ok", "drain": "ok",
    }  # fmt: skip
    record = result.record
    assert (record["previous"], record["candidate"]) == ("r1", "r2")
    # readiness once, then N consecutive WebSocket probes against the revision's own URL
    assert [p["what"] for p in record["verification"]] == ["ready"] + ["websocket"] * 3
    assert all(url == "http://r2.local" for what, url, _ in world.prober.log[1:5])
    # the watch goes through the live URL, for the whole window
    assert {url for what, url, _ in world.prober.log[5:]} == {"http://front.local"}
    assert len(record["watch"]) == int(POLICY.watch_seconds / POLICY.watch_interval) + 1
    assert [g["gate"] for g in record["gates"]] == ["static", "legacy", "secrets"]
    for step in record["steps"]:
        assert step["duration_s"] >= 0 and step["started_s"] >= 0
    row = world.store.deploy(record["id"])
    assert row is not None and row.status == "promoted" and row.revision == "r2"
    assert row.data["outcome"] == "promoted"
    events = world.audit_events()
    assert events[0] == "deploy_started" and events[-1] == "promoted"
    assert events.count("gate_result") == 3
    assert verify(world.audit_path).ok


def test_first_deploy_has_no_preflight_probe_and_nothing_to_drain(tmp_path: Path) -> None:
    world = World(tmp_path, serving=None)
    result = world.deploy()
    assert result.outcome == "promoted"
    assert world.target.calls == [("start", "r1"), ("switch", "r1")]
    assert world.prober.log[0][:2] == ("ready", "http://r1.local")  # no probe of a front


def test_progress_events_cover_every_step_in_order(world: World) -> None:
    world.deploy()
    ended = [e.step for e in world.events if e.kind == "step" and e.status != "running"]
    assert ended == ["preflight", "gates", "start", "verify", "switch", "watch", "drain"]
    assert world.events[-1].kind == "outcome"
    assert any(e.kind == "probe" and e.step == "watch" for e in world.events)
    assert any(e.kind == "gate" for e in world.events)


def test_record_is_written_ahead_of_each_action(world: World) -> None:
    seen: list[str] = []

    def on_switch(revision: str) -> None:
        row = world.store.deploys()[0]
        seen.append(row.data["rollout"]["phase"])

    world.target.on_switch = on_switch
    world.deploy()
    assert seen == ["switching"]


def test_record_holds_no_secret(world: World) -> None:
    result = world.deploy()
    assert "s" * 40 not in json.dumps(result.record)
    assert "s" * 40 not in world.audit_path.read_text()


# -- before anything starts -----------------------------------------------------------------


def test_unhealthy_current_revision_blocks_without_force(world: World) -> None:
    world.prober = FakeProber(ready=lambda url, n: "not_ready" if "front" in url else "ok")
    result = world.deploy()
    assert result.outcome == "blocked" and result.exit_code == 1
    assert world.target.calls == []
    assert "--force --reason" in result.reason
    assert world.audit_events() == ["deploy_started", "deploy_blocked"]


def test_unhealthy_current_revision_with_force_is_audited(world: World) -> None:
    world.prober = FakeProber(ready=lambda url, n: "internal_error" if "front" in url else "ok")
    result = world.deploy(force=True, reason="hotfix for INC-7")
    assert result.outcome == "promoted"
    forced = [e for e in world.audit.entries() if e["event"] == "forced"]
    assert len(forced) == 1
    assert forced[0]["why"] == "hotfix for INC-7"
    assert forced[0]["what"]["health"] == "internal_error"
    assert result.record["forced"] is True
    assert steps(result)["preflight"] == "warning"


def test_failing_gate_blocks_and_nothing_starts(world: World) -> None:
    world.run_gates = gates(static="failed")
    result = world.deploy()
    assert result.outcome == "failed" and result.exit_code == 1
    assert "gates failed: static" in result.reason
    assert world.target.calls == []
    static = next(g for g in result.record["gates"] if g["gate"] == "static")
    assert static["blocking"] == 1 and "svc/agents.py:3" in static["top"][0]


def test_a_skipped_gate_is_audited_with_the_reason(world: World) -> None:
    world.run_gates = gates(static="failed")
    result = world.deploy(skip=("static",), force=True, reason="ruff crash, OPS-9", critical=True)
    assert result.outcome == "promoted"
    skipped = [e for e in world.audit.entries() if e["event"] == "gate_skipped"]
    assert [(e["what"]["gate"], e["why"]) for e in skipped] == [("static", "ruff crash, OPS-9")]
    assert result.record["skipped_gates"] == ["static"]
    assert result.record["gates_skipped"] is True


def test_a_gate_that_cannot_run_pauses(world: World) -> None:
    world.run_gates = gates(secrets="error")
    result = world.deploy()
    assert result.outcome == "paused" and result.exit_code == 1
    assert world.target.calls == []
    assert "inconclusive" in result.reason


def test_another_running_deploy_refuses(world: World) -> None:
    me = procs.ProcessRef.current()  # a live process holds the deploy lock
    world.store.begin_deploy(pid=me.pid, pid_start=me.start_time, started=0.0,
                             alive=lambda pid, start: False)  # fmt: skip
    with pytest.raises(DeployError, match="d1"):
        world.deploy()
    assert world.target.calls == []


# -- the new revision -----------------------------------------------------------------------


def test_start_failure_is_reported_with_phase_hint_and_log(world: World) -> None:
    world.target.start_mode = "failed"
    result = world.deploy()
    assert result.outcome == "failed" and result.exit_code == 1
    failure = result.record["start_failure"]
    assert failure["phase"] == "agents" and failure["exit_code"] == 3
    assert failure["hint"] == "fix it" and failure["log_tail"] == ["line 1", "line 2"]
    assert "failed to start in phase 'agents'" in result.reason
    assert world.target_calls("switch") == []
    assert world.target_calls("stop") == [("stop", "r2", 0.0)]


def test_target_error_at_start_is_a_usage_error(world: World) -> None:
    world.target.start_mode = "error"
    result = world.deploy()
    assert result.outcome == "failed" and result.exit_code == 2
    assert "address in use" in result.record["error"]["message"]
    assert world.target_calls("switch") == []


def test_auth_failure_in_verification_never_gets_traffic(world: World) -> None:
    world.prober = FakeProber(websocket=lambda url, n: "auth" if "r2" in url else "ok")
    result = world.deploy()
    assert result.outcome == "failed"
    assert "failed verification with auth" in result.reason
    assert world.target.calls == [("start", "r2"), ("stop", "r2", 0.0)]
    assert world.target.serving == "r1"


def test_never_ready_is_stopped_at_the_deadline(world: World) -> None:
    world.prober = FakeProber(ready=lambda url, n: "not_ready" if "r2" in url else "ok")
    result = world.deploy()
    assert result.outcome == "failed"
    assert "never became ready within 5s" in result.reason
    assert world.target.calls == [("start", "r2"), ("stop", "r2", 0.0)]
    verify_step = next(s for s in result.record["steps"] if s["name"] == "verify")
    assert verify_step["duration_s"] >= POLICY.ready_timeout


def test_a_revision_that_exits_during_verification_fails_with_its_reason(world: World) -> None:
    def ready(url: str, n: int) -> str:
        if "r2" in url:
            world.target.exit("r2")
            return "unreachable"
        return "ok"

    world.prober = FakeProber(ready=ready)
    result = world.deploy()
    assert result.outcome == "failed"
    assert "exited during verification in phase 'database'" in result.reason
    assert world.target_calls("switch") == []


def test_inconclusive_verification_pauses_without_traffic(world: World) -> None:
    world.prober = FakeProber(websocket=lambda url, n: "inconclusive")
    result = world.deploy()
    assert result.outcome == "paused" and result.exit_code == 1
    assert world.target_calls("switch") == []
    assert world.target.serving == "r1"


# -- after the switch -----------------------------------------------------------------------


def test_failed_switch_restores_the_previous_routing(world: World) -> None:
    world.target.fail_switch = {"r2"}
    result = world.deploy()
    assert result.outcome == "rolled_back" and result.exit_code == 1
    assert world.target_calls("switch") == [("switch", "r2"), ("switch", "r1")]


def test_failures_after_the_switch_roll_back_before_stopping(world: World) -> None:
    world.prober = FakeProber(
        websocket=lambda url, n: "internal_error" if "front" in url and n >= 1 else "ok"
    )
    result = world.deploy()
    assert result.outcome == "rolled_back" and result.exit_code == 1
    # traffic goes back first (that is what makes it fast), then the bad revision drains
    assert world.target.calls == [
        ("start", "r2"), ("switch", "r2"), ("switch", "r1"), ("stop", "r2", DRAIN),
    ]  # fmt: skip
    record = result.record
    # detection: the first failure of the failing streak, one watch interval after the switch
    assert record["detection_after_switch_s"] == pytest.approx(POLICY.watch_interval)
    assert record["time_to_rollback_s"] == pytest.approx(2 * POLICY.watch_interval)
    assert [p["category"] for p in record["watch"]] == ["ok"] + ["internal_error"] * 3
    assert "rolled_back" in world.audit_events()
    assert steps(result)["watch"] == "failed" and steps(result)["rollback"] == "ok"


def test_first_deploy_that_goes_bad_stops_serving_it(tmp_path: Path) -> None:
    world = World(tmp_path, serving=None)
    world.prober = FakeProber(websocket=lambda url, n: "internal_error" if "front" in url else "ok")
    result = world.deploy()
    assert result.outcome == "rolled_back"
    assert world.target.calls[:3] == [("start", "r1"), ("switch", "r1"), ("stop", "r1", 0.0)]
    assert world.target.serving is None


def test_failed_rollback_is_reported(world: World) -> None:
    world.prober = FakeProber(websocket=lambda url, n: "internal_error" if "front" in url else "ok")
    world.target.fail_switch = {"r1"}
    result = world.deploy()
    assert result.outcome == "failed"
    assert "rollback failed" in result.reason


def test_inconclusive_watch_pauses_and_leaves_traffic(world: World) -> None:
    world.prober = FakeProber(websocket=lambda url, n: "inconclusive" if "front" in url else "ok")
    result = world.deploy()
    assert result.outcome == "paused"
    assert world.target.serving == "r2"
    assert world.target_calls("stop") == []  # neither revision is stopped


# -- Ctrl-C ---------------------------------------------------------------------------------


def cancel_at(url_part: str, at: int) -> Script:
    def script(url: str, n: int) -> str:
        if url_part in url and n == at:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return "ok"

    return script


class CancellingProber(FakeProber):
    async def ready(self, base_url: str) -> ProbeOutcome:
        outcome = await super().ready(base_url)
        await asyncio.sleep(0)
        return outcome

    async def websocket(self, base_url: str) -> ProbeOutcome:
        outcome = await super().websocket(base_url)
        await asyncio.sleep(0)
        return outcome


def test_ctrl_c_before_the_switch_stops_the_new_revision(world: World) -> None:
    world.prober = CancellingProber(websocket=cancel_at("r2", 1))
    result = world.deploy()
    assert result.outcome == "cancelled" and result.exit_code == 130
    assert world.target.calls == [("start", "r2"), ("stop", "r2", 0.0)]
    assert world.target.serving == "r1"
    assert result.record["rollout_outcome"] == "failed"
    assert steps(result)["verify"] == "interrupted"


def test_ctrl_c_after_the_switch_switches_back(world: World) -> None:
    world.prober = CancellingProber(websocket=cancel_at("front", 1))
    result = world.deploy()
    assert result.outcome == "cancelled" and result.exit_code == 130
    assert world.target.calls == [
        ("start", "r2"), ("switch", "r2"), ("switch", "r1"), ("stop", "r2", DRAIN),
    ]  # fmt: skip
    assert world.target.serving == "r1"
    assert result.record["rollout_outcome"] == "rolled_back"


def test_ctrl_c_during_start(world: World) -> None:
    world.target.start_mode = "hang"
    result = world.deploy()
    assert result.outcome == "cancelled" and result.exit_code == 130
    assert world.target_calls("switch") == []
    assert world.target.serving == "r1"


def test_ctrl_c_during_the_preflight_check(world: World) -> None:
    world.prober = CancellingProber(ready=cancel_at("front", 0))
    result = world.deploy()
    assert result.outcome == "cancelled" and result.exit_code == 130
    assert world.target.calls == []


# -- recovering a killed deploy -------------------------------------------------------------


def killed_deploy(world: World, phase: str, **rollout: Any) -> str:
    row = world.store.begin_deploy(pid=1, pid_start=None, started=0.0, alive=lambda p, s: False)
    record = {
        "id": row.id,
        "rollout": {"phase": phase, "previous": "r1", "candidate": "r2", **rollout},
    }
    world.store.update_deploy(row.id, status="interrupted", record=record)
    return row.id


def recover(world: World) -> list[str]:
    return asyncio.run(
        recover_interrupted(
            world.store, world.target, world.audit, policy=POLICY, drain_seconds=DRAIN,
            clock=world.clock,
        )
    )  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "calls"),
    [
        ("watching", [("switch", "r1"), ("stop", "r2", DRAIN)]),
        ("switching", [("switch", "r1"), ("stop", "r2", DRAIN)]),
        ("rolling_back", [("switch", "r1"), ("stop", "r2", DRAIN)]),
        ("verifying", [("stop", "r2", 0.0)]),
        ("promoted", [("stop", "r1", DRAIN)]),
        ("canary", [("switch", "r1"), ("stop", "r2", DRAIN)]),
        ("splitting", [("switch", "r1"), ("stop", "r2", DRAIN)]),
    ],
)
def test_recovery_gives_a_killed_deploy_the_ctrl_c_answer(
    world: World, phase: str, calls: list[tuple[Any, ...]]
) -> None:
    world.target.revisions["r2"] = FakeTarget._revision("r2", S.RUNNING)
    world.target.serving = "r2" if phase in ("watching", "rolling_back") else "r1"
    deploy_id = killed_deploy(world, phase)
    done = recover(world)
    assert world.target.calls == calls
    assert len(done) == 1 and deploy_id in done[0] and phase in done[0]
    row = world.store.deploy(deploy_id)
    assert row is not None and row.data["recovered"]["actions"]
    assert row.data["outcome"] == "interrupted"
    assert world.audit_events() == ["deploy_recovered"]
    assert recover(world) == []  # once only


def test_recovery_ignores_finished_and_running_deploys(world: World) -> None:
    killed_deploy(world, "watching")
    world.store.update_deploy("d1", status="running")
    assert recover(world) == []
    assert world.target.calls == []


# -- the record -----------------------------------------------------------------------------


def test_exit_codes_per_outcome() -> None:
    assert exit_code_for("promoted") == 0 and exit_code_for("restored") == 0
    for outcome in ("rolled_back", "failed", "paused", "blocked", "interrupted"):
        assert EXIT_CODES[outcome] == 1
    assert exit_code_for("cancelled") == 130
    assert exit_code_for("something new") == 1


def test_recorder_times_steps_and_closes_open_ones() -> None:
    clock = Clock()
    saved: list[dict[str, Any]] = []
    rec = Recorder(kind="deploy", clock=clock, persist=lambda r: saved.append(dict(r)))
    rec.begin("gates")
    clock.now += 1.5
    rec.end("gates", "ok", "passed")
    rec.begin("verify")
    clock.now += 0.5
    record = rec.finish("cancelled", "Ctrl-C")
    assert record["steps"][0] == {
        "name": "gates", "status": "ok", "started_s": 0.0, "duration_s": 1.5, "detail": "passed",
    }  # fmt: skip
    assert record["steps"][1]["status"] == "interrupted"
    assert record["exit_code"] == 130 and record["duration_s"] == 2.0
    assert saved and saved[-1]["outcome"] == "cancelled"


# -- canary steps ---------------------------------------------------------------------------

CANARY = replace(POLICY, steps=(10, 50, 100))


class SplitTarget(FakeTarget):
    """A fake target that can split traffic (``TrafficSplit``)."""

    def __init__(self, clock: Clock, serving: str | None = "r1") -> None:
        super().__init__(clock, serving)
        self.fail_split = False

    async def split(self, new: str, old: str, percent: int) -> None:
        self.calls.append(("split", new, old, percent))
        if self.fail_split:
            raise TargetError("the front did not answer")


class FakeMetrics:
    """Counters per URL; ``grow`` adds to them at each read (the candidate's users)."""

    def __init__(self, grow: dict[str, Counts]) -> None:
        self.grow = grow
        self.now: dict[str, Counts] = {}

    async def counts(self, base_url: str) -> Counts | None:
        step = self.grow.get(base_url)
        if step is None:
            return None
        c = self.now.get(base_url, Counts())
        self.now[base_url] = Counts(c.handshakes + step.handshakes, c.denied + step.denied,
                                    c.accepted + step.accepted, c.bad_closes + step.bad_closes)  # fmt: skip
        return self.now[base_url]


@pytest.fixture
def canary_world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.target = SplitTarget(w.clock)
    yield w
    w.store.close()


def test_canary_steps_split_then_switch_then_drain(canary_world: World) -> None:
    w = canary_world
    result = w.deploy(policy=CANARY)
    assert result.outcome == "promoted", result.reason
    assert w.target.calls == [
        ("start", "r2"), ("split", "r2", "r1", 10), ("split", "r2", "r1", 50), ("switch", "r2"),
        ("stop", "r1", DRAIN),
    ]  # fmt: skip
    assert steps(result)["canary"] == "ok"
    record = result.record
    assert record["canary_steps"] == [10, 50]
    # Each step judged the candidate on its own URL, never through the front.
    assert record["canary"] and {
        u for what, u, _ in w.prober.log[5 : 5 + len(record["canary"])]
    } == {"http://r2.local"}
    names = [s["name"] for s in record["steps"]]
    assert names.index("verify") < names.index("canary") < names.index("switch")
    # One step per canary step, each saying how it ended.
    canaries = [s["detail"] for s in record["steps"] if s["name"] == "canary"]
    assert canaries == ["r2 was clean at 10%", "r2 was clean at 50%"]


def test_failure_at_the_ten_percent_step_rolls_back(canary_world: World) -> None:
    w = canary_world
    # Verification passes (3 probes), then the candidate fails its own probes.
    w.prober = FakeProber(
        websocket=lambda url, n: "internal_error" if "r2" in url and n >= 3 else "ok"
    )
    result = w.deploy(policy=CANARY)
    assert result.outcome == "rolled_back" and result.exit_code == 1
    assert w.target.calls == [
        ("start", "r2"), ("split", "r2", "r1", 10), ("switch", "r1"), ("stop", "r2", DRAIN),
    ]  # fmt: skip
    assert "at the 10% step" in result.reason
    assert steps(result)["canary"] == "failed" and steps(result)["rollback"] == "ok"
    record = result.record
    assert [p["category"] for p in record["canary"]] == ["internal_error"] * 3
    assert record["detection_after_traffic_s"] == pytest.approx(0.0)
    assert record["time_to_rollback_s"] is not None and "switch" not in steps(result)


def test_worse_rates_on_the_candidate_roll_back_naming_both_rates(canary_world: World) -> None:
    w = canary_world
    w.metrics = FakeMetrics({
        "http://r2.local": Counts(2, 0, 2, 2),   # every connection closed with 1011
        "http://r1.local": Counts(18, 0, 18, 0),
    })  # fmt: skip
    result = w.deploy(policy=CANARY)
    assert result.outcome == "rolled_back", result.reason
    assert "at the 10% step" in result.reason
    assert "1011/4401/1013 closes" in result.reason and "vs 0/" in result.reason
    last = result.record["canary"][-1]
    assert last["category"] == "internal_error" and last["probe_category"] == "ok"


def test_equal_rates_pass_and_the_record_names_both(canary_world: World) -> None:
    w = canary_world
    w.metrics = FakeMetrics({
        "http://r2.local": Counts(2, 0, 2, 0), "http://r1.local": Counts(18, 0, 18, 0),
    })  # fmt: skip
    result = w.deploy(policy=CANARY)
    assert result.outcome == "promoted", result.reason
    assert "(new vs previous revision)" in result.record["canary"][-1]["detail"]


def test_a_failed_split_restores_the_previous_routing(canary_world: World) -> None:
    w = canary_world
    assert isinstance(w.target, SplitTarget)
    w.target.fail_split = True
    result = w.deploy(policy=CANARY)
    assert result.outcome == "rolled_back"
    assert "the front did not answer" in result.reason
    assert w.target.calls[-2:] == [("switch", "r1"), ("stop", "r2", DRAIN)]


def test_a_target_that_cannot_split_switches_whole_and_says_so_once(world: World) -> None:
    result = world.deploy(policy=CANARY)
    assert result.outcome == "promoted"
    assert world.target.calls == [("start", "r2"), ("switch", "r2"), ("stop", "r1", DRAIN)]
    said = [n for n in result.record["notes"] if "cannot split traffic" in n["detail"]]
    assert len(said) == 1 and "[10, 50, 100]" in said[0]["detail"]


def test_a_first_deploy_with_steps_switches_whole(tmp_path: Path) -> None:
    w = World(tmp_path, serving=None)
    w.target = SplitTarget(w.clock, serving=None)
    result = w.deploy(policy=CANARY)
    assert result.outcome == "promoted"
    assert [c[0] for c in w.target.calls] == ["start", "switch"]
    w.store.close()
