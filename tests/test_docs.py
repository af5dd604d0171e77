"""Docs that must match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safeship.config import (
    AuthConfig,
    BootConfig,
    CloudRunConfig,
    DeployConfig,
    EnvironmentConfig,
    GatesConfig,
    KubernetesConfig,
    MonitorConfig,
    NotifyConfig,
    SecretConfig,
    ServiceConfig,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented_keys(section: str) -> set[str]:
    text = (DOCS / "manifest.md").read_text()
    start = (
        text.index(f"## `[{section}]`")
        if section != "gates.boot"
        else text.index("### `[gates.boot]`")
    )
    body = text[start:]
    following = re.search(r"\n#{2,3} ", body[5:])
    body = body[: following.start() + 5] if following else body
    return set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.M))


@pytest.mark.parametrize(
    ("section", "model"),
    [
        ("service", ServiceConfig),
        ("auth", AuthConfig),
        ("environments.<name>", EnvironmentConfig),
        ("secrets.<NAME>", SecretConfig),
        ("gates", GatesConfig),
        ("gates.boot", BootConfig),
        ("deploy", DeployConfig),
        ("deploy.kubernetes", KubernetesConfig),
        ("deploy.cloudrun", CloudRunConfig),
        ("monitor", MonitorConfig),
        ("notify", NotifyConfig),
    ],
)
def test_manifest_reference_lists_every_key(section, model):
    fields = set(model.model_fields) - {"boot"}
    assert _documented_keys(section) == fields
