"""Asking a real service to drain through its drain endpoint."""

from __future__ import annotations

import asyncio

from safeship.deploy.drain import DrainReply, request_drain
from safeship.testing import free_port, run_server, scaled

from ..service.conftest import SECRET
from ..service.test_drain import PATH, make_app


def call(url: str, secret: str = SECRET, path: str = PATH) -> DrainReply:
    return asyncio.run(request_drain(url, path=path, secret=secret, within=scaled(5)))


def test_a_drain_request_is_accepted_with_the_services_secret() -> None:
    with run_server(make_app()) as url:
        reply = call(url)
        assert reply.ok and reply.status == 202


def test_failures_are_data_that_say_what_to_do() -> None:
    with run_server(make_app(drain_path=None)) as url:
        off = call(url)
        assert not off.ok and off.status in (404, 405) and "drain_path" in off.detail
    with run_server(make_app()) as url:
        wrong = call(url, secret="another-secret-that-is-long-enough-0123456789")
        assert not wrong.ok and wrong.status == 401 and "secret" in wrong.detail
    gone = call(f"http://127.0.0.1:{free_port()}")
    assert not gone.ok and gone.status is None and "could not be reached" in gone.detail
