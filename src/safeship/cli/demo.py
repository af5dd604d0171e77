"""``safeship demo``: the staging incident replayed on the local target, and prevented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


class EventLines:
    """Prints one line for each step that starts or ends and each event of the story."""

    def __init__(self, story: Any, write: Any) -> None:
        self.story, self.write = story, write
        self.events = 0
        self.status: dict[str, str] = {}

    def __call__(self) -> None:
        story = self.story
        for step in story.steps:
            if self.status.get(step.id, "pending") != step.status:
                self.status[step.id] = step.status
                if step.status == "running":
                    self.write(f"t={story.now():.0f}s  {step.title}")
                elif step.status in ("done", "unexpected"):
                    mark = "ok" if step.status == "done" else "UNEXPECTED"
                    self.write(f"t={story.now():.0f}s  {step.id} {mark}: {step.outcome}")
        for event in story.events[self.events :]:
            serving = story.serving or "nothing"
            self.write(f"t={event['t']:.0f}s  {event['label']} (serving {serving})")
        self.events = len(story.events)


def run_demo(base: Path, *, as_json: bool) -> int:
    import asyncio

    from rich.live import Live

    from ..demo.html import render_html
    from ..demo.story import Story
    from ._output import console, emit_json, make_console
    from .demo_view import live_panel, summary_view

    story = Story(base)
    if as_json:
        report = asyncio.run(story.run())
    elif console.is_terminal:
        # The live panel wraps its lines inside its frame; every other line is one line.
        framed = make_console(soft_wrap=False)
        with Live(live_panel(story), console=framed, refresh_per_second=8, transient=False) as live:
            story.on_change = lambda: live.update(live_panel(story))
            report = asyncio.run(story.run())
    else:
        # A CI log: one line per event, never a redrawn panel.
        story.on_change = EventLines(story, print)
        report = asyncio.run(story.run())
    paths = {"json": base / "report.json", "html": base / "report.html"}
    report["reports"] = {k: str(v) for k, v in paths.items()}
    base.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["html"].write_text(render_html(report))
    if as_json:
        emit_json(report)
    else:
        console.print(summary_view(report))
        console.print(f"reports: {paths['json']}  {paths['html']}")
    return 0 if report["ok"] else 1


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        directory: Path = typer.Option(
            Path(".safeship/demo"),
            "--dir",
            metavar="DIR",
            help="Where the demo's project and reports go.",
        ),
    ) -> None:
        """Replay the staging incident on the local target and show safeship preventing it.

        Deploys six revisions of the reference backend under a real client load: the latent
        NameError, a revision that never becomes ready, the JWT secret mismatch and a revision
        that goes bad after the switch are each stopped; a good change is promoted with no
        events lost. Exit code 0 when every
        step went as the story says, 1 otherwise.
        """
        import asyncio

        from ._output import err_console

        try:
            code = run_demo(directory, as_json=json_output)
        except (KeyboardInterrupt, asyncio.CancelledError):
            err_console.print("demo interrupted: every process it started was stopped")
            code = 130
        raise typer.Exit(code)
