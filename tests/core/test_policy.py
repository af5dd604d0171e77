from __future__ import annotations

import pytest

from safeship.config import EnvironmentConfig, GatesConfig, Manifest
from safeship.core.policy import DEPLOY_GATES, block_tiers, deploy_gates, plan_gates
from safeship.errors import ConfigError, UsageError
from safeship.gates.model import Tier

ALL = ("static", "legacy", "secrets", "imports", "boot")


def test_all_gates_run_by_default_in_any_environment() -> None:
    for env, critical in (("development", False), ("staging", True)):
        plan = plan_gates(env, critical, None, (), False, None, ALL)
        assert plan.run == ALL
        assert plan.skipped == ()
        assert not plan.requires_audit
        assert plan.audit_records() == []


def test_development_chooses_gates_freely_without_audit() -> None:
    plan = plan_gates("development", False, ["imports", "static"], ["static"], False, None, ALL)
    assert plan.run == ("imports",)  # registry order, minus the skip
    assert plan.skipped == ("static", "legacy", "secrets", "boot")
    assert not plan.requires_audit
    assert plan.audit_records() == []
    assert plan.skip_reason("boot") == "not selected (--only/--skip)"


@pytest.mark.parametrize(
    ("only", "skip"), [(["static"], []), (None, ["boot"]), (["static", "boot"], ["boot"])]
)
def test_critical_environment_refuses_narrowing_without_force(
    only: list[str] | None, skip: list[str]
) -> None:
    with pytest.raises(UsageError) as info:
        plan_gates("staging", True, only, skip, False, None, ALL)
    assert "critical" in info.value.message
    assert "--force --reason" in (info.value.hint or "")


def test_critical_skip_with_force_and_reason_is_audited_per_gate() -> None:
    plan = plan_gates("production", True, None, ["boot", "imports"], True, "  CI runner down ", ALL)
    assert plan.run == ("static", "legacy", "secrets")
    assert plan.skipped == ("imports", "boot")
    assert plan.requires_audit and plan.forced
    assert plan.reason == "CI runner down"
    records = plan.audit_records()
    assert [r[0] for r in records] == ["gate_skipped", "gate_skipped"]
    assert [r[1]["gate"] for r in records] == ["imports", "boot"]
    assert all(r[1]["env"] == "production" and r[2] == "CI runner down" for r in records)
    assert "CI runner down" in plan.skip_reason("boot")


@pytest.mark.parametrize("reason", [None, "", "   ", "\n\t"])
@pytest.mark.parametrize(("env", "critical"), [("staging", True), ("development", False)])
def test_force_without_a_real_reason_is_refused(
    reason: str | None, env: str, critical: bool
) -> None:
    with pytest.raises(UsageError, match="--force needs --reason"):
        plan_gates(env, critical, None, ["boot"], True, reason, ALL)


def test_force_in_non_critical_environment_needs_no_audit() -> None:
    plan = plan_gates("development", False, None, ["boot"], True, "local only", ALL)
    assert plan.skipped == ("boot",)
    assert not plan.requires_audit
    assert plan.audit_records() == []


@pytest.mark.parametrize(("only", "skip"), [(["stattic"], []), (None, ["bot"])])
def test_unknown_gate_names_the_gate_and_lists_the_known_ones(
    only: list[str] | None, skip: list[str]
) -> None:
    with pytest.raises(UsageError) as info:
        plan_gates("development", False, only, skip, False, None, ALL)
    assert (only or skip)[0] in info.value.message
    assert "static, legacy, secrets, imports, boot" in (info.value.hint or "")


def test_nothing_left_to_run_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no gate left"):
        plan_gates("development", False, ["boot"], ["boot"], False, None, ALL)


def test_deploy_gates_are_the_source_and_config_gates() -> None:
    assert DEPLOY_GATES == ("static", "legacy", "secrets")
    plan = deploy_gates("staging", True)
    assert plan.run == DEPLOY_GATES
    assert "imports" not in plan.run and "boot" not in plan.run
    with pytest.raises(UsageError):
        deploy_gates("staging", True, skip=["secrets"])
    forced = deploy_gates("staging", True, skip=["secrets"], force=True, reason="rotating")
    assert forced.skipped == ("secrets",) and forced.requires_audit


def test_block_tiers_follow_gates_config_and_environment_override() -> None:
    manifest = Manifest(
        gates=GatesConfig(block=["breaks-startup"], block_critical=["breaks-startup", "noise"]),
        environments={
            "qa": EnvironmentConfig(critical=True),
            "perf": EnvironmentConfig(block=["unreachable"]),
        },
    )
    assert block_tiers(manifest, "development") == {Tier.BREAKS_STARTUP}
    assert block_tiers(manifest, "staging") == {Tier.BREAKS_STARTUP, Tier.NOISE}
    assert block_tiers(manifest, "qa") == {Tier.BREAKS_STARTUP, Tier.NOISE}
    assert block_tiers(manifest, "perf") == {Tier.UNREACHABLE}


def test_block_tiers_defaults() -> None:
    manifest = Manifest()
    assert block_tiers(manifest, "development") == {Tier.BREAKS_STARTUP}
    assert block_tiers(manifest, "production") == {Tier.BREAKS_STARTUP, Tier.BREAKS_ON_CALL}


def test_block_tiers_unknown_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'nope'"):
        block_tiers(Manifest(), "nope")
