"""A Kubernetes Secret as a secret source (the optional ``kubernetes`` extra).

``k8s:NAMESPACE/SECRET`` reads the Secret through the current kubeconfig context (or the
pod's service account in a cluster); ``k8s:CONTEXT/NAMESPACE/SECRET`` names the context. The
secrets gate fingerprints each key's value like any other consumer's, so a Secret that holds
a different JWT secret than the clients' configuration is found before a deploy. Values are
decoded in memory only; no message ever carries one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SecretError

__all__ = ["KubernetesSecretSource"]

_INSTALL_HINT = "pip install 'safeship[kubernetes]'"


class KubernetesSecretSource:
    """The keys of one Secret (``data`` base64-decoded, then ``stringData``).

    Args:
        path: ``NAMESPACE/SECRET`` or ``CONTEXT/NAMESPACE/SECRET``.
        client: an ``ApiClient`` to use (tests pass one pointed at an emulator).
    """

    def __init__(self, path: str, *, client: Any = None, timeout: float = 10.0) -> None:
        parts = path.removeprefix("k8s:").strip("/").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise SecretError(
                f"invalid Kubernetes secret source 'k8s:{path}'",
                hint="write 'k8s:NAMESPACE/SECRET' or 'k8s:CONTEXT/NAMESPACE/SECRET'",
            )
        self.context = parts[0] if len(parts) == 3 else None
        self.namespace, self.name = parts[-2], parts[-1]
        self.spec = f"k8s:{'/'.join(parts)}"
        self.timeout = timeout
        self._client = client
        self._values: dict[str, str] | None = None

    @classmethod
    def from_spec(
        cls, arg: str, *, root: Path, environ: Mapping[str, str] | None = None
    ) -> KubernetesSecretSource:
        return cls(arg)

    def describe(self) -> str:
        where = f" (context {self.context})" if self.context else ""
        return f"Kubernetes Secret {self.namespace}/{self.name}{where}"

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def _load(self) -> dict[str, str]:
        if self._values is None:
            secret = self._read()
            values: dict[str, str] = {}
            for key, encoded in (secret.get("data") or {}).items():
                try:
                    values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise SecretError(
                        f"key {key} of {self.describe()} is not base64-encoded UTF-8 text",
                        hint="store the secret as text (kubectl create secret generic ... "
                        "--from-literal)",
                    ) from None
            values.update(secret.get("stringData") or {})
            self._values = values
        return self._values

    def _read(self) -> dict[str, Any]:
        try:
            from kubernetes import client as k8s_client
            from kubernetes import config as k8s_config
        except ImportError:
            raise SecretError(
                "the Kubernetes secret source needs the kubernetes client, which is not installed",
                hint=_INSTALL_HINT,
            ) from None
        api = self._client
        if api is None:
            configuration = k8s_client.Configuration()
            try:
                if os.environ.get("KUBERNETES_SERVICE_HOST") and self.context is None:
                    k8s_config.load_incluster_config(client_configuration=configuration)
                else:
                    # $KUBECONFIG read now: the client reads it once, at its import.
                    k8s_config.load_kube_config(
                        config_file=os.environ.get("KUBECONFIG") or None,
                        context=self.context,
                        client_configuration=configuration,
                        persist_config=False,
                    )
            except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
                raise SecretError(
                    f"cannot configure the Kubernetes client to read {self.describe()}: {exc}",
                    hint="check $KUBECONFIG and the context, e.g. kubectl config get-contexts",
                ) from None
            api = k8s_client.ApiClient(configuration)
        path = f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"
        method, url, headers, body, post = api.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        try:
            response = api.call_api(method, url, headers, body, post, _request_timeout=self.timeout)
            raw = response.read()
        except Exception as exc:  # urllib3 errors: the API did not answer in time
            raise SecretError(
                f"could not read {self.describe()}: {type(exc).__name__}",
                hint="check the cluster is reachable (kubectl cluster-info)",
            ) from None
        finally:
            if self._client is None:
                api.close()
        if response.status == 404:
            return {}
        if response.status == 403:
            raise SecretError(
                f"the Kubernetes API refused to get secrets in namespace {self.namespace} (403)",
                hint=f'grant the account verb "get" on resource "secrets" (resourceNames: '
                f'["{self.name}"]) in namespace {self.namespace}',
            )
        if response.status >= 400:
            raise SecretError(f"could not read {self.describe()}: HTTP {response.status}")
        data = json.loads(raw or b"{}")
        return data if isinstance(data, dict) else {}
