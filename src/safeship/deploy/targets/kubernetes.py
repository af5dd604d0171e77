"""The Kubernetes target: each revision a Deployment ``SVC-rN`` and a Service ``SVC-rN``
selecting only it; the stable Service ``SVC`` selects the serving revision.

The objects are built by the pure functions of ``k8s_manifests`` and sent thinly with the
official ``kubernetes`` client's ``ApiClient`` (its configuration, auth and TLS; plain dicts
in and out, so one code path serves core, apps, discovery and Gateway API objects). The
client is synchronous: every request runs in a worker thread with the client's own timeout
(``request_timeout``), so no call waits without a deadline and the event loop keeps serving
probes meanwhile.

The state lives on the server: a fresh target finds the revisions (Deployments labelled
``app=SVC``), who serves (the stable Service's selector) and every pod's state from the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ... import procs
from ...errors import TargetError
from . import k8s_manifests as m
from .base import Revision, RevisionSpec, RevisionStatus, StartFailure, TargetState
from .k8s_api import Api, ApiError, api_client

if TYPE_CHECKING:
    from ...config import KubernetesConfig, Manifest

__all__ = ["ApiError", "KubernetesTarget", "api_client"]

_CORE, _APPS = "/api/v1", "/apis/apps/v1"
_SLICES = "/apis/discovery.k8s.io/v1"
_ROUTES = "/apis/gateway.networking.k8s.io/v1"


class KubernetesTarget:
    """Revisions as Deployments. Without a Gateway HTTPRoute it offers no traffic split:
    canary steps switch whole (:class:`KubernetesGatewayTarget` splits)."""

    name = "kubernetes"
    no_split_reason: str | None = (
        "canary steps on Kubernetes need a Gateway API HTTPRoute: set [deploy.kubernetes] "
        "gateway_route"
    )

    def __init__(
        self,
        settings: KubernetesConfig,
        *,
        service: str,
        drain_seconds: float = 10.0,
        grace_seconds: float = 10.0,
        ready_timeout: float = 30.0,
        health_prefix: str = "/health",
        env: Mapping[str, str] | None = None,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self.service, self.namespace = service, settings.namespace
        self.drain_seconds, self.grace_seconds = drain_seconds, grace_seconds
        self.ready_timeout, self.health_prefix = ready_timeout, health_prefix
        self.env = dict(env or {})
        self._client = client
        self._api: Api | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> KubernetesTarget:
        deploy = manifest.deploy
        settings = deploy.kubernetes
        kind = KubernetesTarget
        if settings.gateway_route:
            from .k8s_gateway import KubernetesGatewayTarget

            kind = KubernetesGatewayTarget
        return kind(
            settings,
            service=manifest.service.name,
            drain_seconds=deploy.drain_seconds,
            grace_seconds=deploy.stop_grace_seconds,
            ready_timeout=deploy.ready_timeout,
            health_prefix=manifest.service.health_prefix,
        )

    @property
    def api(self) -> Api:
        if self._api is None:
            client = self._client if self._client is not None else api_client(self.settings)
            self._api = Api(client, self.settings.request_timeout)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    async def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        return await self.api.call(method, path, body, **kw)

    async def _get(self, path: str) -> dict[str, Any] | None:
        return await self.api.get(path)

    async def _delete(self, path: str) -> None:
        await self.api.delete(path)

    async def _list(self, base: str, plural: str, **labels: str) -> list[dict[str, Any]]:
        return await self.api.labelled(self._path(base, plural), labels)

    def _path(self, base: str, plural: str, name: str = "") -> str:
        return f"{base}/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")

    def workload(self, image: str, args: tuple[str, ...] = ()) -> m.Workload:
        s = self.settings
        return m.Workload(
            service=self.service,
            namespace=self.namespace,
            image=image,
            port=s.port,
            replicas=s.replicas,
            secret=s.secret,
            drain_seconds=self.drain_seconds,
            grace_seconds=self.grace_seconds,
            pre_stop_seconds=s.pre_stop_seconds,
            health_prefix=self.health_prefix,
            service_type=s.service_type,
            env=self.env,
            args=args,
        )

    # -- Target ---------------------------------------------------------------------------

    async def start(self, spec: RevisionSpec) -> Revision:
        """Create ``SVC-rN`` (Deployment and Service, no traffic); return once available or
        failed. Secrets reach the pod through ``envFrom: secretRef`` only: of ``spec.env`` (which
        holds the caller's secret values) only ``SAFESHIP_ENV`` is written into the object.

        Raises:
            TargetError: no image, or the API refused (a 403 names the verb to grant).
        """
        image = spec.image or self.settings.image
        if not image:
            raise TargetError(
                "the kubernetes target runs images, and none was given",
                hint="pass --image IMG, or set [deploy.kubernetes] image",
            )
        args = tuple(
            part.replace("{port}", str(self.settings.port)).replace("{host}", "0.0.0.0")
            for part in spec.command or ()
        )
        workload = self.workload(image, args)
        if spec.env.get("SAFESHIP_ENV"):
            # The one variable taken from the caller: which environment this is. Everything
            # else in spec.env may be a secret, and secrets come from the Secret.
            env = {**workload.env, "SAFESHIP_ENV": spec.env["SAFESHIP_ENV"]}
            workload = dataclasses.replace(workload, env=env)
        revision = await self._next_revision(workload)
        created = time.time()
        # A request in flight runs to its end in its thread even when the start is cancelled:
        # shielded, so a Ctrl-C waits for the Deployment to exist before removing it (removed
        # earlier, the late create would leave it behind).
        create = asyncio.ensure_future(
            self._call(
                "POST",
                self._path(_APPS, "deployments"),
                m.deployment(workload, revision, created=created, owner=_owner()),
            )
        )
        try:
            await asyncio.shield(create)
            await self._call("POST", self._path(_CORE, "services"), m.service(workload, revision))
            return await self._wait_available(revision, created)
        except asyncio.CancelledError:
            # Ctrl-C mid-start: leave nothing half-started behind, then let it propagate.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(create, self.settings.request_timeout)
            await self._remove(revision)
            raise
        except TargetError:
            await self._remove(revision)
            raise

    async def _next_revision(self, workload: m.Workload) -> str:
        """``rN`` after every revision ever started: the stable Service keeps the count in an
        annotation (deleted Deployments leave no label behind, and an id is never reused)."""
        path = self._path(_CORE, "services", self.service)
        stable = await self._get(path)
        if stable is None:
            # Created selecting nothing: it serves once a revision is switched to.
            stable = await self._call(
                "POST", self._path(_CORE, "services"), m.service(workload, "", name=self.service)
            )
        existing = await self._list(_APPS, "deployments", app=self.service)
        seen = [d["metadata"].get("labels", {}).get(m.LABEL_REVISION, "") for d in existing]
        last = (stable.get("metadata", {}).get("annotations") or {}).get(m.ANNOTATION_LAST)
        seen.append(f"r{last}" if last else "")
        number = m.revision_number(seen)
        patch = {"metadata": {"annotations": {m.ANNOTATION_LAST: str(number)}}}
        await self._call("PATCH", path, patch, content_type="application/merge-patch+json")
        return f"r{number}"

    async def _wait_available(self, revision: str, created: float) -> Revision:
        name = f"{self.service}-{revision}"
        deadline = time.monotonic() + self.ready_timeout
        while True:
            deployment = await self._get(self._path(_APPS, "deployments", name))
            if deployment is None:
                raise TargetError(
                    f"deployment {name} disappeared while starting",
                    hint=f"someone deleted it; see kubectl -n {self.namespace} get events",
                )
            pods = await self._list(_CORE, "pods", app=self.service, revision=revision)
            status, failure = m.revision_status(deployment, pods)
            if status is RevisionStatus.RUNNING:
                url = self._url(name, await self._get(self._path(_CORE, "services", name)))
                if url is not None:
                    return self._revision(deployment, status, None, url)
            elif status is RevisionStatus.FAILED:
                return self._revision(deployment, status, failure, "")
            if time.monotonic() >= deadline:
                conditions = (deployment.get("status") or {}).get("conditions") or []
                said = "; ".join(
                    f"{c.get('type')}: {c.get('message') or c.get('reason')}" for c in conditions
                )
                failure = StartFailure(
                    f"deployment {name} not available within {self.ready_timeout:g}s"
                    + (f" ({said})" if said else ""),
                    hint=f"kubectl -n {self.namespace} describe deployment {name}",
                )
                return self._revision(deployment, RevisionStatus.FAILED, failure, "")
            await asyncio.sleep(self.settings.poll_interval)

    async def switch(self, revision_id: str) -> None:
        """Point the stable Service ``SVC`` at the revision; returns once its EndpointSlices
        list only that revision's pods (and at least one is ready)."""
        name = f"{self.service}-{revision_id}"
        deployment = await self._get(self._path(_APPS, "deployments", name))
        pods = await self._list(_CORE, "pods", app=self.service, revision=revision_id)
        status = m.revision_status(deployment, pods)[0] if deployment else None
        if deployment is None or status is not RevisionStatus.RUNNING:
            raise TargetError(
                f"revision {revision_id} is not running ({status or 'no deployment ' + name}); "
                "traffic was not moved",
                hint="start a new revision with `safeship deploy`",
            )
        await self._select(revision_id)
        await self._route(revision_id, None, 100)
        if m.ANNOTATION_TRAFFIC not in (deployment["metadata"].get("annotations") or {}):
            patch = {"metadata": {"annotations": {m.ANNOTATION_TRAFFIC: f"{time.time():.3f}"}}}
            await self._call(
                "PATCH",
                self._path(_APPS, "deployments", name),
                patch,
                content_type="application/merge-patch+json",
            )
        await self._wait_endpoints(revision_id)

    async def _select(self, revision: str) -> None:
        path = self._path(_CORE, "services", self.service)
        if await self._get(path) is None:
            stable = m.service(self.workload("-"), revision, name=self.service)
            await self._call("POST", self._path(_CORE, "services"), stable)
            return
        patch = {"spec": {"selector": {m.LABEL_APP: self.service, m.LABEL_REVISION: revision}}}
        await self._call(
            "PATCH", path, patch, content_type="application/strategic-merge-patch+json"
        )

    async def _route(self, new: str, old: str | None, percent: int) -> None:
        """Without a Gateway route there are no weights to set."""

    async def _wait_endpoints(self, revision: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            slices = await self._list(
                _SLICES, "endpointslices", **{"kubernetes.io/service-name": self.service}
            )
            pods = await self._list(_CORE, "pods", app=self.service, revision=revision)
            names = [p["metadata"]["name"] for p in pods]
            ok, words = m.endpoints_only(slices, names)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"the Service {self.service} selects {revision}, but its EndpointSlices "
                    f"do not list only {revision}'s pods after {self.ready_timeout:g}s ({words})",
                    hint=f"kubectl -n {self.namespace} get endpointslices "
                    f"-l kubernetes.io/service-name={self.service}",
                )
            await asyncio.sleep(self.settings.poll_interval)

    async def state(self) -> TargetState:
        deployments = await self._list(_APPS, "deployments", app=self.service)
        pods = await self._list(_CORE, "pods", app=self.service)
        services = {
            s["metadata"]["name"]: s for s in await self._list(_CORE, "services", app=self.service)
        }
        stable = await self._get(self._path(_CORE, "services", self.service))
        selected = ((stable or {}).get("spec") or {}).get("selector", {}).get(m.LABEL_REVISION)
        revisions, problems = [], []
        for deployment in deployments:
            labels = deployment["metadata"].get("labels") or {}
            if labels.get(m.LABEL_APP) != self.service or m.LABEL_REVISION not in labels:
                continue  # a server that ignores label selectors (defence, not policy)
            revision = labels[m.LABEL_REVISION]
            own = [
                p for p in pods
                if (p["metadata"].get("labels") or {}).get(m.LABEL_REVISION) == revision
            ]  # fmt: skip
            status, failure = m.revision_status(deployment, own)
            name = deployment["metadata"]["name"]
            url = self._url(name, services.get(name)) or ""
            revisions.append(self._revision(deployment, status, failure, url))
        revisions.sort(key=lambda r: m.revision_number([r.id]))
        ids = {r.id: r for r in revisions}
        serving = selected if selected in ids else None
        if selected and serving is None:
            problems.append(
                f"the Service {self.service} selects {selected}, which has no Deployment: "
                "nothing serves"
            )
        elif serving is not None and ids[serving].status is not RevisionStatus.RUNNING:
            problems.append(f"{serving} is serving but is {ids[serving].status}")
        return TargetState(
            self.name, tuple(revisions), serving, self._front_url(stable), tuple(problems)
        )

    async def stop(self, revision_id: str, *, drain_seconds: float) -> None:
        """Scale ``SVC-rN`` to 0 (its pods get the preStop sleep, then SIGTERM, and drain
        within ``terminationGracePeriodSeconds``), wait for them to go, then delete the
        Deployment and its Service. Stopping the serving revision first points the stable
        Service at nothing, so no new connection reaches a draining pod."""
        stable = await self._get(self._path(_CORE, "services", self.service))
        selector = ((stable or {}).get("spec") or {}).get("selector") or {}
        if selector.get(m.LABEL_REVISION) == revision_id:
            await self._select("")
        name = f"{self.service}-{revision_id}"
        try:
            await self._call(
                "PATCH",
                self._path(_APPS, "deployments", name),
                {"spec": {"replicas": 0}},
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
        within = m.grace_period(self.workload("-")) + self.settings.request_timeout
        deadline = time.monotonic() + within
        left: list[dict[str, Any]] = []
        while True:
            left = await self._list(_CORE, "pods", app=self.service, revision=revision_id)
            if not left or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.settings.poll_interval)
        await self._remove(revision_id)
        if left:
            raise TargetError(
                f"{len(left)} pod(s) of {revision_id} still terminating after {within:g}s; "
                f"the Deployment {name} was deleted anyway",
                hint=f"kubectl -n {self.namespace} get pods -l app={self.service},"
                f"revision={revision_id}",
            )

    # -- Lifecycle ------------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Delete the revisions a killed command left behind: never given traffic, not
        serving, and started by a process of this host that is gone. Revisions started on
        another host are only named (their process cannot be checked from here)."""
        state = await self.state()
        deployments = await self._list(_APPS, "deployments", app=self.service)
        owners = {
            (d["metadata"].get("labels") or {}).get(m.LABEL_REVISION): (
                d["metadata"].get("annotations") or {}
            ).get(m.ANNOTATION_OWNER)
            for d in deployments
        }
        done: list[str] = []
        for revision in state.revisions:
            owner = owners.get(revision.id)
            if revision.traffic or revision.id == state.serving or not owner:
                continue
            host, _, process = owner.partition("/")
            if host != socket.gethostname():
                done.append(
                    f"{revision.id} was started by {owner} on another host and never given "
                    f"traffic; left alone (`safeship` there cleans it up, or delete "
                    f"deployment {self.service}-{revision.id})"
                )
                continue
            pid, _, start = process.partition("/")
            ref = procs.ProcessRef(int(pid), int(start) if start.isdigit() else None)
            if pid.isdigit() and not procs.is_alive(ref):
                await self.stop(revision.id, drain_seconds=0)
                done.append(
                    f"{revision.id}: started by pid {pid}, which is gone, and never given "
                    "traffic; deleted"
                )
        return done

    async def down(self, *, drain_seconds: float = 0.0) -> list[str]:
        """Point the stable Service at nothing, then stop every revision."""
        done: list[str] = []
        if await self._get(self._path(_CORE, "services", self.service)) is not None:
            await self._select("")
            done.append(f"the Service {self.service} selects no revision")
        for revision in (await self.state()).revisions:
            await self.stop(revision.id, drain_seconds=drain_seconds)
            done.append(f"stopped {revision.id}")
        return done

    async def _remove(self, revision: str) -> None:
        name = f"{self.service}-{revision}"
        await self._delete(self._path(_APPS, "deployments", name))
        await self._delete(self._path(_CORE, "services", name))

    # -- reading --------------------------------------------------------------------------

    def _url(self, name: str, service: Mapping[str, Any] | None) -> str | None:
        """The URL of a Service through ``url_template``; ``None`` while a node port it
        needs is not assigned yet."""
        ports = ((service or {}).get("spec") or {}).get("ports") or [{}]
        node_port = ports[0].get("nodePort")
        template = self.settings.url_template
        if "{node_port}" in template and node_port is None:
            return None
        return template.format(
            name=name, namespace=self.namespace, port=self.settings.port, node_port=node_port
        )

    def _front_url(self, stable: Mapping[str, Any] | None) -> str | None:
        if self.settings.front_url:
            return self.settings.front_url
        return self._url(self.service, stable) if stable is not None else None

    def _revision(
        self,
        deployment: Mapping[str, Any],
        status: RevisionStatus,
        failure: StartFailure | None,
        url: str,
    ) -> Revision:
        meta = deployment.get("metadata", {})
        annotations = meta.get("annotations") or {}
        try:
            created = float(annotations.get(m.ANNOTATION_CREATED, 0))
        except ValueError:
            created = 0.0
        return Revision(
            id=(meta.get("labels") or {}).get(m.LABEL_REVISION, meta.get("name", "?")),
            url=url,
            status=status,
            created=created,
            traffic=m.ANNOTATION_TRAFFIC in annotations,
            failure=failure,
        )


def _owner() -> str:
    me = procs.ProcessRef.current()
    return f"{socket.gethostname()}/{me.pid}/{me.start_time or ''}"
