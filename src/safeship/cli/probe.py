"""``safeship probe URL``: one WebSocket or HTTP probe, with a verdict and phase timings.

Exit codes: 0 ok, 1 the service failed the probe, 2 usage error or a probe that could not run
(``inconclusive``). The table per verdict kind is in docs/probe.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from ..errors import UsageError
from ._help import HelpInWords

if TYPE_CHECKING:
    from ..probe import ProbeResult, Step

__all__ = ["build_steps", "register"]

_RAW_ARGS = "safeship.probe.raw_args"
_TOKEN_OPTIONS = {
    "token": "--token",
    "file": "--token-file",
    "env": "--secret-env",
    "url": "--token-url",
}


class _ProbeCommand(HelpInWords):
    """Keeps the raw arguments: which ``--expect`` follows which ``--send`` is their order,
    and click groups a repeated option's values without it."""

    # typer vendors its own click; ``Any`` avoids naming its private Context class.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[_RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)


def _ordered_step_options(ctx: typer.Context) -> list[tuple[str, str]]:
    raw: list[str] = ctx.meta.get(_RAW_ARGS, [])
    takes_value = {
        opt
        for param in ctx.command.params
        if param.param_type_name == "option" and not getattr(param, "is_flag", False)
        for opt in param.opts
    }
    ordered: list[tuple[str, str]] = []
    index = 0
    while index < len(raw):
        name, has_value, value = raw[index].partition("=")
        if raw[index] == "--":
            break
        if name in ("--send", "--expect"):
            if not has_value:
                index += 1
                value = raw[index] if index < len(raw) else ""
            ordered.append((name[2:], value))
        elif name in takes_value and not has_value:
            index += 1  # skip the option's value, which may itself look like an option
        index += 1
    return ordered


def build_steps(options: list[tuple[str, str]], step_timeout: float) -> list[Step]:
    """Steps from ``("send"|"expect", value)`` pairs in command-line order.

    Raises:
        UsageError: an ``--expect`` before any ``--send``, bad JSON, or an ``--expect`` without ``=``.
    """
    from ..probe import Step, parse_expect, parse_send

    steps: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for kind, value in options:
        if kind == "send":
            steps.append((parse_send(value), {}))
        elif not steps:
            raise UsageError(
                f"--expect {value!r} comes before any --send",
                hint="each --send starts a step; the --expect options after it check its reply",
            )
        else:
            path, expected = parse_expect(value)
            steps[-1][1][path] = expected
    return [Step(send, expect, step_timeout) for send, expect in steps]


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header expects 'Name: value', got {value[:60]!r}")
        headers[name.strip()] = content.strip()
    return headers


def _render(result: ProbeResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ._output import console

    verdict = result.verdict
    ok = verdict.is_success
    mark = "[bold green]ok[/]" if ok else f"[bold red]{verdict.kind.value}[/]"
    code = f" {verdict.code}" if verdict.code is not None and not ok else ""
    shown = ok or verdict.category.value == verdict.kind.value
    category = "" if shown else f" [dim]({verdict.category.value})[/]"
    console.print(f"{mark}{code}{category}  {escape(verdict.detail)}")
    console.print(f"[dim]url:[/] {escape(result.url)}")
    if result.token_source:
        console.print(f"[dim]token:[/] {escape(result.token_source)}")
    if result.subprotocol:
        console.print(f"[dim]subprotocol:[/] {escape(result.subprotocol)}")
    if verdict.hint and not ok:
        console.print(f"[dim]hint:[/] {escape(verdict.hint)}")

    timings = Table(title="phase timings", title_justify="left", show_edge=False)
    timings.add_column("phase")
    timings.add_column("ms", justify="right")
    for phase, ms in result.timings.items():
        timings.add_row(phase, f"{ms:.1f}", style="bold" if phase == "total" else None)
    console.print(timings)

    if result.steps:
        steps = Table(title="steps", title_justify="left", show_edge=False)
        for column in ("#", "request_id", "result", "ms", "detail"):
            steps.add_column(column, justify="right" if column in ("#", "ms") else "left")
        for step in result.steps:
            steps.add_row(
                str(step.index),
                escape(step.request_id),
                "[green]passed[/]" if step.passed else "[red]failed[/]",
                f"{step.ms:.1f}" if step.ms is not None else "-",
                escape(step.detail),
            )
        console.print(steps)
    if result.messages_seen:
        console.print(f"[dim]messages received:[/] {result.messages_seen}")


def register(app: typer.Typer) -> None:
    @app.command(cls=_ProbeCommand)
    def probe(
        ctx: typer.Context,
        url: str = typer.Argument(
            ..., metavar="URL", help="ws://, wss:// (WebSocket) or http://, https:// URL."
        ),
        token: str | None = typer.Option(None, "--token", metavar="TOKEN", help="Send this token."),
        token_file: str | None = typer.Option(
            None,
            "--token-file",
            metavar="FILE",
            help="Read the token from this file (again on every probe).",
        ),
        secret_env: str | None = typer.Option(
            None,
            "--secret-env",
            metavar="VAR",
            help="Mint a short-lived token from the secret in this variable.",
        ),
        token_url: str | None = typer.Option(
            None, "--token-url", metavar="URL", help='POST here for {"token"|"access_token": ...}.'
        ),
        subprotocol_token: bool = typer.Option(
            False,
            "--subprotocol-token",
            help="Send the token as the jwt.<base64url> subprotocol instead of a header.",
        ),
        send: list[str] = typer.Option(
            [], "--send", metavar="JSON", help="JSON message; starts a step. Repeatable."
        ),
        expect: list[str] = typer.Option(
            [],
            "--expect",
            metavar="PATH=VALUE",
            help="PATH=VALUE the reply to the previous --send must meet.",
        ),
        step_timeout: float = typer.Option(
            5.0, "--step-timeout", min=0.001, metavar="SECONDS", help="Seconds per step."
        ),
        connect_only: bool = typer.Option(
            False, "--connect-only", help="Only check that the upgrade is accepted and stays open."
        ),
        settle: float = typer.Option(
            0.1,
            "--settle",
            min=0.0,
            metavar="SECONDS",
            help="Seconds the connection must stay open without steps.",
        ),
        header: list[str] = typer.Option(
            [], "--header", metavar="'NAME: VALUE'", help="Extra header 'Name: value'."
        ),
        timeout: float = typer.Option(
            10.0, "--timeout", min=0.001, metavar="SECONDS", help="Seconds for the whole probe."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Probe a WebSocket (or HTTP) endpoint: classified verdict, phase timings, step checks."""
        import asyncio

        from ..probe import probe_http, probe_ws, token_source
        from ._output import emit_json

        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in ("ws", "wss", "http", "https"):
            raise UsageError(
                f"cannot probe {url[:80]!r}: the URL must start with ws://, wss://, http:// or https://",
                hint="e.g. safeship probe ws://127.0.0.1:8000/ws",
            )
        given = {
            kind: value
            for kind, value in {
                "token": token,
                "file": token_file,
                "env": secret_env,
                "url": token_url,
            }.items()
            if value is not None
        }
        if len(given) > 1:
            raise UsageError(
                "give one token option, got " + " and ".join(_TOKEN_OPTIONS[k] for k in given),
                hint="use only one of --token, --token-file, --secret-env, --token-url",
            )
        source = token_source(*next(iter(given.items()))) if given else None
        steps = build_steps(_ordered_step_options(ctx), step_timeout)
        if subprotocol_token and source is None:
            raise UsageError(
                "--subprotocol-token needs a token",
                hint="add --token, --token-file, --secret-env or --token-url",
            )
        if connect_only and steps:
            raise UsageError(
                "--connect-only sends nothing, but --send was given", hint="drop one of them"
            )
        extra_headers = _headers(header)
        if scheme in ("http", "https"):
            misplaced = [
                name
                for name, used in (
                    ("--send", bool(steps)),
                    ("--subprotocol-token", subprotocol_token),
                    ("--connect-only", connect_only),
                )
                if used
            ]
            if misplaced:
                raise UsageError(
                    f"{', '.join(misplaced)} only apply to ws:// and wss:// URLs",
                    hint="probe the WebSocket URL, e.g. ws://HOST:PORT/ws",
                )
            result = asyncio.run(
                probe_http(url, timeout=timeout, token_source=source, headers=extra_headers)
            )
        else:
            result = asyncio.run(
                probe_ws(
                    url,
                    token_source=source,
                    subprotocol_token=subprotocol_token,
                    steps=steps,
                    connect_only=connect_only,
                    timeout=timeout,
                    headers=extra_headers,
                    settle=settle,
                )
            )
        if json_output:
            emit_json(result.as_dict())
        else:
            _render(result)
        raise typer.Exit(result.verdict.exit_code)
