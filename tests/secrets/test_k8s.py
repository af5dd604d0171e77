"""The Kubernetes Secret source through the real client against kmock, and the secrets gate
comparing its fingerprints with the other consumers'."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets as random_secrets
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes import client

from safeship.config import load_manifest
from safeship.errors import SecretError
from safeship.gates import GateStatus, build_context
from safeship.gates.secrets_gate import SecretsGate
from safeship.secrets import KubernetesSecretSource, SecretSource, fingerprint

from ..deploy.k8s_harness import Cluster, kubeconfig

SALT = "safeship/tests"


async def _with_secret(data: dict[str, str], check: Any) -> Any:
    async with Cluster() as cluster, kmock.Server(cluster) as server:
        url = str(server.url).rstrip("/")
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = {"metadata": {"name": "agent-secrets", "namespace": "ns"}, "data": encoded}
        async with cluster.post("/api/v1/namespaces/ns/secrets", json=body) as response:
            assert response.status == 200
        return await asyncio.to_thread(check, cluster, url)


def _api(url: str) -> Any:
    return client.ApiClient(client.Configuration(host=url))


def test_reads_the_keys_of_a_secret_and_nothing_of_a_missing_one():
    def check(cluster: Cluster, url: str) -> None:
        source = KubernetesSecretSource("ns/agent-secrets", client=_api(url))
        assert isinstance(source, SecretSource) and source.spec == "k8s:ns/agent-secrets"
        assert source.get("JWT_SECRET_STAGING") == "s3cret-value"
        assert source.get("OTHER") is None
        assert source.describe() == "Kubernetes Secret ns/agent-secrets"
        assert KubernetesSecretSource("ns/absent", client=_api(url)).get("X") is None

    asyncio.run(_with_secret({"JWT_SECRET_STAGING": "s3cret-value"}, check))


def test_a_refusal_names_what_to_grant_and_a_bad_spec_how_to_write_it():
    def check(cluster: Cluster, url: str) -> None:
        cluster.forbid("get", "secrets")
        with pytest.raises(SecretError) as caught:
            KubernetesSecretSource("ns/agent-secrets", client=_api(url)).get("X")
        assert 'verb "get" on resource "secrets"' in (caught.value.hint or "")
        assert "s3cret" not in caught.value.message

    asyncio.run(_with_secret({"X": "s3cret"}, check))
    with pytest.raises(SecretError) as caught:
        KubernetesSecretSource("just-a-name")
    assert "k8s:NAMESPACE/SECRET" in (caught.value.hint or "")


@pytest.mark.parametrize("same", [True, False])
def test_the_secrets_gate_compares_the_secret_with_the_clients(tmp_path: Path, same: bool):
    service = random_secrets.token_urlsafe(48)
    client_value = service if same else random_secrets.token_urlsafe(48)
    (tmp_path / "safeship.toml").write_text(
        f'[service]\nname = "svc"\nfingerprint_salt = "{SALT}"\n'
        '[secrets.JWT_SECRET]\nconsumers = ["env", "k8s:kmock/ns/agent-secrets"]\n'
    )

    def check(cluster: Cluster, url: str) -> Any:
        config = kubeconfig(tmp_path / "kubeconfig.json", url, namespace="ns")
        environ = {"JWT_SECRET_STAGING": client_value, "KUBECONFIG": str(config)}
        manifest = load_manifest(tmp_path / "safeship.toml")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", str(config))
            patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
            return SecretsGate().run(
                build_context(tmp_path, manifest, "staging", base_environ=environ)
            )

    result = asyncio.run(_with_secret({"JWT_SECRET_STAGING": service}, check))
    text = json.dumps(result.as_dict())
    assert service not in text and client_value not in text
    if same:
        assert result.status is GateStatus.PASSED, result.findings
        assert result.summary["fingerprints"]["JWT_SECRET"]["k8s:kmock/ns/agent-secrets"] == (
            fingerprint(service, SALT)
        )
    else:
        assert result.status is GateStatus.FAILED
        [finding] = result.findings
        assert finding.rule == "secret-mismatch"
        assert "k8s:kmock/ns/agent-secrets" in finding.message
