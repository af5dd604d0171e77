from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from safeship.gates import Finding, GateResult, GateStatus, Report, Tier
from safeship.gates.report import SARIF_SCHEMA, render_json, render_sarif, render_text

GOLDEN = Path(__file__).resolve().parent / "golden"
# UPDATE_GOLDEN=1 rewrites the golden files from the current output (review the diff!).
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _report(root: Path) -> Report:
    static = GateResult(
        gate="static",
        status=GateStatus.FAILED,
        duration=1.2345,
        summary={"tiers": {"breaks-startup": 1, "breaks-on-call": 1, "noise": 1}},
        findings=[
            Finding(
                gate="static",
                rule="F821",
                message="Undefined name `DatabaseSessionManager`",
                tier=Tier.BREAKS_STARTUP,
                path="agent_service/agents/goals.py",
                line=119,
                column=31,
                source_line="    def run(self, db: DatabaseSessionManager) -> None:",
                hint="import DatabaseSessionManager from agent_service.db",
                chain=(
                    "main",
                    "agent_class_initialization (inside _register_auxiliary_agents)",
                    "goals_triage_sub_agent:119",
                ),
                symbol="DatabaseSessionManager",
                scope="GoalsAgent.run",
                blocking=True,
            ),
            Finding(
                gate="static",
                rule="F821",
                message="Undefined name `helper`",
                tier=Tier.BREAKS_ON_CALL,
                path="agent_service/tools.py",
                line=12,
                column=12,
                source_line="    return helper(x)",
                chain=("main", "tools:12"),
                symbol="helper",
                scope="run_tool",
            ),
            Finding(
                gate="static",
                rule="F821",
                message="Undefined name `Later`",
                tier=Tier.NOISE,
                path="tests/test_x.py",
                line=3,
                source_line="x: 'Later'",
                symbol="Later",
                in_baseline=True,
            ),
        ],
    )
    secrets = GateResult(
        gate="secrets",
        status=GateStatus.FAILED,
        duration=0.012,
        summary={"secrets": 1, "fingerprints": {"JWT_SECRET": {"env": "a1b2c3d4e5f6"}}},
        findings=[
            Finding(
                gate="secrets",
                rule="secret-mismatch",
                message="JWT_SECRET differs between consumers: env (JWT_SECRET_STAGING) has "
                "fingerprint a1b2c3d4e5f6, file:tests/e2e/staging.env (JWT_SECRET) has "
                "fingerprint 0f9e8d7c6b5a",
                tier=Tier.ERROR,
                path="tests/e2e/staging.env",
                hint="every consumer must hold the same secret",
                symbol="JWT_SECRET",
                blocking=True,
                extra={"secret": "JWT_SECRET", "consumer": "file:tests/e2e/staging.env"},
            ),
            Finding(
                gate="secrets",
                rule="secret-missing",
                message="SENTRY_DSN missing",
                tier=Tier.WARNING,
                symbol="SENTRY_DSN",
                extra={"secret": "SENTRY_DSN", "consumer": "env"},
            ),
        ],
    )
    legacy = GateResult(
        gate="legacy",
        status=GateStatus.PASSED,
        duration=0.5,
        summary={"references": {"agent_service.db.DatabaseSessionManager": 1}},
        findings=[
            Finding(
                gate="legacy",
                rule="legacy-reference",
                message="import of legacy name agent_service.db.DatabaseSessionManager",
                tier=Tier.WARNING,
                path="agent_service/main.py",
                line=4,
                column=24,
                source_line="from agent_service.db import DatabaseSessionManager",
                hint="use agent_service.db.SessionManager",
                symbol="agent_service.db.DatabaseSessionManager",
            )
        ],
    )
    boot = GateResult(
        gate="boot",
        status=GateStatus.ERROR,
        duration=0.001,
        error="gate 'boot' is not available in this build",
    )
    imports = GateResult(
        gate="imports",
        status=GateStatus.SKIPPED,
        skipped_reason="skipped with --force in critical environment 'staging': CI down",
    )
    return Report(
        root=str(root),
        env="staging",
        critical=True,
        results=[static, legacy, secrets, imports, boot],
    )


def _normalise(data: Any, root: Path) -> Any:
    """Make output comparable across machines: no absolute paths, durations or versions."""
    text = json.dumps(data, indent=2, sort_keys=True)
    text = text.replace(root.resolve().as_uri(), "file://<ROOT>").replace(str(root), "<ROOT>")
    text = re.sub(r'"duration_s": [0-9.]+', '"duration_s": 0', text)
    text = re.sub(r'("version": )"(?!2\.1\.0)[^"]*"', r'\1"<VERSION>"', text)
    return json.loads(text)


def _golden(name: str, actual: Any) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert actual == expected, (
        f"output differs from {path}; if intended, rerun with UPDATE_GOLDEN=1"
    )


def test_json_matches_golden(tmp_path: Path) -> None:
    data = render_json(_report(tmp_path))
    assert data["schema"] == "safeship.check/1"
    _golden("report.json", _normalise(data, tmp_path))


def test_sarif_matches_golden(tmp_path: Path) -> None:
    data = render_sarif(_report(tmp_path))
    _golden("report.sarif.json", _normalise(data, tmp_path))


def test_sarif_structure(tmp_path: Path) -> None:
    data = render_sarif(_report(tmp_path), tool_version="9.9.9")
    assert data["$schema"] == SARIF_SCHEMA and data["version"] == "2.1.0"
    [run] = data["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "safeship" and driver["version"] == "9.9.9"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == [
        "static/F821",
        "legacy/legacy-reference",
        "secrets/secret-mismatch",
        "secrets/secret-missing",
    ]
    results = run["results"]
    assert len(results) == 6
    for result in results:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        assert len(result["partialFingerprints"]["safeship/v1"]) == 16
        assert "tier" in result["properties"] and "chain" in result["properties"]
    startup = results[0]
    assert startup["level"] == "error"
    location = startup["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {
        "uri": "agent_service/agents/goals.py",
        "uriBaseId": "PROJECTROOT",
    }
    assert location["region"]["startLine"] == 119 and location["region"]["startColumn"] == 31
    assert startup["properties"]["tier"] == "breaks-startup"
    assert startup["properties"]["chain"][0] == "main"
    assert "Hint: import DatabaseSessionManager" in startup["message"]["text"]
    assert [r["level"] for r in results] == [
        "error",
        "warning",
        "note",
        "warning",
        "error",
        "warning",
    ]
    assert results[2]["baselineState"] == "unchanged"
    assert "locations" not in results[5]  # a secret in the environment has no file
    assert run["originalUriBaseIds"]["PROJECTROOT"]["uri"].endswith("/")
    [invocation] = run["invocations"]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["descriptor"] == {"id": "boot"}


def test_text_groups_by_gate_and_collapses_non_blocking(tmp_path: Path) -> None:
    text = render_text(_report(tmp_path), width=200)
    assert f"safeship check {tmp_path}  env staging (critical)" in text
    assert "static  FAILED  1 breaks-startup, 1 breaks-on-call, 1 in baseline  (1.23s)" in text
    assert "✗ agent_service/agents/goals.py:119  breaks-startup  F821" in text
    assert "│ def run(self, db: DatabaseSessionManager) -> None:" in text
    assert "Undefined name `DatabaseSessionManager`" in text
    assert (
        "chain: main → agent_class_initialization (inside _register_auxiliary_agents) → "
        "goals_triage_sub_agent:119" in text
    )
    assert "hint: import DatabaseSessionManager from agent_service.db" in text
    assert "2 non-blocking finding(s) not shown (1 breaks-on-call, 1 noise); --verbose" in text
    assert "helper" not in text  # collapsed
    assert "✗ tests/e2e/staging.env  error  secret-mismatch" in text
    assert (
        "imports  SKIPPED  skipped with --force in critical environment 'staging': CI down" in text
    )
    assert "boot  ERROR  no findings" in text
    assert "could not run: gate 'boot' is not available in this build" in text
    assert (
        "✗ check failed: 2 blocking finding(s) (static 1, secrets 1); 1 gate(s) could not run (boot)"
        in text
    )
    # Gates appear in report order.
    positions = [text.index(f"\n{g}  ") for g in ("static", "legacy", "secrets", "imports", "boot")]
    assert positions == sorted(positions)


def test_text_verbose_lists_everything(tmp_path: Path) -> None:
    text = render_text(_report(tmp_path), verbose=True, width=200)
    assert "• agent_service/tools.py:12  breaks-on-call  F821" in text
    assert "• consumer env  warning  secret-missing" in text
    assert "• tests/test_x.py:3  noise  F821" in text
    assert "not shown" not in text


def test_text_for_a_clean_report(tmp_path: Path) -> None:
    report = Report(
        root=str(tmp_path),
        env="development",
        critical=False,
        results=[GateResult(gate="legacy", status=GateStatus.PASSED, duration=0.1)],
    )
    text = render_text(report)
    assert "legacy  PASSED  no findings" in text
    assert "✓ check passed: 1 gate(s), nothing blocks" in text


def _documented(table: str) -> set[str]:
    """First-column keys of the table that follows ``table`` in docs/check.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "check.md").read_text()
    body = text[text.index(f"\n{table}\n") :]
    body = body[: body.index("\n\n", body.index("|---"))]
    return set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.M))


def test_docs_describe_every_json_key(tmp_path: Path) -> None:
    data = render_json(_report(tmp_path))
    assert _documented("Report:") == set(data)
    assert _documented("Gate result:") == set(data["gates"][0])
    assert _documented("Finding:") == set(data["gates"][0]["findings"][0])


@pytest.mark.parametrize("render", [render_json, render_sarif])
def test_machine_output_is_json_serialisable(tmp_path: Path, render: Any) -> None:
    json.dumps(render(_report(tmp_path)))
