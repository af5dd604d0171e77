"""A Cloud Run service YAML that suits a WebSocket service built on safeship.

Pure: the manifest in, a Knative ``serving.knative.dev/v1`` Service document out (what
``gcloud run services replace`` takes). ``safeship cloudrun render`` prints it; the
deploy-config gate passes it (tests/cli/test_cloudrun.py renders, then gates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Manifest

__all__ = ["PORT", "service_document", "to_yaml"]

PORT = 8080
"""Cloud Run's default ``PORT``."""
_MAX_TIMEOUT = 3600
_AFFINITY = "run.googleapis.com/sessionAffinity"


def _secret_ref(reference: str) -> dict[str, str]:
    secret, _, version = reference.rpartition(":")
    return {"name": secret.rsplit("/", 1)[-1], "key": version}


def service_document(manifest: Manifest, *, image: str, env: str | None = None) -> dict[str, Any]:
    """The service YAML as a dict.

    - startup probe ``GET <health>/startup`` (200 only once every phase succeeded), every
      second for up to a minute; liveness ``GET <health>/live``;
    - the request timeout covers ``[service] longest_session_seconds`` (Cloud Run's maximum
      is 3600 s: past it, clients must reconnect);
    - HTTP/1.1 to the container (``http1``): the WebSocket upgrade is an HTTP/1.1 request;
    - session affinity when ``[service] needs_session_affinity``;
    - secrets as Secret Manager references (``[deploy.cloudrun] secrets``), never values.
    """
    service, cloudrun = manifest.service, manifest.deploy.cloudrun
    prefix = service.health_prefix.rstrip("/")
    variables: list[dict[str, Any]] = []
    if env is not None:
        variables.append({"name": "SAFESHIP_ENV", "value": env})
    variables += [{"name": k, "value": v} for k, v in sorted(cloudrun.env.items())]
    variables += [
        {"name": k, "valueFrom": {"secretKeyRef": _secret_ref(ref)}}
        for k, ref in sorted(cloudrun.secrets.items())
    ]
    container: dict[str, Any] = {
        "image": image,
        "ports": [{"name": "http1", "containerPort": PORT}],
        "startupProbe": {
            "httpGet": {"path": f"{prefix}/startup", "port": PORT},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": f"{prefix}/live", "port": PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
    }
    if variables:
        container["env"] = variables
    annotations = {"run.googleapis.com/startup-cpu-boost": "true"}
    if service.needs_session_affinity:
        annotations[_AFFINITY] = "true"
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": cloudrun.service or service.name,
            "annotations": {"run.googleapis.com/ingress": "all"},
        },
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    # A WebSocket is one request for its whole life: allow many per instance.
                    "containerConcurrency": 250,
                    "timeoutSeconds": min(
                        _MAX_TIMEOUT, int(-(-service.longest_session_seconds // 1))
                    ),
                    "containers": [container],
                },
            },
        },
    }


def to_yaml(document: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
