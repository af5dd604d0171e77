"""The rollback benchmark's Kubernetes scenario: ``safeship deploy --target kubernetes`` (its
own process, through the real ``kubernetes`` client) against kmock, with the tests' harness
(``tests/deploy/k8s_harness.py``) playing the kubelet, the EndpointSlice controller and
kube-proxy: every pod is a real process of the reference backend, and users connect through the
stable Service's node port, so the switch and the rollback move real connections.

Scenarios, as for the local target, under a background load: (1) a good revision r2 replaces
r1: failed connections through the switch and the drain (scale-down: preStop, SIGTERM, 1012),
events lost by drained-and-resumed users; (2) r3 passes verification, then closes every
connection with 1011 ``fault_after`` seconds after its startup: first failing connection ->
traffic back (the stable Service's endpoints list only r2's pods again, as the proxy routes),
the pipeline's own time, failed connections, events lost by resumed users. The harness's simulated pod start (process spawn to first ready probe) is not in
any of them (the rollback returns to a running revision); it is printed apart.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.deploy.k8s_harness import Cluster, Harness, kubeconfig  # noqa: E402

FAULTY = ROOT / "tests" / "fixtures" / "deploy_apps" / "faulty_agent.py"
NS = "bench"
__all__ = ["run_kubernetes"]


def _runner(fault_after: float) -> Callable[[str, int], tuple[list[str], dict[str, str]]]:
    def run(image: str, port: int) -> tuple[list[str], dict[str, str]]:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "faulty_agent:app",
            "--app-dir",
            str(FAULTY.parent),
        ]
        argv += [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-use-colors",
            "--log-level",
            "warning",
        ]
        env = {"PYTHONPATH": str(ROOT / "examples"), "AGENT_SERVICE_RUN_GRACE": "4"}
        if image.endswith(":bad"):
            env["DEPLOY_FAULT_AFTER"] = str(fault_after)
        return argv, env

    return run


def _project(root: Path, server: str, deploy: dict[str, Any]) -> None:
    (root / "app").mkdir(parents=True)
    shutil.copy(FAULTY, root / "app" / "faulty_agent.py")
    config = kubeconfig(root / "kubeconfig.json", server, namespace=NS)
    kubernetes = {
        "namespace": NS, "context": "kmock", "kubeconfig": str(config), "in_cluster": False,
        "secret": "agent-secrets", "service_type": "NodePort",
        "url_template": "http://127.0.0.1:{node_port}", "pre_stop_seconds": 1,
        "poll_interval": 0.05,
    }  # fmt: skip
    lines = [
        "[service]", 'name = "agent"', 'app = "faulty_agent:app"', 'app_dir = "app"',
        "[environments.test]", "[deploy]",
        *(f"{k} = {json.dumps(v)}" for k, v in deploy.items()),
        'probe_send = \'{"type": "ping"}\'', 'probe_expect = { type = "pong" }',
        "[deploy.kubernetes]", *(f"{k} = {json.dumps(v)}" for k, v in kubernetes.items()),
    ]  # fmt: skip
    (root / "safeship.toml").write_text("\n".join(lines) + "\n")


async def _deploy(root: Path, secret: str, image: str, within: float) -> dict[str, Any]:
    env = {**os.environ, "JWT_SECRET_TEST": secret, "PYTHONUNBUFFERED": "1"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeship", "deploy", "--env", "test", "--target", "kubernetes",
        "--image", image, "--skip", "static", "--skip", "legacy", "--json",
        cwd=root, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    finally:
        if proc.returncode is None:
            proc.kill()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"deploy exited {proc.returncode}: {err.decode()[-2000:]}")
    record: dict[str, Any] = json.loads(out)
    return record


async def _watch_endpoints(harness: Harness, seen: dict[str, float], new: str, old: str) -> None:
    """When the stable Service's endpoints (what the proxy routes new connections to) went
    over to ``new``, and when they were back on ``old`` only."""
    while True:
        revisions = {p.labels.get("revision") for p in harness.routed(NS, "agent")}
        now = time.monotonic()
        if revisions == {new}:
            seen.setdefault("switched", now)
        elif revisions == {old} and "switched" in seen:
            seen.setdefault("back", now)
        await asyncio.sleep(0.005)


async def _under_load(
    harness: Harness, load: Any, root: Path, secret: str, image: str, new: str, old: str
) -> tuple[dict[str, Any], Any, dict[str, float]]:
    await load.start()
    await asyncio.sleep(3.0)  # users on the serving revision, mid-stream when it is drained
    seen: dict[str, float] = {}
    watcher = asyncio.create_task(_watch_endpoints(harness, seen, new, old))
    try:
        record = await _deploy(root, secret, image, 120)
        await asyncio.sleep(1.0)  # users after the deploy, on whatever serves now
        result = await load.finish()
    finally:
        watcher.cancel()
    stats = result.stats
    print(
        f"  deploy {record['id']} ({new}): {record['outcome']} in {record['duration_s']:.1f}s; "
        f"{result.users} users, {stats.connects_ok} connects, {stats.events} events, "
        f"{stats.closes.get(1012, 0)} drained (1012), {stats.resumes} resumed runs"
    )
    return record, result, seen


async def run_kubernetes(
    args: Any,
    deploy: dict[str, Any],
    *,
    load_class: Any,
    line: Callable[..., None],
    mark: Callable[[bool], str],
) -> None:
    secret = base64.urlsafe_b64encode(os.urandom(40)).decode()
    settings = {**deploy, "watch_seconds": args.fault_after + 8}
    with tempfile.TemporaryDirectory(prefix="safeship-bench-k8s-") as tmp:
        async with Cluster() as cluster, kmock.Server(cluster) as server:
            root = Path(tmp) / "project"
            _project(root, str(server.url).rstrip("/"), settings)
            data = {"JWT_SECRET_TEST": base64.b64encode(secret.encode()).decode()}
            body = {"metadata": {"name": "agent-secrets", "namespace": NS}, "data": data}
            async with cluster.post(f"/api/v1/namespaces/{NS}/secrets", json=body):
                pass
            run = _runner(args.fault_after)
            async with Harness(cluster, run=run, workdir=Path(tmp) / "node") as harness:
                first = await _deploy(root, secret, "agent:good", 120)
                if first["outcome"] != "promoted":
                    raise SystemExit(f"the first deploy did not promote: {first.get('reason')}")
                port = harness.node_port(NS, "agent")
                url = f"ws://127.0.0.1:{port}/ws"
                print(f"first deploy: r1 promoted in {first['duration_s']:.1f}s; users connect "
                      f"through the stable Service's node port {port}")  # fmt: skip

                print(f"\nKubernetes 1 (kmock + harness): a good revision, under "
                      f"{args.rate:g} connects/s")  # fmt: skip
                load = load_class(url, secret, rate=args.rate, steps=24, delay=0.5)
                record, result, _ = await _under_load(
                    harness, load, root, secret, "agent:good", "r2", "r1"
                )
                failed, lost = result.failed_connections, result.stats.lost
                line("failed client connections (switch + drain)", str(failed),
                     f"goal 0  {mark(failed == 0)}")  # fmt: skip
                line("events lost by drained-and-resumed users", str(lost),
                     f"goal 0  {mark(lost == 0)}")  # fmt: skip

                print(
                    f"\nKubernetes 2: a revision that closes every connection with 1011 "
                    f"{args.fault_after:g} s after its startup, under {args.rate:g} connects/s"
                )
                load = load_class(url, secret, rate=args.rate, steps=24, delay=0.5)
                record, result, seen = await _under_load(
                    harness, load, root, secret, "agent:bad", "r3", "r2"
                )
    first_failure, back = result.first_failure_at, seen.get("back")
    if first_failure is None or back is None:
        line("first failing connection -> traffic back on r2", "n/a", "(no rollback seen)")
    else:
        took = back - first_failure
        line("first failing connection -> traffic back on r2", f"{took:.2f} s",
             f"goal <= 3 s  {mark(took <= 3.0)}")  # fmt: skip
    line(
        "  (the pipeline's own: first failed probe -> traffic back)",
        f"{record.get('time_to_rollback_s') or 0:.2f} s",
    )
    line("failed client connections (new connections)", str(result.failed_connects),
         f"goal <= {args.rate * 3:.0f}  {mark(result.failed_connects <= args.rate * 3)}")  # fmt: skip
    line("open connections the bad revision closed with 1011", str(result.broken_connections))
    lost = result.stats.lost
    line("events lost by resumed users", str(lost), f"goal 0  {mark(lost == 0)}")
    starts = harness.start_seconds
    if starts:
        line(
            "simulated pod start, spawn -> ready (excluded above)",
            f"{min(starts):.2f}-{max(starts):.2f} s",
            f"({len(starts)} pods)",
        )
