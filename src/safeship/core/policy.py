"""Environment policy for gates: which gates run, what a skip requires, which tiers block.

Pure: no I/O. The CLI and the deploy pipeline ask these questions and carry out the answer
(running gates, writing the audit records a plan asks for).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .triage import Tier

if TYPE_CHECKING:
    from ..config import Manifest

__all__ = ["DEPLOY_GATES", "GatePlan", "block_tiers", "deploy_gates", "plan_gates"]

# In a deploy, the source and config gates run; `imports` and `boot` are replaced by the
# pipeline's own start-and-verify of the real revision, which is a stronger test of both.
DEPLOY_GATES: tuple[str, ...] = ("static", "legacy", "secrets")


@dataclass(frozen=True)
class GatePlan:
    """What a check will do. ``skipped`` gates did not run; in a critical environment each
    of them must be written to the audit log (``requires_audit``)."""

    env: str
    critical: bool
    run: tuple[str, ...]
    skipped: tuple[str, ...]
    forced: bool = False
    reason: str | None = None
    requires_audit: bool = False

    def skip_reason(self, gate: str) -> str:
        """Human text for a skipped gate, as shown in the report."""
        if self.forced and self.critical:
            return f"skipped with --force in critical environment {self.env!r}: {self.reason}"
        return "not selected (--only/--skip)"

    def audit_records(self) -> list[tuple[str, dict[str, Any], str | None]]:
        """``(event, what, why)`` for each skip that must be audited; empty when none."""
        if not self.requires_audit:
            return []
        return [
            (
                "gate_skipped",
                {"gate": gate, "env": self.env, "critical": self.critical, "ran": list(self.run)},
                self.reason,
            )
            for gate in self.skipped
        ]


def plan_gates(
    env: str,
    critical: bool,
    requested: Sequence[str] | None,
    skip: Sequence[str],
    force: bool,
    reason: str | None,
    all_gates: Sequence[str],
) -> GatePlan:
    """Decide which gates run.

    Args:
        env: the target environment's name.
        critical: whether it is critical (all gates are mandatory there).
        requested: ``--only`` gates, or None/empty for all.
        skip: ``--skip`` gates.
        force: ``--force`` was given.
        reason: ``--reason`` text.
        all_gates: every known gate, in run order.

    Returns:
        The plan. In a critical environment a narrowed plan is forced and audited.

    Raises:
        UsageError: an unknown gate; ``--force`` without a non-empty ``--reason``; a narrowed
            selection in a critical environment without ``--force --reason``; nothing left to run.
    """
    known = tuple(all_gates)
    for flag, names in (("--only", requested or ()), ("--skip", skip)):
        for name in names:
            if name not in known:
                raise UsageError(
                    f"unknown gate {name!r} in {flag}",
                    hint=f"gates are: {', '.join(known)}",
                )
    clean_reason = reason.strip() if reason is not None else None
    if force and not clean_reason:
        raise UsageError(
            "--force needs --reason TEXT: a skip must say why",
            hint='e.g. --force --reason "boot gate flaky on CI runner, ticket OPS-123"',
        )
    wanted = set(requested) if requested else set(known)
    wanted -= set(skip)
    run = tuple(g for g in known if g in wanted)
    skipped = tuple(g for g in known if g not in wanted)
    if not run:
        raise UsageError(
            "no gate left to run after --only/--skip",
            hint=f"select at least one of: {', '.join(known)}",
        )
    if critical and skipped:
        if not force:
            raise UsageError(
                f"environment {env!r} is critical: every gate must run, "
                f"but this would skip {', '.join(skipped)}",
                hint="run all gates, or pass --force --reason TEXT; the skip is written to "
                "the audit log",
            )
        return GatePlan(
            env=env,
            critical=True,
            run=run,
            skipped=skipped,
            forced=True,
            reason=clean_reason,
            requires_audit=True,
        )
    return GatePlan(
        env=env,
        critical=critical,
        run=run,
        skipped=skipped,
        forced=force,
        reason=clean_reason,
        requires_audit=False,
    )


def deploy_gates(
    env: str,
    critical: bool,
    skip: Sequence[str] = (),
    force: bool = False,
    reason: str | None = None,
) -> GatePlan:
    """The gates a deploy runs before it builds a revision: ``static``, ``legacy``, ``secrets``.

    ``imports`` and ``boot`` are not among them: the pipeline starts the real revision and
    verifies it (readiness plus an authenticated WebSocket round trip) before it gets traffic.
    Skipping follows :func:`plan_gates`.
    """
    return plan_gates(env, critical, None, skip, force, reason, DEPLOY_GATES)


def block_tiers(manifest: Manifest, env: str) -> frozenset[Tier]:
    """The finding tiers that block in ``env``: the environment's own ``block`` if set, else
    ``gates.block_critical`` in a critical environment, else ``gates.block``.

    Raises:
        ConfigError: ``env`` is unknown to the manifest.
    """
    declared = manifest.environment(env).block
    if declared is None:
        declared = (
            manifest.gates.block_critical if manifest.is_critical(env) else manifest.gates.block
        )
    return frozenset(Tier(t) for t in declared)
