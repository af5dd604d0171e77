"""Canary steps on Kubernetes through a Gateway API HTTPRoute: the first rule's
``backendRefs`` carry the weights between the revisions' own Services ``SVC-rN``."""

from __future__ import annotations

from ...errors import TargetError
from . import k8s_manifests as m
from .kubernetes import KubernetesTarget

__all__ = ["KubernetesGatewayTarget"]

_ROUTES = "/apis/gateway.networking.k8s.io/v1"


class KubernetesGatewayTarget(KubernetesTarget):
    """Canary steps through a Gateway API HTTPRoute: the first rule's ``backendRefs`` carry
    the weights between the revisions' own Services."""

    no_split_reason = None

    async def split(self, new: str, old: str, percent: int) -> None:
        """Send ``percent`` % of new requests to ``new``; returns once the API holds the
        weights (a Gateway applies them to new connections; open ones stay)."""
        await self._route(new, old, percent)

    async def _route(self, new: str, old: str | None, percent: int) -> None:
        name = self.settings.gateway_route
        path = self._path(_ROUTES, "httproutes", str(name))
        route = await self._get(path)
        if route is None:
            raise TargetError(
                f"the HTTPRoute {name} does not exist in namespace {self.namespace}",
                hint="create it attached to your Gateway (docs/kubernetes.md), or remove "
                "[deploy.kubernetes] gateway_route to switch whole",
            )
        rules = list((route.get("spec") or {}).get("rules") or [{}])
        refs = m.backend_refs(self.workload("-"), new, old, percent)
        rules[0] = {**rules[0], "backendRefs": refs}
        await self._call(
            "PATCH", path, {"spec": {"rules": rules}}, content_type="application/merge-patch+json"
        )
        written = (await self._call("GET", path)).get("spec", {}).get("rules", [{}])[0]
        if written.get("backendRefs") != refs:
            raise TargetError(
                f"the HTTPRoute {name} does not hold the weights that were written",
                hint=f"kubectl -n {self.namespace} get httproute {name} -o yaml",
            )
