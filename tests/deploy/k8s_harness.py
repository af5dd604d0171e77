"""A small stand-in for the parts of a cluster that kmock does not run.

kmock emulates the Kubernetes API: it stores objects and answers requests, and runs no
controllers. :class:`Harness` plays, for the objects the Kubernetes target creates:

- **the Deployment controller and the kubelet.** For each Deployment with replicas > 0 it makes
  one Pod per replica, each a REAL local process (``run(image, port)`` gives the argv) on a free
  loopback port. The process gets the pod template's ``env`` and the keys of the Secret named
  in ``envFrom`` (read from the API, base64-decoded), nothing of the test's environment. It
  probes ``readinessProbe``'s path over HTTP and writes the Pod's and the Deployment's status.
  A process that exits gets the container status ``CrashLoopBackOff`` with its exit code, and
  the log's tail (at most 2048 bytes, as ``FallbackToLogsOnError`` takes) as the termination
  message. It is not restarted.
- **pod termination.** On scale-down or deletion the pod leaves the endpoints first, then the
  preStop sleep runs, then SIGTERM; SIGKILL after ``terminationGracePeriodSeconds``. The Pod
  object is deleted once the process is gone.
- **the EndpointSlice controller.** One slice per Service and pod port, listing the pods the
  Service's selector matches (ready or not, and terminating), labelled
  ``kubernetes.io/service-name``.
- **kube-proxy for NodePort Services.** Each NodePort Service gets a node port on 127.0.0.1;
  a TCP forwarder there sends each NEW connection to one ready endpoint (round robin) and
  splices it to that pod for its whole life, as conntrack does. No ready endpoint: the
  connection is closed at once (kube-proxy rejects).

Not simulated: scheduling, images and registries, ReplicaSets, restarts and back-off, the
startup and liveness probes, admission, server-side field defaults, watches, Gateway data
planes (an HTTPRoute's weights are stored, never applied), DNS, networks other than loopback,
RBAC other than :meth:`Cluster.forbid`, and label selectors other than ``key=value`` lists.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import httpx
import kmock

from safeship import procs

__all__ = ["Cluster", "Harness", "Pod", "kubeconfig"]

RESOURCES = {
    "apps/v1/deployments": "Deployment",
    "v1/services": "Service",
    "v1/pods": "Pod",
    "v1/secrets": "Secret",
    "discovery.k8s.io/v1/endpointslices": "EndpointSlice",
    "gateway.networking.k8s.io/v1/httproutes": "HTTPRoute",
    "policy/v1/poddisruptionbudgets": "PodDisruptionBudget",
}
_VERBS = {"LIST": "list", "FETCH": "get", "CREATE": "create", "UPDATE": "patch"}
_VERBS |= {"DELETE": "delete", "WATCH": "watch"}
HARNESS_HEADER = "X-Harness"
PROBE_PERIOD = 0.1
"""Seconds between readiness probes of a pod (a real kubelet's period is 1 s or more)."""


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """kmock's emulator, with label selectors on lists and RBAC refusals on demand."""

    forbidden: set[tuple[str, str]] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource, kind in RESOURCES.items():
            self.resources[resource] = kmock.ResourceInfo(namespaced=True, kind=kind)

    def forbid(self, verb: str, resource: str) -> None:
        """Answer 403 to ``verb`` (get, list, create, patch, delete) on ``resource``
        (``services``, ``deployments.apps``...), as an RBAC denial does."""
        self.forbidden.add((verb, resource))

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is not None and HARNESS_HEADER not in request.headers:
            verb = _VERBS.get(str(request.action.value if request.action else ""), "?")
            qualified = f"{res.plural}.{res.group}" if res.group else str(res.plural)
            if (verb, qualified) in self.forbidden:
                # Refused before kmock stores anything, as the API server's authorizer does.
                user = "system:serviceaccount:ci:deployer"
                message = (
                    f'{qualified} "{request.name or ""}" is forbidden: User "{user}" cannot '
                    f'{verb} resource "{res.plural}" in API group "{res.group}" in the '
                    f'namespace "{request.namespace}"'
                )
                status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1"}
                status |= {"status": "Failure", "message": message, "reason": "Forbidden"}
                status["code"] = 403
                return aiohttp.web.json_response(status, status=403)
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        answer: dict[str, Any] = await super()._serve_list(request)  # type: ignore[assignment]
        wanted = [
            tuple(part.split("=", 1))
            for part in request.params.get("labelSelector", "").split(",")
            if "=" in part
        ]
        answer["items"] = [
            item
            for item in answer["items"]
            if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in wanted)
        ]
        return answer


def kubeconfig(path: Path, server: str, *, context: str = "kmock", namespace: str = "ns") -> Path:
    """A kubeconfig whose context points at the emulator, with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "deployer", "user": {"token": "kmock-token"}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": "kmock", "user": "deployer", "namespace": namespace},
            }
        ],
        "current-context": "elsewhere",
    }
    path.write_text(json.dumps(config))
    return path


@dataclass
class Pod:
    name: str
    namespace: str
    deployment: str
    labels: dict[str, str]
    port: int
    ref: procs.ProcessRef
    log: Path
    ready_path: str
    pre_stop: float
    grace: float
    spawned: float = field(default_factory=time.monotonic)
    ready: bool = False
    ready_at: float | None = None
    crashed: dict[str, Any] | None = None
    terminating: bool = False
    written: dict[str, Any] | None = None
    probed_at: float = 0.0


class Harness:
    """Plays the controllers, the kubelet and kube-proxy over ``cluster`` (see the module).

    Args:
        run: ``(image, port) -> (argv, env)`` of the local process standing in for an image.
        workdir: where the processes run and log.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        run: Callable[[str, int], tuple[list[str], dict[str, str]]],
        workdir: Path,
        interval: float = 0.02,
    ) -> None:
        self.cluster, self.run, self.workdir, self.interval = cluster, run, workdir, interval
        self.pods: dict[str, Pod] = {}
        self.errors: list[str] = []
        self.start_seconds: list[float] = []
        """Spawn to first ready probe of every pod: the simulated pod start."""
        self._proxies: dict[tuple[str, str], tuple[asyncio.Server, int]] = {}
        self._endpoints: dict[tuple[str, str], list[Pod]] = {}
        self._slices: dict[str, Any] = {}
        self._rr = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._numbers = itertools.count(1)

    async def __aenter__(self) -> Harness:
        self._http = httpx.AsyncClient(timeout=1.0)
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pod in self.pods.values():
            await procs.terminate(pod.ref, within=2.0, grace=2.0)
        for server, _ in self._proxies.values():
            server.close()
        if self._http is not None:
            await self._http.aclose()

    # -- the API, as a controller uses it -------------------------------------------------

    async def _api(self, method: str, path: str, body: Any = None) -> Any:
        headers = {HARNESS_HEADER: "1"}
        async with self.cluster.request(method, path, json=body, headers=headers) as response:
            return await response.json() if response.status < 400 else None

    def _objects(self, resource: str) -> list[dict[str, Any]]:
        res = kmock.resource(resource)
        return [
            obj.raw
            for (key_res, _, _), obj in list(self.cluster.objects.items())
            if key_res == res and not obj.deleted
        ]

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self._reconcile()
            except Exception as exc:  # a harness bug must show in the test, not hang it
                self.errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.interval)

    async def _reconcile(self) -> None:
        deployments = {
            (d["metadata"].get("namespace", "ns"), d["metadata"]["name"]): d
            for d in self._objects("apps/v1/deployments")
        }
        for (namespace, name), deployment in deployments.items():
            await self._scale(namespace, name, deployment)
        for pod in list(self.pods.values()):
            if (pod.namespace, pod.deployment) not in deployments and not pod.terminating:
                self._terminate(pod)  # the garbage collector, after the Deployment went
        await asyncio.gather(*(self._observe(pod) for pod in list(self.pods.values())))
        for (namespace, name), deployment in deployments.items():
            await self._deployment_status(namespace, name, deployment)
        await self._endpoint_slices()

    async def _scale(self, namespace: str, name: str, deployment: dict[str, Any]) -> None:
        wanted = int(deployment.get("spec", {}).get("replicas", 1))
        mine = [
            p
            for p in self.pods.values()
            if p.deployment == name and p.namespace == namespace and not p.terminating
        ]
        for pod in mine[wanted:]:
            self._terminate(pod)
        if any(p.crashed for p in mine):
            return  # no restarts: a crashed pod stays in CrashLoopBackOff
        for _ in range(wanted - len(mine)):
            await self._spawn(namespace, name, deployment)

    async def _spawn(self, namespace: str, deployment: str, obj: dict[str, Any]) -> None:
        template = obj["spec"]["template"]
        container = template["spec"]["containers"][0]
        port = procs.free_port()
        argv, extra = self.run(container["image"], port)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env |= extra | {"PYTHONUNBUFFERED": "1"}
        env |= {e["name"]: e.get("value", "") for e in container.get("env") or ()}
        for source in container.get("envFrom") or ():
            env |= self._secret(namespace, source["secretRef"]["name"])
        name = f"{deployment}-{next(self._numbers):05d}"
        log = self.workdir / "pods" / f"{name}.log"
        args = [a.replace("{port}", str(port)) for a in container.get("args") or ()]
        ref = procs.spawn(argv + args, log_path=log, env=env, cwd=self.workdir)
        pre_stop = (container.get("lifecycle") or {}).get("preStop", {}).get("sleep", {})
        pod = Pod(
            name=name,
            namespace=namespace,
            deployment=deployment,
            labels=dict(template["metadata"].get("labels") or {}),
            port=port,
            ref=ref,
            log=log,
            ready_path=container.get("readinessProbe", {}).get("httpGet", {}).get("path", "/"),
            pre_stop=float(pre_stop.get("seconds", 0)),
            grace=float(template["spec"].get("terminationGracePeriodSeconds", 30)),
        )
        self.pods[name] = pod
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": pod.labels},
            "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
            "status": {"phase": "Pending"},
        }
        await self._api("POST", f"/api/v1/namespaces/{namespace}/pods", body)

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        for secret in self._objects("v1/secrets"):
            meta = secret.get("metadata", {})
            if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
                data = {
                    k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()
                }
                return data | dict(secret.get("stringData") or {})
        return {}  # a real kubelet would hold the pod in CreateContainerConfigError

    async def _observe(self, pod: Pod) -> None:
        alive = procs.is_alive(pod.ref)
        if not alive and not pod.terminating and pod.crashed is None:
            code = await self._exit_code(pod)
            tail = "\n".join(procs.tail(pod.log, 80))[-2048:]
            pod.crashed = {"exitCode": code, "reason": "Error", "message": tail}
            pod.ready = False
        elif alive and not pod.terminating and time.monotonic() - pod.probed_at >= PROBE_PERIOD:
            pod.probed_at = time.monotonic()
            assert self._http is not None
            try:
                url = f"http://127.0.0.1:{pod.port}{pod.ready_path}"
                ready = (await self._http.get(url)).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and pod.ready_at is None:
                pod.ready_at = time.monotonic()
                self.start_seconds.append(pod.ready_at - pod.spawned)
            pod.ready = ready
        await self._pod_status(pod)

    async def _exit_code(self, pod: Pod) -> int | None:
        """The exit code, once the process is reaped: /proc can show it gone (a zombie) a
        moment before the status can be collected."""
        for _ in range(200):  # up to 2 s
            code = procs.exit_code(pod.ref.pid)
            if code is not None:
                return code
            await asyncio.sleep(0.01)
        self.errors.append(f"{pod.name}: pid {pod.ref.pid} is gone but its exit code is not")
        return None

    async def _pod_status(self, pod: Pod) -> None:
        if pod.crashed is not None:
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
            container = {"ready": False, "restartCount": 1, "state": state}
            container["lastState"] = {"terminated": pod.crashed}
        else:
            container = {"ready": pod.ready, "restartCount": 0, "state": {"running": {}}}
        status = {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": str(pod.ready)}],
            "containerStatuses": [{"name": "service", **container}],
        }
        if status != pod.written and pod.name in self.pods:
            pod.written = status
            path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status"
            await self._api("PATCH", path, {"status": status})

    async def _deployment_status(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        mine = [p for p in self.pods.values() if p.deployment == name and p.namespace == namespace]
        ready = sum(1 for p in mine if p.ready and not p.terminating)
        available = "True" if ready >= max(1, int(obj["spec"].get("replicas", 1))) else "False"
        status = {
            "observedGeneration": 1,
            "replicas": len(mine),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": len(mine),
            "conditions": [{"type": "Available", "status": available, "reason": "MinimumReplicas"}],
        }
        if obj.get("status") != status:
            path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"
            await self._api("PATCH", path, {"status": status})

    # -- termination ------------------------------------------------------------------------

    def _terminate(self, pod: Pod) -> None:
        pod.terminating = True
        task = asyncio.create_task(self._kill(pod))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kill(self, pod: Pod) -> None:
        # Out of the endpoints at once (the loop rewrites the slices), then preStop, then
        # SIGTERM; the preStop sleep counts inside the grace period.
        await asyncio.sleep(pod.pre_stop)
        await procs.terminate(pod.ref, within=max(0.1, pod.grace - pod.pre_stop), grace=2.0)
        self.pods.pop(pod.name, None)
        await self._api("DELETE", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")

    # -- endpoints and kube-proxy -------------------------------------------------------------

    async def _endpoint_slices(self) -> None:
        wanted: dict[str, dict[str, Any]] = {}
        services = self._objects("v1/services")
        for svc in services:
            meta, spec = svc["metadata"], svc.get("spec") or {}
            namespace, name = meta.get("namespace", "ns"), meta["name"]
            selector = spec.get("selector") or {}
            matched = [
                p
                for p in self.pods.values()
                if p.namespace == namespace
                and selector
                and all(p.labels.get(k) == v for k, v in selector.items())
            ]
            self._endpoints[(namespace, name)] = [
                p for p in matched if p.ready and not p.terminating and not p.crashed
            ]
            for pod in matched:
                slice_name = f"{name}-{pod.port}"
                ready = pod.ready and not pod.terminating and not pod.crashed
                endpoint = {
                    "addresses": ["127.0.0.1"],
                    "conditions": {
                        "ready": ready,
                        "serving": pod.ready and not pod.crashed,
                        "terminating": pod.terminating,
                    },
                    "targetRef": {"kind": "Pod", "name": pod.name, "namespace": namespace},
                }
                wanted[f"{namespace}/{slice_name}"] = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": slice_name,
                        "namespace": namespace,
                        "labels": {"kubernetes.io/service-name": name},
                    },
                    "addressType": "IPv4",
                    "endpoints": [endpoint],
                    "ports": [{"name": "http", "port": pod.port, "protocol": "TCP"}],
                }
            if spec.get("type") == "NodePort":
                await self._node_port(namespace, name, svc)
        for key in list(self._slices):
            if key not in wanted:
                namespace, name = key.split("/", 1)
                del self._slices[key]
                await self._api(
                    "DELETE",
                    f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{name}",
                )
        for key, body in wanted.items():
            if self._slices.get(key) == body:
                continue
            namespace, name = key.split("/", 1)
            base = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
            if key in self._slices:
                await self._api("PATCH", f"{base}/{name}", body)
            else:
                await self._api("POST", base, body)
            self._slices[key] = body
        live = {(s["metadata"].get("namespace", "ns"), s["metadata"]["name"]) for s in services}
        for gone in [k for k in self._proxies if k not in live]:
            server, _ = self._proxies.pop(gone)
            server.close()

    async def _node_port(self, namespace: str, name: str, svc: dict[str, Any]) -> None:
        if (namespace, name) in self._proxies:
            return
        server = await asyncio.start_server(
            lambda r, w: self._forward(namespace, name, r, w), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        self._proxies[(namespace, name)] = (server, port)
        ports = [dict(svc["spec"]["ports"][0], nodePort=port)]
        await self._api(
            "PATCH", f"/api/v1/namespaces/{namespace}/services/{name}", {"spec": {"ports": ports}}
        )

    def routed(self, namespace: str, name: str) -> list[Pod]:
        """The pods the Service's proxy sends new connections to."""
        return list(self._endpoints.get((namespace, name)) or ())

    def node_port(self, namespace: str, name: str) -> int | None:
        entry = self._proxies.get((namespace, name))
        return entry[1] if entry else None

    async def _forward(
        self, namespace: str, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        endpoints = self._endpoints.get((namespace, name)) or []
        if not endpoints:
            writer.close()
            return
        pod = endpoints[next(self._rr) % len(endpoints)]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", pod.port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
