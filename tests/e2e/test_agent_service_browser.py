"""A real browser (Chromium through Playwright) on the reference service: browsers cannot set
an Authorization header on a WebSocket, so the page sends its token as a subprotocol."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from safeship.testing import run_server, scaled

from .conftest_agent import agent_server, token  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>agent service</title></head>
<body><pre id="log"></pre>
<script>
const params = new URLSearchParams(location.search);
const b64url = (text) => btoa(text).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
window.events = [];
window.closeCode = null;
const ws = new WebSocket(params.get("ws"), ["jwt-auth", "jwt." + b64url(params.get("token"))]);
ws.onopen = () => { window.protocol = ws.protocol; };
ws.onmessage = (message) => {
  const data = JSON.parse(message.data);
  window.events.push(data);
  document.getElementById("log").textContent += message.data + "\\n";
  if (data.type === "connection_established") {
    ws.send(JSON.stringify({type: "start_agent", agent: "wordcount", input: "hello from a browser", request_id: "b1"}));
  }
};
ws.onclose = (event) => { window.closeCode = event.code; window.closeReason = event.reason; };
</script></body></html>
"""


async def page(request):
    return HTMLResponse(PAGE)


@pytest.fixture(scope="module")
def page_server():
    with run_server(Starlette(routes=[Route("/", page)])) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=scaled(30) * 1000
        )
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, page_server: str, ws_url: str, jwt: str):
    from urllib.parse import urlencode

    tab = browser.new_page()
    tab.goto(f"{page_server}/?{urlencode({'ws': ws_url, 'token': jwt})}", timeout=scaled(15) * 1000)
    return tab


def test_a_browser_runs_wordcount_with_a_subprotocol_token(browser, page_server, agent_server):  # noqa: F811
    tab = open_page(browser, page_server, agent_server.ws_url + "/ws", token("browser-user"))
    try:
        tab.wait_for_function(
            "window.events.some((e) => e.type === 'agent_completed')", timeout=scaled(15) * 1000
        )
        events = tab.evaluate("window.events")
        assert tab.evaluate("window.protocol") == "jwt-auth"  # the token itself is never echoed
    finally:
        tab.close()
    assert events[0]["type"] == "connection_established" and events[0]["user"] == "browser-user"
    run = [e for e in events[1:] if "seq" in e]
    assert [e["type"] for e in run] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed",
    ]  # fmt: skip
    assert run[0]["request_id"] == "b1"
    assert run[-1]["payload"]["output"]["words"] == 4, json.dumps(run[-1])


def test_a_browser_with_an_expired_token_sees_close_code_4401(browser, page_server, agent_server):  # noqa: F811
    tab = open_page(
        browser, page_server, agent_server.ws_url + "/ws", token("browser-user", ttl=-120)
    )
    try:
        tab.wait_for_function("window.closeCode !== null", timeout=scaled(15) * 1000)
        assert tab.evaluate("window.closeCode") == 4401
        assert tab.evaluate("window.events") == []
    finally:
        tab.close()
