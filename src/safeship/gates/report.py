"""Renderers of a check's ``Report``: rich text for people, JSON and SARIF 2.1.0 for machines.

The JSON form is ``Report.as_dict()`` (schema ``safeship.check/1``, documented in
docs/check.md). SARIF is for code-scanning upload: one run, one rule per gate/rule pair,
``error`` level exactly for the findings that block.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from .model import Finding, GateResult, GateStatus, Report, Tier

__all__ = ["SARIF_SCHEMA", "print_text", "render_json", "render_sarif", "render_text"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_TIER_ORDER = {t: i for i, t in enumerate(Tier)}
_STATUS_STYLE = {
    GateStatus.PASSED: "bold green",
    GateStatus.FAILED: "bold red",
    GateStatus.ERROR: "bold magenta",
    GateStatus.SKIPPED: "dim",
}
_RULES = {
    "F821": "Undefined name",
    "F822": "Undefined name in __all__",
    "F823": "Local variable referenced before assignment",
    "TID251": "Use of a banned (legacy) API",
    "invalid-syntax": "Syntax error",
    "ty:import-not-found": "Import of a module or name that does not exist",
    "ty:missing-attribute": "Attribute that does not exist",
    "missing-distribution": "Imported distribution not installed in the project's environment",
    "undeclared-dependency": "Imported distribution that the project does not declare",
    "import-error": "Module raises when imported",
    "import-hung": "Module hangs when imported",
    "import-crashed": "Interpreter dies when the module is imported",
    "import-missing-dependency": "A declared distribution is missing from the interpreter",
    "import-undeclared-dependency": "Imports a distribution the project does not declare",
    "import-wrote-file": "Importing the module writes into the project's tree",
    "secret-missing": "Secret missing in a consumer",
    "secret-weak": "Secret is a placeholder or too short",
    "secret-mismatch": "Consumers hold different secrets",
    "secret-source-error": "Secret consumer cannot be read",
    "legacy-reference": "Reference to a legacy name",
    "legacy-unparsable": "File with legacy references cannot be parsed",
    "boot-failed": "Service fails to boot",
}


def render_json(report: Report) -> dict[str, Any]:
    """The stable machine form (schema ``safeship.check/1``)."""
    return report.as_dict()


# --- text -------------------------------------------------------------------------------


def _sort_key(f: Finding) -> tuple[object, ...]:
    return (not f.blocking or f.in_baseline, _TIER_ORDER.get(f.tier, 99), f.path or "", f.line or 0)


def _counts(result: GateResult) -> str:
    tiers = Counter(str(f.tier) for f in result.findings if not f.in_baseline)
    ordered = sorted(tiers.items(), key=lambda kv: _TIER_ORDER.get(Tier(kv[0]), 99))
    parts = [f"{n} {tier}" for tier, n in ordered]
    baselined = sum(f.in_baseline for f in result.findings)
    if baselined:
        parts.append(f"{baselined} in baseline")
    return ", ".join(parts) if parts else "no findings"


def _gate_facts(result: GateResult) -> str:
    s = result.summary
    if result.gate == "imports" and "modules" in s:
        facts = f"{s.get('ok', 0)} of {s['modules']} modules import cleanly"
        python = s.get("interpreter") or {}
        if python.get("python"):
            facts += f" · Python {python.get('version') or '?'} at {python['python']}"
        return facts
    if result.gate == "static" and s.get("python"):
        python = s["python"]
        env = (
            "no project environment (pass --python)"
            if python.get("isolated")
            else f"{python['interpreter']} ({python['interpreter_source']})"
        )
        return f"Python {python['target_version']} ({python['target_source']}) · {env}"
    if result.gate == "secrets" and "secrets" in s:
        return f"{s['secrets']} secrets checked"
    if result.gate == "legacy" and s.get("references"):
        return "references: " + ", ".join(f"{k} {v}" for k, v in s["references"].items())
    return ""


def _finding_lines(f: Finding) -> list[str]:
    consumer = f.extra.get("consumer")
    where = f.path or (f"consumer {consumer}" if consumer else f.symbol or f.gate)
    if f.path and f.line:
        where = f"{f.path}:{f.line}"
    mark = "[red]✗[/]" if f.blocking and not f.in_baseline else "[yellow]•[/]"
    lines = [
        f"  {mark} [bold]{escape(where)}[/]  [cyan]{escape(str(f.tier))}[/]  "
        f"[dim]{escape(f.rule)}[/]"
    ]
    if f.source_line:
        lines.append(f"      [dim]│[/] {escape(f.source_line.strip())}")
    lines.append(f"      {escape(f.message)}")
    if f.chain:
        lines.append(f"      [dim]chain:[/] {escape(' → '.join(f.chain))}")
    if f.extra.get("may_break_startup"):
        lines.append(f"      [dim]note:[/] {escape(str(f.extra['may_break_startup']))}")
    if f.hint:
        lines.append(f"      [dim]hint:[/] {escape(f.hint)}")
    return lines


def _gate_lines(result: GateResult, verbose: bool) -> list[str]:
    style = _STATUS_STYLE.get(result.status, "")
    status = str(result.status).upper()
    if result.status is GateStatus.SKIPPED:
        why = f"  [dim]{escape(result.skipped_reason)}[/]" if result.skipped_reason else ""
        return [f"[bold]{escape(result.gate)}[/]  [{style}]{status}[/]{why}"]
    facts = _gate_facts(result)
    head = (
        f"[bold]{escape(result.gate)}[/]  [{style}]{status}[/]  {escape(_counts(result))}"
        + (f"  [dim]· {escape(facts)}[/]" if facts else "")
        + f"  [dim]({result.duration:.2f}s)[/]"
    )
    lines = [head]
    if result.status is GateStatus.ERROR and result.error:
        lines.append(f"  [magenta]could not run:[/] {escape(result.error)}")
    elif result.error:  # ran, but part of it could not (an entry module that is not there)
        lines.append(f"  [magenta]incomplete:[/] {escape(result.error)}")
    shown = [f for f in result.findings if verbose or (f.blocking and not f.in_baseline)]
    for finding in sorted(shown, key=_sort_key):
        lines.extend(_finding_lines(finding))
    hidden = len(result.findings) - len(shown)
    if hidden:
        shown_ids = {id(f) for f in shown}
        tiers = Counter(str(f.tier) for f in result.findings if id(f) not in shown_ids)
        detail = ", ".join(f"{n} {t}" for t, n in sorted(tiers.items()))
        lines.append(
            f"  [dim]… {hidden} non-blocking finding(s) not shown ({escape(detail)}); "
            "--verbose lists them[/]"
        )
    notes = result.summary.get("notes", [])
    lines.extend(f"  [dim]note: {escape(str(note))}[/]" for note in notes)
    return lines


def _verdict(report: Report) -> str:
    blocking = {r.gate: len(r.blocking) for r in report.results if r.blocking}
    errors = [r.gate for r in report.results if r.status is GateStatus.ERROR]
    if report.ok:
        ran = sum(r.status is not GateStatus.SKIPPED for r in report.results)
        return f"[bold green]✓ check passed[/]: {ran} gate(s), nothing blocks"
    parts = []
    if blocking:
        total = sum(blocking.values())
        per = ", ".join(f"{g} {n}" for g, n in blocking.items())
        parts.append(f"{total} blocking finding(s) ({per})")
    if errors:
        parts.append(f"{len(errors)} gate(s) could not run ({', '.join(errors)})")
    return "[bold red]✗ check failed[/]: " + "; ".join(parts)


def print_text(report: Report, console: Console, *, verbose: bool = False) -> None:
    """Print the report grouped by gate: blocking findings in full, the rest as counts."""
    env = f"{report.env} (critical)" if report.critical else report.env
    console.print(f"[bold]safeship check[/] {escape(report.root)}  [dim]env[/] {escape(env)}")
    for result in report.results:
        console.print()
        for line in _gate_lines(result, verbose):
            console.print(line, highlight=False, soft_wrap=True)
    console.print()
    console.print(_verdict(report))


def render_text(report: Report, *, verbose: bool = False, width: int = 100) -> str:
    """The text report as a plain string (no colour), e.g. for tests and files."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False)
    print_text(report, console, verbose=verbose)
    return buffer.getvalue()


# --- SARIF ------------------------------------------------------------------------------


def _level(f: Finding) -> str:
    if f.blocking and not f.in_baseline:
        return "error"
    if f.tier in (Tier.UNREACHABLE, Tier.NOISE):
        return "note"
    return "warning"


def _rule_id(f: Finding) -> str:
    return f"{f.gate}/{f.rule}"


def _sarif_result(f: Finding, index: int) -> dict[str, Any]:
    text = f"{f.message.rstrip('.')}. Hint: {f.hint}" if f.hint else f.message
    result: dict[str, Any] = {
        "ruleId": _rule_id(f),
        "ruleIndex": index,
        "level": _level(f),
        "message": {"text": text},
        "partialFingerprints": {"safeship/v1": f.fingerprint},
        "properties": {
            "gate": f.gate,
            "tier": str(f.tier),
            "blocking": f.blocking,
            "inBaseline": f.in_baseline,
            "chain": list(f.chain),
            "symbol": f.symbol,
        },
    }
    if f.path:
        region: dict[str, Any] = {}
        if f.line:
            region["startLine"] = f.line
            if f.column:
                region["startColumn"] = f.column
            if f.source_line:
                region["snippet"] = {"text": f.source_line}
        location: dict[str, Any] = {"artifactLocation": {"uri": f.path, "uriBaseId": "PROJECTROOT"}}
        if region:
            location["region"] = region
        result["locations"] = [{"physicalLocation": location}]
    if f.in_baseline:
        result["baselineState"] = "unchanged"
    return result


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("safeship")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def render_sarif(report: Report, *, tool_version: str | None = None) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log with a single run."""
    findings = [f for r in report.results for f in r.findings]
    rule_ids: dict[str, int] = {}
    rules: list[dict[str, Any]] = []
    for f in findings:
        rid = _rule_id(f)
        if rid not in rule_ids:
            rule_ids[rid] = len(rules)
            description = _RULES.get(f.rule, f"{f.gate} gate: {f.rule}")
            rules.append(
                {
                    "id": rid,
                    "name": f.rule,
                    "shortDescription": {"text": description},
                    "properties": {"gate": f.gate},
                }
            )
    notifications = [
        {
            "level": "error",
            "message": {"text": f"gate {r.gate} could not run: {r.error}"},
            "descriptor": {"id": r.gate},
        }
        for r in report.results
        if r.status is GateStatus.ERROR
    ]
    root_uri = Path(report.root).resolve().as_uri().rstrip("/") + "/"
    run = {
        "tool": {
            "driver": {
                "name": "safeship",
                "version": tool_version or _version(),
                "rules": rules,
            }
        },
        "originalUriBaseIds": {"PROJECTROOT": {"uri": root_uri}},
        "invocations": [
            {
                "executionSuccessful": not notifications,
                "toolExecutionNotifications": notifications,
            }
        ],
        "results": [_sarif_result(f, rule_ids[_rule_id(f)]) for f in findings],
        "properties": {
            "env": report.env,
            "critical": report.critical,
            "ok": report.ok,
            "gates": {r.gate: str(r.status) for r in report.results},
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
