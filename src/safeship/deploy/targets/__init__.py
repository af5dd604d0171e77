"""Deploy targets, registered in one dict of lazy ``"module:Class"`` strings.

Adding a provider touches two places: its module, and one line in ``TARGETS``. Each class
implements :class:`~.base.Target` and a ``from_manifest(manifest)`` classmethod.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ...errors import TargetError, UsageError
from .base import (
    Lifecycle,
    Revision,
    RevisionSpec,
    RevisionStatus,
    StartFailure,
    Target,
    TargetState,
    TrafficSplit,
)

if TYPE_CHECKING:
    from ...config import Manifest

__all__ = [
    "TARGETS",
    "Lifecycle",
    "Revision",
    "RevisionSpec",
    "RevisionStatus",
    "StartFailure",
    "Target",
    "TargetState",
    "TrafficSplit",
    "create_target",
    "target_class",
]

TARGETS: dict[str, str] = {
    "local": "safeship.deploy.targets.local:LocalTarget",
    "cloudrun": "safeship.deploy.targets.cloudrun:CloudRunTarget",
    "kubernetes": "safeship.deploy.targets.kubernetes:KubernetesTarget",
}

_EXTRAS = {"cloudrun": "cloudrun", "kubernetes": "kubernetes"}


def target_class(name: str) -> Any:
    """The class registered as ``name``, imported on first use.

    Raises:
        UsageError: no target has that name.
        TargetError: its optional dependencies are not installed.
    """
    if name not in TARGETS:
        known = ", ".join(sorted(TARGETS))
        raise UsageError(
            f"unknown deploy target {name!r}; available: {known}",
            hint="pass --target with one of them, or fix [deploy] target in safeship.toml",
        )
    module_name, _, attribute = TARGETS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(name, name)
        raise TargetError(
            f"the {name} target needs packages that are not installed ({exc.name})",
            hint=f"pip install 'safeship[{extra}]'",
        ) from None
    return getattr(module, attribute)


def create_target(name: str, manifest: Manifest) -> Target:
    """Build the named target from the manifest's ``[deploy]`` settings."""
    target: Target = target_class(name).from_manifest(manifest)
    return target
