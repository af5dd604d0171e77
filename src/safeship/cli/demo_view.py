"""What the demo shows in a terminal: a live panel while it runs, then the summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..demo.story import Story

__all__ = ["live_panel", "summary_view", "watch_line"]

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
        numbers = load.summary()
        clients = Text.assemble(
            ("clients ", "bold"),
            f"{numbers['connections']} connections: ",
            (f"{numbers['connects_ok']} ok", "green"),
            ", ",
            (
                f"{numbers['connects_failed']} failed",
                "red" if numbers["connects_failed"] else "dim",
            ),
            f"  {numbers['events']} events  {numbers['resumes']} resumes  ",
            (f"{numbers['lost']} lost", "red" if numbers["lost"] else "dim"),
        )
    else:
        clients = Text("clients: starting once r1 serves", style="dim")
    footer = Text.assemble(
        ("serving ", "bold"), (story.serving or "nothing", "cyan"),
        f"   t={story.now():.0f}s   ", (story.activity, "dim"),
    )  # fmt: skip
    lines: list[RenderableType] = [table, Text(""), clients, footer]
    progress = watch_line(story)
    if progress:
        lines.append(Text(progress, style="cyan"))
    return Panel(Group(*lines), title="safeship demo: staging", expand=True)


def watch_line(story: Story) -> str:
    """During verification, a canary step or the watch: time left, probes so far, last verdict."""
    watch = story.watch
    if watch is None:
        return ""
    left = max(0.0, watch["until"] - story.now())
    last = f", last: {watch['last']}" if watch["last"] else ""
    return f"{watch['step']}: {left:.0f} s left, {watch['probes']} probes{last}"


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
    # Three narrow columns of figures; the words under each row, as lines that never fold
    # mid-word at 80 columns.
    rows = Table(title="The incident's failures, with and without safeship", expand=True)
    rows.add_column("failure mode", ratio=1)
    rows.add_column("clients\nfailed", justify="right", no_wrap=True)
    rows.add_column("to a safe\nstate", justify="right", no_wrap=True)
    notes = Table.grid(padding=(0, 1))
    notes.add_column(no_wrap=True, style="bold")
    notes.add_column()
    for row in report["summary"]["rows"]:
        seconds = row.get("time_to_safe_s")
        rows.add_row(
            f"{row['step']}: {row['failure']}", str(row["client_failures"]),
            "n/a" if seconds is None else f"{seconds:.1f} s",
        )  # fmt: skip
        notes.add_row(row["step"], f"caught at: {row['caught_at']}")
        notes.add_row("", f"measured: {row['figure']}")
        notes.add_row("", f"the original pipeline: {row['original']}")
    load, rollback = report["load"], report["rollback"]
    facts = Text.assemble(
        ("clients: ", "bold"),
        f"{load.get('connections', 0)} connections: {load.get('connects_ok', 0)} ok, "
        f"{load.get('connects_failed', 0)} failed, "
        f"{load.get('events', 0)} events, {load.get('resumes', 0)} resumes, ",
        (f"{load.get('lost', 0)} lost", "green" if not load.get("lost") else "red"),
        "\n",
        ("r5: ", "bold"),
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
    return Group(steps, details, Text(""), rows, notes, Text(""), facts, verdict)


def _s(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"
