"""The Kubernetes API, thinly: plain JSON requests through the official client's
``ApiClient`` (its configuration, auth and TLS), each with a deadline, and API errors turned
into messages that say what to do (a 403 names the verb and resource to grant).

The client is synchronous; the target runs each request in a worker thread, so its
``request_timeout`` bounds every call and the event loop keeps serving probes meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# The extra: without it, this import fails and target_class() says which pip install to run.
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from ...errors import TargetError

if TYPE_CHECKING:
    from ...config import KubernetesConfig

__all__ = ["Api", "ApiError", "api_client"]

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
_PATH = re.compile(
    r"^/apis?/(?:(?P<group>[^/]+)/)?v[^/]+/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?"
)


class ApiError(TargetError):
    """The Kubernetes API answered with an error status."""

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def api_client(settings: KubernetesConfig) -> Any:
    """An ``ApiClient`` from the pod's service account (in a cluster) or a kubeconfig context.

    Raises:
        TargetError: no usable configuration, naming what was tried.
    """
    client, config = k8s_client, k8s_config
    in_cluster = settings.in_cluster
    if in_cluster is None:
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                # $KUBECONFIG read now: the client reads it once, at its import.
                config_file=settings.kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        where = (
            "the pod's service account (in-cluster)"
            if in_cluster
            else f"kubeconfig {settings.kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'}"
            + (f", context {settings.context!r}" if settings.context else "")
        )
        raise TargetError(
            f"cannot configure the Kubernetes client from {where}: {exc}",
            hint="set [deploy.kubernetes] kubeconfig and context, or in_cluster = true in a pod",
        ) from None
    return client.ApiClient(configuration)


class Api:
    """Thin JSON requests through the client's configured transport, each with a deadline."""

    def __init__(self, client: Any, timeout: float) -> None:
        self.client, self.timeout = client, timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        import urllib3

        method_, url, headers, payload, post = self.client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        host = self.client.configuration.host
        try:
            response = self.client.call_api(
                method_, url, headers, payload, post, _request_timeout=self.timeout
            )
            raw = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise TargetError(
                f"the Kubernetes API at {host} did not answer {method} {path}: {exc}",
                hint="check the cluster is reachable (kubectl cluster-info) and the context",
            ) from None
        data = _json(raw)
        if response.status >= 400:
            raise _error(response.status, method, path, data)
        return data

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        """:meth:`request` in a worker thread (its own timeout bounds it)."""
        return await asyncio.to_thread(self.request, method, path, body, **kw)

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist."""
        try:
            return await self.call("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def delete(self, path: str) -> None:
        """Delete the object; one already gone is fine."""
        try:
            await self.call("DELETE", path)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def labelled(self, path: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The objects under ``path`` that carry every one of ``labels``."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        data = await self.call("GET", path, query={"labelSelector": selector})
        return list(data.get("items") or [])

    def close(self) -> None:
        self.client.close()


def _json(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"items": value}


def _error(status: int, method: str, path: str, data: Mapping[str, Any]) -> ApiError:
    match = _PATH.match(path.split("?", 1)[0])
    group = (match.group("group") if match else None) or ""
    resource = match.group("res") if match else path
    namespace = match.group("ns") if match else "?"
    verb = _VERBS.get(method) or ("get" if match and match.group("name") else "list")
    said = str(data.get("message") or data.get("reason") or "").splitlines()[0:1]
    detail = f": {said[0]}" if said else ""
    qualified = f"{resource}.{group}" if group else resource
    if status == 403:
        return ApiError(
            status,
            f"the Kubernetes API refused to {verb} {qualified} in namespace {namespace} "
            f"(403 Forbidden){detail}",
            hint=f'grant the deploying account verb "{verb}" on resource "{resource}" in '
            f'apiGroup "{group}" (a Role in namespace {namespace}; docs/kubernetes.md has '
            "the minimal Role)",
        )
    if status == 401:
        return ApiError(
            status,
            f"the Kubernetes API did not accept the credentials (401){detail}",
            hint="refresh the kubeconfig's credentials, or check the service account token",
        )
    return ApiError(status, f"{method} {path} failed with {status}{detail}")
