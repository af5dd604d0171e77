"""What ``safeship monitor`` prints: a table for ``--once``; for the long run, one line when
an endpoint's outcome changes and one per incident (``--json``: one JSON object per line)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ._output import console

if TYPE_CHECKING:
    from ..monitor.operations import MonitorRun
    from ..monitor.probing import Sample
    from ..monitor.scheduler import IncidentEvent

__all__ = ["MonitorView", "render_once"]


def render_once(result: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("endpoint", "outcome", "handshake", "detail"):
        table.add_column(column, overflow="fold")
    for sample in result["samples"]:
        key = sample["env"] + (f"@{sample['revision']}" if sample["revision"] else "")
        outcome = "[green]ok[/]" if sample["ok"] else f"[red]{sample['category']}[/]"
        ms = sample["handshake_ms"]
        table.add_row(
            escape(key), outcome, "-" if ms is None else f"{ms:.0f} ms", escape(sample["detail"])
        )
    console.print(table)
    failed = [s for s in result["samples"] if not s["ok"]]
    if failed:
        envs = sorted({s["env"] for s in failed})
        console.print(
            f"[red]{len(failed)} of {len(result['samples'])} probes failed[/]; see more: "
            + ", ".join(f"safeship diagnose --env {e}" for e in envs)
        )
    else:
        console.print(f"[green]all {len(result['samples'])} probes passed[/]")


class MonitorView:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._last: dict[str, str] = {}

    def _line(self, data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        sys.stdout.flush()

    def started(self, run: MonitorRun, url: str | None, notify: str) -> None:
        monitor = run.monitor
        keys = [e.key for e in monitor.endpoints]
        if self.as_json:
            self._line(
                {"event": "started", "endpoints": keys, "interval": monitor.settings.interval,
                 "listen": url, "notify": notify}
            )  # fmt: skip
            return
        console.print(
            f"monitoring {', '.join(keys)} every {monitor.settings.interval:g}s"
            + (f"; metrics and analysis on {url}" if url else "")
            + f"; notifications: {notify}. Ctrl-C stops."
        )

    def sample(self, sample: Sample) -> None:
        key = sample.endpoint.key
        outcome = sample.category
        if self._last.get(key) == outcome:
            return
        self._last[key] = outcome
        if self.as_json:
            self._line({"event": "probe", **sample.as_dict()})
            return
        from rich.markup import escape

        stamp = time.strftime("%H:%M:%S", time.localtime(sample.at))
        colour = "green" if sample.ok else "red"
        console.print(f"{stamp} {escape(key)}: [{colour}]{outcome}[/] {escape(sample.detail)}")

    def incident(self, event: IncidentEvent) -> None:
        t = event.transition
        if self.as_json:
            self._line(
                {"event": event.kind, "env": event.endpoint.env, "revision": event.endpoint.revision,
                 "class": str(t.check), "at": t.at, "detail": t.detail,
                 "explanation": event.explanation}
            )  # fmt: skip
            return
        from rich.markup import escape

        opened = t.change == "opened"
        colour = "bold red" if opened else "bold green"
        what = "incident opened" if opened else "incident resolved"
        console.print(
            f"[{colour}]{what}[/] {escape(event.endpoint.key)} {t.check}: {escape(t.detail)}"
            + (f" -- {escape(event.explanation)}" if event.explanation else "")
        )

    def stopped(self) -> None:
        if self.as_json:
            self._line({"event": "stopped"})
        else:
            console.print("monitor stopped")
