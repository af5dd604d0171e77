"""``safeship monitor``: probe environments continuously (or ``--once``), alert per class.

Exit codes: ``--once``: 0 every probe passed, 1 any failed; the long-running monitor: 0 when
stopped with Ctrl-C or SIGTERM; 2 usage or config error (an environment with no URL, no secret
to mint probe tokens from, a port in use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..config import Manifest
    from ._monitor_view import MonitorView

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def monitor(
        env: list[str] = typer.Option(
            [],
            "--env",
            metavar="ENV",
            help="Environment to probe; repeatable (default: [monitor] environments, else "
            "every environment with a url plus the one the target serves).",
        ),
        once: bool = typer.Option(
            False, "--once", help="Probe each environment once and exit (cron, CronJobs)."
        ),
        listen: str | None = typer.Option(
            None,
            "--listen",
            metavar="HOST:PORT",
            help="Serve /metrics and /analysis here (default: [monitor] listen; '' for none).",
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print JSON: the probes (--once), or one line per event."
        ),
    ) -> None:
        """Probe health, an authenticated handshake and a round trip; alert per class."""
        import asyncio

        from ..config import load_manifest
        from ._monitor_view import MonitorView, render_once

        manifest = load_manifest()
        if once:
            result = asyncio.run(_once(manifest, env))
            if json_output:
                from ._output import emit_json

                emit_json(result)
            else:
                render_once(result)
            raise typer.Exit(0 if result["ok"] else 1)
        address = manifest.monitor.listen if listen is None else listen
        asyncio.run(_forever(manifest, env, address, MonitorView(json_output)))


async def _once(manifest: Manifest, envs: list[str]) -> dict[str, object]:
    from ..monitor.notify import Notifier
    from ..monitor.operations import build_monitor, monitor_once

    # Each run picks up the history of the runs before it, so cron runs at an interval
    # open incidents with the same thresholds (and notify) as the long-running monitor.
    notifier = Notifier.from_manifest(manifest)
    run = await build_monitor(manifest, envs, on_incident=notifier.incident)
    try:
        run.monitor.restore()
        return await monitor_once(run)
    finally:
        await notifier.close()
        if run.monitor.history is not None:
            run.monitor.history.close()


async def _forever(manifest: Manifest, envs: list[str], listen: str, view: MonitorView) -> None:
    import asyncio
    import signal

    from ..monitor.notify import Notifier
    from ..monitor.operations import build_monitor, monitor_forever
    from ..monitor.scheduler import IncidentEvent

    notifier = Notifier.from_manifest(manifest)

    async def on_incident(event: IncidentEvent) -> None:
        view.incident(event)
        await notifier.incident(event)

    run = await build_monitor(manifest, envs, on_incident=on_incident)
    run.monitor.on_sample = view.sample
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await monitor_forever(
            run,
            stop,
            listen=listen or None,
            on_start=lambda url: view.started(run, url, notifier.describe()),
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await notifier.close()
        if run.monitor.history is not None:
            run.monitor.history.close()
    view.stopped()
