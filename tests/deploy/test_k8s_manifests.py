"""The Kubernetes objects and the reading of the API's answers, with plain values."""

from __future__ import annotations

import json

import pytest

from safeship.deploy.targets import RevisionStatus
from safeship.deploy.targets import k8s_manifests as m

W = m.Workload(
    service="agent", namespace="prod", image="reg/agent:1", secret="agent-secrets",
    drain_seconds=20, grace_seconds=10, pre_stop_seconds=5, env={"SAFESHIP_ENV": "production"},
)  # fmt: skip


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_the_grace_period_covers_the_pre_stop_sleep_the_drain_window_and_a_grace():
    assert m.grace_period(W) == 35
    assert m.deployment(W, "r3")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 35


def test_a_revision_deployment_is_right_for_websockets():
    obj = m.deployment(W, "r3", created=1700000000.5)
    assert obj["metadata"]["name"] == "agent-r3"
    assert obj["spec"]["selector"]["matchLabels"] == {"app": "agent", "revision": "r3"}
    assert obj["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    c = container(obj)
    assert c["startupProbe"]["httpGet"]["path"] == "/health/startup"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["envFrom"] == [{"secretRef": {"name": "agent-secrets"}}]
    assert {"name": "SAFESHIP_REVISION", "value": "r3"} in c["env"]


def test_services_select_one_revision_or_nothing():
    assert m.service(W, "r3")["spec"]["selector"] == {"app": "agent", "revision": "r3"}
    stable = m.service(W, "", name="agent")
    assert stable["metadata"]["name"] == "agent"
    assert stable["spec"]["selector"] == {"app": "agent", "revision": ""}  # matches no pod


def test_the_budget_evicts_one_pod_at_a_time():
    pdb = m.pod_disruption_budget(W)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "agent"}}}


def test_backend_refs_carry_the_percent_of_new_requests():
    assert m.backend_refs(W, "r2", "r1", 10) == [
        {"name": "agent-r2", "port": 8000, "weight": 10},
        {"name": "agent-r1", "port": 8000, "weight": 90},
    ]
    assert m.backend_refs(W, "r2", "r1", 100) == [{"name": "agent-r2", "port": 8000, "weight": 100}]
    with pytest.raises(ValueError):
        m.backend_refs(W, "r2", "r1", 101)


def test_revision_numbers_follow_the_highest_seen():
    assert m.revision_number([]) == 1
    assert m.revision_number(["r1", "r9", "r10", "x", ""]) == 11


def crashed(message: str, code: int = 3) -> dict:
    status = {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": code, "message": message}},
    }
    return {
        "metadata": {"name": "agent-r3-x", "namespace": "prod"},
        "status": {"containerStatuses": [status]},
    }


def test_a_crash_reads_the_startup_failed_line_of_the_termination_message():
    line = {"event": "startup_failed", "phase": "agents", "error": "NameError: x", "hint": "fix"}
    failure = m.start_failure([crashed("INFO starting\n" + json.dumps(line))])
    assert failure is not None
    assert (failure.phase, failure.exit_code, failure.hint) == ("agents", 3, "fix")
    assert failure.error == "CrashLoopBackOff: NameError: x"


def test_a_crash_without_the_line_says_its_last_line_and_how_to_see_more():
    failure = m.start_failure([crashed("Traceback...\nImportError: boom", code=1)])
    assert failure is not None and failure.error == "CrashLoopBackOff: ImportError: boom"
    assert failure.hint == "kubectl -n prod logs agent-r3-x --previous"
    running: dict = {"status": {"containerStatuses": [{"state": {"running": {}}}]}}
    assert m.start_failure([running]) is None


def test_revision_status_from_the_deployment_and_its_pods():
    deployment = {"metadata": {}, "spec": {"replicas": 1}, "status": {"availableReplicas": 1}}
    assert m.revision_status(deployment, [])[0] is RevisionStatus.RUNNING
    starting = {**deployment, "status": {}}
    assert m.revision_status(starting, [])[0] is RevisionStatus.STARTING
    assert m.revision_status(starting, [crashed("x")])[0] is RevisionStatus.FAILED
    served = {**starting, "metadata": {"annotations": {m.ANNOTATION_TRAFFIC: "1"}}}
    assert m.revision_status(served, [crashed("x")])[0] is RevisionStatus.EXITED
    scaled_down = {**deployment, "spec": {"replicas": 0}}
    assert m.revision_status(scaled_down, [{}])[0] is RevisionStatus.DRAINING
    assert m.revision_status(scaled_down, [])[0] is RevisionStatus.STOPPED


def endpoint(pod: str, ready: bool = True) -> dict:
    return {"targetRef": {"name": pod}, "conditions": {"ready": ready}}


def test_a_switch_is_confirmed_only_when_the_slices_list_only_the_new_pods():
    assert m.endpoints_only([{"endpoints": [endpoint("new-1")]}], ["new-1"])[0]
    ok, words = m.endpoints_only([{"endpoints": [endpoint("new-1"), endpoint("old-1")]}], ["new-1"])
    assert not ok and "old-1" in words
    assert not m.endpoints_only([{"endpoints": [endpoint("new-1", ready=False)]}], ["new-1"])[0]
    assert not m.endpoints_only([], ["new-1"])[0]


def test_standalone_objects_select_the_app_without_revisions():
    deployment, svc, pdb = m.standalone(W)
    assert deployment["metadata"]["name"] == svc["metadata"]["name"] == "agent"
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "agent"}}
    assert svc["spec"]["selector"] == {"app": "agent"}
    assert pdb["kind"] == "PodDisruptionBudget"
    assert all(e["name"] != "SAFESHIP_REVISION" for e in container(deployment)["env"])
