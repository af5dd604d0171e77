"""Rich views of the deploy commands: live progress, the outcome, status and history.

Each view has a ``--json`` twin (the record, ``status()``, ``history()``); these only draw.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..deploy.record import Event

__all__ = ["DeployProgress", "render_down", "render_history", "render_outcome", "render_status"]

_MARKS = {
    "ok": "[green]✓[/]",
    "passed": "[green]✓[/]",
    "running": "[cyan]…[/]",
    "failed": "[red]✗[/]",
    "error": "[red]✗[/]",
    "warning": "[yellow]![/]",
    "skipped": "[yellow]-[/]",
    "paused": "[yellow]‖[/]",
    "interrupted": "[yellow]‖[/]",
    "info": "[dim]·[/]",
}
_OUTCOME_STYLE = {
    "promoted": "bold green",
    "restored": "bold green",
    "rolled_back": "bold yellow",
    "paused": "bold yellow",
    "cancelled": "bold yellow",
}


def _mark(status: str) -> str:
    return _MARKS.get(status, "[dim]·[/]")


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


class DeployProgress:
    """An ``on_event`` callback that prints each step as it ends, with its timing, and the
    probes and gates worth seeing (failures; the first success)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._seen_ok: set[str] = set()
        self._last_failure: tuple[str, ...] | None = None
        self._repeats = 0

    def _flush(self) -> None:
        if self._repeats:
            self.console.print(f"    [dim](the same {self._repeats} more time(s))[/]")
        self._repeats, self._last_failure = 0, None

    def __call__(self, event: Event) -> None:
        print_ = self.console.print
        if event.kind != "probe":
            self._flush()
        if event.kind == "step":
            if event.status == "running":
                print_(
                    f"{_mark('running')} [bold]{event.step:<9}[/] [dim]{escape(event.detail)}[/]"
                )
            else:
                took = _secs(event.duration)
                print_(
                    f"{_mark(event.status)} [bold]{event.step:<9}[/] {escape(event.detail)} "
                    f"[dim]{took}[/]"
                )
        elif event.kind == "probe":
            data = event.data
            if event.status == "ok" and f"{event.step}:{data.get('what')}" in self._seen_ok:
                return
            # The same failure probe after probe (a revision still starting) is shown once.
            key = (event.step, str(data.get("what")), str(data.get("category")), event.detail)
            if event.status != "ok" and key == self._last_failure:
                self._repeats += 1
                return
            self._flush()
            self._last_failure = key if event.status != "ok" else None
            if event.status == "ok":
                self._seen_ok.add(f"{event.step}:{data.get('what')}")
            ms = data.get("ms")
            took = f" {ms:.0f} ms" if isinstance(ms, int | float) else ""
            print_(
                f"    [dim]{event.at:6.2f}s {event.step} {data.get('what')}:[/] "
                f"{'[green]ok[/]' if event.status == 'ok' else '[red]' + escape(str(data.get('category'))) + '[/]'}"
                f"[dim]{took}[/] {escape(event.detail) if event.status != 'ok' else ''}"
            )
        elif event.kind == "gate":
            data = event.data
            facts = f"{data.get('findings', 0)} finding(s), {data.get('blocking', 0)} blocking"
            error = f": {data['error']}" if data.get("error") else ""
            print_(
                f"    {_mark(event.status)} {escape(event.detail)} {event.status} "
                f"[dim]({facts}, {_secs(data.get('duration_s'))})[/]{escape(error)}"
            )
            for line in data.get("top", []):
                print_(f"        [red]{escape(line)}[/]")
        elif event.kind == "note":
            print_(f"    {_mark(event.status)} [dim]{escape(event.detail)}[/]")
        elif event.kind == "outcome":
            render_outcome(dict(event.data), self.console)


def render_outcome(record: Mapping[str, Any], console: Console) -> None:
    """The end of a deploy: outcome, why, what to do next, and the failure's details."""
    outcome = str(record.get("outcome"))
    style = _OUTCOME_STYLE.get(outcome, "bold red")
    kind = record.get("kind", "deploy")
    console.print(
        f"[{style}]{kind} {record.get('id')}: {outcome}[/] [dim](exit {record.get('exit_code')}, "
        f"{_secs(record.get('duration_s'))})[/]"
    )
    console.print(escape(str(record.get("reason", ""))))
    failure = record.get("start_failure")
    if failure:
        where = f" in phase {failure['phase']!r}" if failure.get("phase") else ""
        code = f", exit code {failure['exit_code']}" if failure.get("exit_code") is not None else ""
        console.print(
            f"[red]{failure['revision']} failed to start{where}{code}:[/] {escape(failure['error'])}"
        )
        if failure.get("hint"):
            console.print(f"[dim]hint:[/] {escape(str(failure['hint']))}")
        if failure.get("log_tail"):
            console.print(f"[dim]last log lines ({escape(str(failure.get('log_path')))}):[/]")
            for line in failure["log_tail"][-10:]:
                console.print(f"  [dim]{escape(line)}[/]")
    error = record.get("error")
    if error:
        console.print(f"[red]error:[/] {escape(str(error.get('message')))}")
        if error.get("hint"):
            console.print(f"[dim]hint:[/] {escape(str(error['hint']))}")
    timings = [
        ("detected (first failing probe)", record.get("detected_at_s")),
        ("detection after the switch", record.get("detection_after_switch_s")),
        ("time to rollback", record.get("time_to_rollback_s")),
    ]
    for label, value in timings if not record.get("interrupted") else timings[2:]:
        if value is not None:
            console.print(f"[dim]{label}:[/] {value:.2f}s")
    if outcome == "paused":
        console.print(
            "[dim]hint:[/] an inconclusive check is the probe's problem, not the revision's: fix "
            "it (see the probe detail), then deploy again; `safeship rollback` returns traffic "
            "at once if it moved"
        )


def render_status(data: Mapping[str, Any], console: Console) -> None:
    front = data.get("front_url") or "-"
    serving = data.get("serving") or "nothing"
    health = data.get("health", {})
    front_health = health.get("front", {})
    ready = front_health.get("category")
    shown = "[green]ready[/]" if ready == "ok" else f"[red]{escape(str(ready or 'unknown'))}[/]"
    console.print(
        f"[bold]{escape(front)}[/] serves [bold]{escape(serving)}[/]"
        + (f" ({shown})" if data.get("serving") else "")
    )
    for line in data.get("recovered", []):
        console.print(f"[yellow]recovered:[/] {escape(line)}")
    for problem in data.get("problems", []):
        console.print(f"[red]problem:[/] {escape(problem)}")
    revisions = data.get("revisions", [])
    if not revisions:
        console.print("nothing deployed yet: run `safeship deploy`")
        return
    table = Table(show_edge=False)
    for column in ("revision", "status", "serving", "ready", "port", "pid", "created"):
        table.add_column(column, no_wrap=True)
    for rev in reversed(revisions):
        category = health.get(rev["id"], {}).get("category")
        ready_text = {None: "", "ok": "[green]yes[/]"}.get(category, f"[red]{category}[/]")
        table.add_row(
            rev["id"],
            rev["status"],
            "[bold green]◀[/]" if rev["id"] == data.get("serving") else "",
            ready_text,
            str(rev.get("port") or ""),
            str(rev.get("pid") or ""),
            time.strftime("%m-%d %H:%M:%S", time.localtime(rev["created"])),
        )
    console.print(table)
    last = data.get("last_deploy")
    if last:
        console.print(
            f"[dim]last:[/] {last['id']} {last['kind']} {last['status']}: {escape(str(last.get('reason', '')))}"
        )


def render_history(rows: Sequence[Mapping[str, Any]], console: Console) -> None:
    if not rows:
        console.print("no deploys yet")
        return
    for row in rows:
        status = str(row["status"])
        style = _OUTCOME_STYLE.get(status, "red" if status != "running" else "")
        shown = f"[{style}]{status}[/]" if style else status
        moved = f"{row.get('previous') or '-'} → {row.get('revision') or '-'}"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started"]))
        console.print(
            f"[bold]{row['id']}[/] {row['kind']} {shown}  {row.get('env') or ''}  {moved}  "
            f"[dim]{started}  {_secs(row.get('duration_s'))}[/]"
        )
        if row.get("reason"):
            console.print(f"    [dim]{escape(str(row['reason']))}[/]")


def render_down(done: Sequence[str], console: Console) -> None:
    for line in done:
        console.print(f"{_mark('ok')} {escape(line)}")
    if not done:
        console.print("nothing was running")
