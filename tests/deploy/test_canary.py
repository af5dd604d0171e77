"""Reading a revision's counters from its real ``/metrics`` (a service built on safeship, under
uvicorn), as a canary step does."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from safeship.core.canary import Counts, compare
from safeship.deploy.canary import MetricsReader, parse_counts
from safeship.service.metrics import Metrics
from safeship.testing import free_port, run_server, scaled
from safeship.tokens import mint

from ..service.conftest import SECRET, make_app


def test_parse_counts_reads_safeship_counters() -> None:
    from prometheus_client.exposition import generate_latest

    metrics = Metrics()
    metrics.handshakes.labels("accepted").inc(5)
    metrics.handshakes.labels("unauthorized").inc(2)
    metrics.closes.labels("1011").inc(1)
    metrics.closes.labels("4401").inc(1)
    metrics.closes.labels("1000").inc(3)
    assert parse_counts(generate_latest(metrics.registry).decode()) == Counts(7, 2, 5, 2)


@pytest.mark.parametrize("text", ["", "other_metric_total 3\n", "garbage{{{"])
def test_text_without_safeship_counters_is_none(text: str) -> None:
    assert parse_counts(text) is None


def test_a_real_service_counts_its_denials_and_failed_connections() -> None:
    _, app = make_app()
    reader = MetricsReader(timeout=scaled(5))

    async def scenario(url: str) -> tuple[Counts | None, Counts | None]:
        ws = url.replace("http://", "ws://") + "/ws"
        before = await reader.counts(url)
        with pytest.raises(InvalidStatus):
            async with connect(ws, additional_headers={"authorization": "Bearer nope"}):
                pass
        headers = {"authorization": f"Bearer {mint(SECRET, 'alice')}"}
        async with connect(ws, additional_headers=headers) as client:
            await asyncio.wait_for(client.recv(), scaled(5))  # the hello
            await client.send("boom")  # the handler raises: the guard closes with 1011
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(client.recv(), scaled(5))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        return before, await reader.counts(url)

    with run_server(app) as url:
        before, after = asyncio.run(scenario(url))
    assert before is not None and after is not None
    assert after.since(before) == Counts(handshakes=2, denied=1, accepted=1, bad_closes=1)
    verdict = compare(after.since(before), Counts(10, 0, 10, 0), min_connections=2)
    assert verdict.category == "internal_error"


def test_no_metrics_or_no_service_is_none() -> None:
    async def plain(request: object) -> PlainTextResponse:
        return PlainTextResponse("no metrics here")

    reader = MetricsReader(timeout=scaled(5))
    with run_server(Starlette(routes=[Route("/metrics", plain)])) as url:
        assert asyncio.run(reader.counts(url)) is None
    assert asyncio.run(reader.counts(f"http://127.0.0.1:{free_port()}")) is None


def test_the_platforms_own_headers_go_with_the_read() -> None:
    from starlette.requests import Request

    from safeship.errors import TargetError

    text = 'safeship_websocket_handshakes_total{outcome="accepted"} 4.0\n'

    async def guarded(request: Request) -> PlainTextResponse:
        if request.headers.get("x-serverless-authorization") != "Bearer google-id":
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse(text)

    async def platform(url: str) -> dict[str, str]:
        return {"x-serverless-authorization": "Bearer google-id"}

    async def no_credential(url: str) -> dict[str, str]:
        raise TargetError("no Google credentials")

    app = Starlette(routes=[Route("/metrics", guarded)])
    with run_server(app) as url:
        assert asyncio.run(MetricsReader(timeout=scaled(5)).counts(url)) is None
        read = asyncio.run(MetricsReader(timeout=scaled(5), headers=platform).counts(url))
        assert read == Counts(4, 0, 4, 0)
        assert asyncio.run(MetricsReader(headers=no_credential).counts(url)) is None
