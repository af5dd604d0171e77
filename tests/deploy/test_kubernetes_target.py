"""The Kubernetes target through the real ``kubernetes`` client, against kmock (an API
emulator) with ``k8s_harness`` playing the kubelet, the endpoints controller and kube-proxy:
every pod is a real process of the reference service, so probes, switches and drains are real
on the data plane. What this cannot prove is in docs/kubernetes.md ("Limits")."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pytest

from safeship.config import KubernetesConfig, Manifest, load_manifest
from safeship.deploy.operations import deploy, down, status
from safeship.deploy.pipeline import DeployRequest
from safeship.deploy.targets import (
    Lifecycle,
    Revision,
    RevisionSpec,
    RevisionStatus,
    Target,
    TargetState,
    TrafficSplit,
    create_target,
)
from safeship.deploy.targets.k8s_gateway import KubernetesGatewayTarget
from safeship.deploy.targets.kubernetes import KubernetesTarget, api_client
from safeship.errors import TargetError
from safeship.probe import probe_http
from safeship.testing import scaled, wait_until_async

from .k8s_harness import Cluster, Harness, kubeconfig

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAULTY = ROOT / "tests" / "fixtures" / "deploy_apps" / "faulty_agent.py"
SECRET = "k8s-target-secret-6c1d0e9a7b3f45e2a8d4c6b0"
NS = "ns"
SKIP = ("static", "legacy")  # the secrets gate runs: the env holds the clients' secret
# What each image tag runs: the reference service behind the fault hook, good or not.
IMAGES: dict[str, dict[str, str]] = {
    "agent:good": {},
    "agent:bad": {"DEPLOY_FAULT_AFTER": "3"},  # passes verification, fails after the switch
    "agent:broken": {"AGENT_SERVICE_FAULT": "agents"},  # exits 3 in phase agents
}


def run_image(image: str, port: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "uvicorn", "faulty_agent:app", "--app-dir", str(FAULTY.parent)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-use-colors"]
    env = {"PYTHONPATH": str(ROOT / "examples"), **IMAGES[image]}
    return argv, env


@dataclass
class Env:
    cluster: Cluster
    harness: Harness
    root: Path
    server: str

    @property
    def manifest(self) -> Manifest:
        return load_manifest(self.root / "safeship.toml")

    def target(self, **settings: Any) -> KubernetesTarget:
        target = create_target("kubernetes", self.manifest)
        assert isinstance(target, KubernetesTarget)
        return target

    def objects(self, resource: str) -> list[dict[str, Any]]:
        res = kmock.resource(resource)
        return [
            o.raw
            for (r, _, _), o in list(self.cluster.objects.items())
            if r == res and not o.deleted
        ]

    def selector(self) -> dict[str, str]:
        stable = [s for s in self.objects("v1/services") if s["metadata"]["name"] == "agent"]
        return stable[0]["spec"]["selector"] if stable else {}

    async def deploy(self, image: str) -> dict[str, Any]:
        result = await deploy(
            self.manifest,
            DeployRequest("test", self.root, skip=SKIP),
            target_name="kubernetes",
            image=image,
        )
        return result.record


def write_project(root: Path, server: str, **kubernetes: Any) -> None:
    (root / "app").mkdir(parents=True)
    shutil.copy(FAULTY, root / "app" / "faulty_agent.py")
    config = kubeconfig(root / "kubeconfig.json", server, namespace=NS)
    settings = {
        "namespace": NS,
        "context": "kmock",
        "kubeconfig": str(config),
        "in_cluster": False,
        "secret": "agent-secrets",
        "service_type": "NodePort",
        "url_template": "http://127.0.0.1:{node_port}",
        "pre_stop_seconds": 0,
        "poll_interval": 0.05,
        **kubernetes,
    }
    lines = [
        "[service]",
        'name = "agent"',
        'app = "faulty_agent:app"',
        'app_dir = "app"',
        "[environments.test]",
        "[deploy]",
        'target = "kubernetes"',
        "ready_timeout = 40",
        "verify_probes = 3",
        "verify_interval = 0.1",
        "watch_seconds = 6",
        "watch_interval = 0.2",
        "failure_threshold = 2",
        "steps = [10, 100]",  # no Gateway route: every deploy switches whole, and says why
        "drain_seconds = 1",
        "stop_grace_seconds = 2",
        "probe_timeout = 3",
        'probe_send = \'{"type": "ping"}\'',
        'probe_expect = { type = "pong" }',
        "[deploy.kubernetes]",
        *(f"{k} = {json.dumps(v)}" for k, v in settings.items()),
    ]
    (root / "safeship.toml").write_text("\n".join(lines) + "\n")


@contextlib.asynccontextmanager
async def cluster_env(tmp_path: Path, **kubernetes: Any) -> AsyncIterator[Env]:
    async with Cluster() as cluster, kmock.Server(cluster) as server:
        url = str(server.url).rstrip("/")
        root = tmp_path / "project"
        write_project(root, url, **kubernetes)
        data = {"JWT_SECRET_TEST": base64.b64encode(SECRET.encode()).decode()}
        secret = {"metadata": {"name": "agent-secrets", "namespace": NS}, "data": data}
        async with cluster.post(f"/api/v1/namespaces/{NS}/secrets", json=secret) as response:
            assert response.status == 200
        async with Harness(cluster, run=run_image, workdir=tmp_path / "node") as harness:
            yield Env(cluster, harness, root, url)
            assert harness.errors == []


@pytest.fixture(autouse=True)
def _probe_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # The clients' (and so the probes') secret; the pods get theirs from the Secret only.
    monkeypatch.setenv("JWT_SECRET_TEST", SECRET)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, scaled(150)))


def spec(image: str) -> RevisionSpec:
    return RevisionSpec(source=Path("."), app="faulty_agent:app", image=image)


def revision_in(state: TargetState, revision_id: str) -> Revision:
    found = state.revision(revision_id)
    assert found is not None, f"no {revision_id} in {state}"
    return found


async def answers(url: str) -> bool:
    return (await probe_http(f"{url}/health/ready", timeout=2)).verdict.category.value == "ok"


# -- through the pipeline ------------------------------------------------------------------


def test_good_deploys_switch_the_stable_service_and_drain_the_old_revision(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            first = await env.deploy("agent:good")
            assert first["outcome"] == "promoted", first.get("reason")
            assert env.selector() == {"app": "agent", "revision": "r1"}
            second = await env.deploy("agent:good")
            assert second["outcome"] == "promoted", second.get("reason")
            said = [n["detail"] for n in second["notes"] if "cannot split" in n["detail"]]
            assert len(said) == 1 and "need a Gateway API HTTPRoute" in said[0]
            assert env.selector()["revision"] == "r2"
            names = {d["metadata"]["name"] for d in env.objects("apps/v1/deployments")}
            assert names == {"agent-r2"}  # r1 drained, scaled to 0, deleted
            assert not [p for p in env.harness.pods.values() if p.deployment == "agent-r1"]
            slices = env.objects("discovery.k8s.io/v1/endpointslices")
            stable = [
                s
                for s in slices
                if s["metadata"]["labels"]["kubernetes.io/service-name"] == "agent"
            ]
            assert [e["targetRef"]["name"] for s in stable for e in s["endpoints"]] == [
                p.name for p in env.harness.pods.values() if p.deployment == "agent-r2"
            ]
            state = await env.target().state()
            assert state.serving == "r2" and state.problems == ()
            assert await answers(state.front_url or "")
            # The secret reached the pods through envFrom only: no object holds its value.
            stored = json.dumps(env.objects("apps/v1/deployments") + env.objects("v1/pods"))
            assert SECRET not in stored
            container = env.objects("apps/v1/deployments")[0]["spec"]["template"]["spec"]
            assert container["containers"][0]["envFrom"] == [
                {"secretRef": {"name": "agent-secrets"}}
            ]
            report = await status(env.manifest)
            assert report["ok"] and report["serving"] == "r2"
            assert report["health"]["front"]["category"] == "ok"
            stopped = await down(env.manifest)
            assert "stopped r2" in stopped
            assert env.objects("apps/v1/deployments") == [] and env.selector()["revision"] == ""

    run(scenario())


def test_a_revision_in_crashloopbackoff_fails_the_deploy_with_exit_code_and_message(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            assert (await env.deploy("agent:good"))["outcome"] == "promoted"
            record = await env.deploy("agent:broken")
            assert record["outcome"] == "failed", record
            failure = record["start_failure"]
            assert failure["revision"] == "r2"
            assert failure["exit_code"] == 3
            assert failure["phase"] == "agents"
            assert failure["error"].startswith("CrashLoopBackOff: ")
            assert "AGENT_SERVICE_FAULT" in failure["error"]
            assert env.selector()["revision"] == "r1"  # never switched
            names = {d["metadata"]["name"] for d in env.objects("apps/v1/deployments")}
            assert names == {"agent-r1"}  # the failed revision was removed

    run(scenario())


def test_a_revision_that_goes_bad_after_the_switch_is_rolled_back(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            assert (await env.deploy("agent:good"))["outcome"] == "promoted"
            record = await env.deploy("agent:bad")
            assert record["outcome"] == "rolled_back", record.get("reason")
            assert record.get("switched_at_s") is not None  # it did get traffic first
            assert env.selector()["revision"] == "r1"
            state = await env.target().state()
            assert state.serving == "r1"
            assert state.revision("r2") is None  # stopped and deleted
            assert await answers(state.front_url or "")

    run(scenario())


# -- the target on its own -----------------------------------------------------------------


def test_switch_back_moves_new_connections_to_the_previous_revision(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            target = env.target()
            one = await target.start(spec("agent:good"))
            two = await target.start(spec("agent:good"))
            assert (one.id, one.status, two.id, two.status) == ("r1", "running", "r2", "running")
            assert await answers(one.url) and await answers(two.url)
            await target.switch("r2")
            assert (await target.state()).serving == "r2"
            await target.switch("r1")  # the rollback
            state = await target.state()
            assert state.serving == "r1"
            assert revision_in(state, "r1").traffic and revision_in(state, "r2").traffic
            pods = {p.name for p in env.harness.pods.values() if p.deployment == "agent-r1"}
            listed = {
                e["targetRef"]["name"]
                for s in env.objects("discovery.k8s.io/v1/endpointslices")
                if s["metadata"]["labels"]["kubernetes.io/service-name"] == "agent"
                for e in s["endpoints"]
            }
            assert listed == pods
            await target.stop("r2", drain_seconds=0)
            assert (await target.state()).revision("r2") is None
            target.close()

    run(scenario())


def test_a_start_failure_is_data_with_the_startup_failed_line(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            target = env.target()
            revision = await target.start(spec("agent:broken"))
            assert revision.status is RevisionStatus.FAILED
            failure = revision.failure
            assert failure is not None and failure.exit_code == 3 and failure.phase == "agents"
            assert any('"startup_failed"' in line for line in failure.log_tail)
            state = await target.state()
            assert revision_in(state, "r1").status is RevisionStatus.FAILED
            await target.stop("r1", drain_seconds=0)
            target.close()

    run(scenario())


def test_a_missing_rbac_permission_names_the_verb_and_resource_to_grant(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            target = env.target()
            revision = await target.start(spec("agent:good"))
            env.cluster.forbid("patch", "services")
            with pytest.raises(TargetError) as caught:
                await target.switch(revision.id)
            error = caught.value
            assert "refused to patch services in namespace ns (403 Forbidden)" in error.message
            assert 'verb "patch" on resource "services" in apiGroup ""' in (error.hint or "")
            env.cluster.forbidden.clear()
            env.cluster.forbid("create", "deployments.apps")
            record = await env.deploy("agent:good")
            assert record["outcome"] == "failed"
            assert "refused to create deployments.apps" in record["error"]["message"]
            assert (
                'verb "create" on resource "deployments" in apiGroup "apps"'
                in record["error"]["hint"]
            )
            env.cluster.forbidden.clear()
            await target.stop(revision.id, drain_seconds=0)
            target.close()

    run(scenario())


KILLED_START = """
import asyncio, sys
from safeship.config import load_manifest
from safeship.deploy.targets import RevisionSpec, create_target
target = create_target("kubernetes", load_manifest(sys.argv[1]))
asyncio.run(target.start(RevisionSpec(source=".", app="faulty_agent:app", image="agent:good")))
"""


def test_a_deploy_killed_mid_start_is_found_by_a_fresh_target_from_the_api(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            target = env.target()
            await target.start(spec("agent:good"))
            await target.switch("r1")
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", KILLED_START, str(env.root / "safeship.toml"),
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )  # fmt: skip
            try:
                await wait_until_async(
                    lambda: any(
                        d["metadata"]["name"] == "agent-r2"
                        for d in env.objects("apps/v1/deployments")
                    ),
                    within=30,
                    what="the killed deploy's Deployment",
                )
            finally:
                child.send_signal(signal.SIGKILL)
                await asyncio.wait_for(child.wait(), 10)
            fresh = env.target()
            state = await fresh.state()
            assert state.serving == "r1" and state.problems == ()
            assert {r.id for r in state.revisions} == {"r1", "r2"}
            assert not revision_in(state, "r2").traffic
            assert await answers(state.front_url or "")
            assert isinstance(fresh, Lifecycle)
            [said] = await fresh.recover()  # the killed process started r2: it is deleted
            assert said.startswith("r2: started by pid ") and said.endswith("deleted")
            assert {r.id for r in (await fresh.state()).revisions} == {"r1"}
            assert await fresh.recover() == []  # r1 serves: never touched
            assert (await fresh.start(spec("agent:good"))).id == "r3"
            for target_ in (target, fresh):
                target_.close()

    run(scenario())


def test_canary_steps_need_a_gateway_route(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path, gateway_route="agent") as env:
            target = env.target()
            assert isinstance(target, KubernetesGatewayTarget)
            assert isinstance(target, TrafficSplit)
            one = await target.start(spec("agent:good"))
            with pytest.raises(TargetError, match="HTTPRoute agent does not exist"):
                await target.switch(one.id)
            route: dict[str, Any] = {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "agent", "namespace": NS},
                "spec": {
                    "parentRefs": [{"name": "web"}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}],
                },
            }
            async with env.cluster.post(
                f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes", json=route
            ):
                pass
            await target.switch(one.id)
            two = await target.start(spec("agent:good"))
            await target.split(two.id, one.id, 10)
            stored = next(iter(env.objects("gateway.networking.k8s.io/v1/httproutes")))
            rule = stored["spec"]["rules"][0]
            assert rule["matches"] == route["spec"]["rules"][0]["matches"]
            assert rule["backendRefs"] == [
                {"name": "agent-r2", "port": 8000, "weight": 10},
                {"name": "agent-r1", "port": 8000, "weight": 90},
            ]
            for revision in ("r1", "r2"):
                await target.stop(revision, drain_seconds=0)
            target.close()

    run(scenario())
    plain = KubernetesTarget(KubernetesConfig(), service="agent")
    assert isinstance(plain, Target) and not isinstance(plain, TrafficSplit)


def test_client_configuration_errors_name_what_was_tried(tmp_path, monkeypatch):
    config = kubeconfig(tmp_path / "kubeconfig.json", "http://127.0.0.1:9", namespace=NS)
    with pytest.raises(TargetError, match="context 'nope'") as caught:
        api_client(KubernetesConfig(kubeconfig=str(config), context="nope", in_cluster=False))
    assert "kubeconfig" in caught.value.message
    client = api_client(KubernetesConfig(kubeconfig=str(config), context="kmock"))
    assert client.configuration.host == "http://127.0.0.1:9"
    client.close()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(TargetError, match="service account"):
        api_client(KubernetesConfig())  # in a pod by the environment, but no token mounted


def test_an_unreachable_api_is_a_target_error_within_the_request_timeout(tmp_path):
    from safeship.procs import free_port

    config = kubeconfig(tmp_path / "k.json", f"http://127.0.0.1:{free_port()}", namespace=NS)
    settings = KubernetesConfig(kubeconfig=str(config), context="kmock", request_timeout=2)
    target = KubernetesTarget(settings, service="agent")
    with pytest.raises(TargetError, match="did not answer GET"):
        asyncio.run(target.state())
    target.close()


def test_a_start_cancelled_half_way_removes_its_revision(tmp_path):
    async def scenario() -> None:
        async with cluster_env(tmp_path) as env:
            target = env.target()
            starting = asyncio.create_task(target.start(spec("agent:good")))
            await wait_until_async(
                lambda: any(p.deployment == "agent-r1" for p in env.harness.pods.values()),
                within=30,
                what="the revision's pod",
            )
            starting.cancel()  # Ctrl-C while it waits for availability
            with pytest.raises(asyncio.CancelledError):
                await starting
            assert env.objects("apps/v1/deployments") == []
            assert [s["metadata"]["name"] for s in env.objects("v1/services")] == ["agent"]
            await wait_until_async(lambda: not env.harness.pods, within=30, what="pods gone")
            target.close()

    run(scenario())


def test_a_start_without_an_image_says_where_to_give_one():
    target = KubernetesTarget(KubernetesConfig(), service="agent")
    with pytest.raises(TargetError) as caught:
        asyncio.run(target.start(RevisionSpec(source=Path("."), app="faulty_agent:app")))
    assert "--image" in (caught.value.hint or "") and "[deploy.kubernetes] image" in (
        caught.value.hint or ""
    )
