"""What the demo shows in a terminal: a live panel while it runs, then the summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..demo.story import Story

__all__ = ["live_panel", "summary_view"]

_ICON = {
    "pending": ("·", "dim"),
    "running": ("▶", "cyan"),
    "done": ("✓", "green"),
    "unexpected": ("✗", "red"),
}


def live_panel(story: Story) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(width=2)
    table.add_column(ratio=3)
    table.add_column(ratio=4)
    for step in story.steps:
        icon, style = _ICON[step.status]
        outcome = step.outcome or ("…" if step.status == "running" else "")
        table.add_row(Text(icon, style=style), Text(step.title), Text(outcome, style=style))
    load = story.load
    if load is not None:
        stats = load.stats
        clients = Text.assemble(
            ("clients ", "bold"),
            (f"{load.ok} connections ok", "green"),
            "  ",
            (f"{load.failed} failed", "red" if load.failed else "dim"),
            f"  {stats.events} events  {stats.resumes} resumes  ",
            (f"{stats.lost} lost", "red" if stats.lost else "dim"),
        )
    else:
        clients = Text("clients: starting after r1 is deployed", style="dim")
    footer = Text.assemble(
        ("serving ", "bold"), (story.serving or "nothing yet", "cyan"),
        f"   t={story.now():.0f}s   ", (story.activity, "dim"),
    )  # fmt: skip
    return Panel(
        Group(table, Text(""), clients, footer), title="safeship demo: staging", expand=True
    )


def summary_view(report: dict[str, Any]) -> RenderableType:
    steps = Table(title="What happened", expand=True)
    steps.add_column("revision", no_wrap=True)
    steps.add_column("outcome", ratio=3)
    steps.add_column("caught at", ratio=2)
    for step in report["steps"]:
        style = "green" if step["as_expected"] else "red"
        steps.add_row(step["id"], Text(step["outcome"], style=style), step["caught_at"] or "-")
    # The details (error messages, paths, fingerprints) read as prose under the table: in a
    # table cell an 80-column terminal would fold them mid-word.
    details = Table.grid(padding=(0, 2))
    details.add_column(no_wrap=True, style="bold")
    details.add_column()
    for step in report["steps"]:
        for part in str(step["detail"]).split(" | "):
            details.add_row(step["id"], part)
    rows = Table(
        title="The story's failures, with and without safeship", show_lines=True, expand=True
    )
    rows.add_column("failure mode", ratio=3, overflow="fold")
    rows.add_column("caught at", ratio=3, overflow="fold")
    rows.add_column("clients\nfailed", justify="right", no_wrap=True)
    rows.add_column("to a safe\nstate", justify="right", no_wrap=True)
    rows.add_column("the original pipeline", ratio=4, overflow="fold")
    for row in report["summary"]["rows"]:
        seconds = row.get("time_to_safe_s")
        rows.add_row(
            row["failure"], row["caught_at"], str(row["client_failures"]),
            "n/a" if seconds is None else f"{seconds:.1f} s", row["original"],
        )  # fmt: skip
    load, rollback = report["load"], report["rollback"]
    facts = Text.assemble(
        ("clients: ", "bold"),
        f"{load.get('connects_ok', 0)} connections, {load.get('connects_failed', 0)} failed, "
        f"{load.get('events', 0)} events, {load.get('resumes', 0)} resumes, ",
        (f"{load.get('lost', 0)} lost", "green" if not load.get("lost") else "red"),
        "\n",
        ("r4: ", "bold"),
        f"detected {_s(rollback.get('detection_after_switch_s'))} after the switch, "
        f"rolled back {_s(rollback.get('time_to_rollback_s'))} after the first failure, "
        f"{rollback.get('failed_connections')} client failures got through\n",
        ("audit: ", "bold"),
        ("verified" if report["summary"]["audit_ok"] else "BROKEN", "green" if report["summary"]["audit_ok"] else "red"),
        f" ({report['summary']['audit_detail']})",
    )  # fmt: skip
    verdict = Text(
        "The story held: every failure was stopped or rolled back." if report["ok"]
        else "The story did NOT hold: see the steps above.",
        style="bold green" if report["ok"] else "bold red",
    )  # fmt: skip
    return Group(steps, details, Text(""), rows, facts, verdict)


def _s(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"
