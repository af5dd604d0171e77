"""Notifications through apprise to real HTTP receivers on loopback: a generic JSON webhook
(``json://``) and a Slack-compatible incoming webhook.

apprise's Slack plugin cannot be pointed at loopback: its hosts are class attributes
(``hooks.slack.com``, ``hooks.slack-gov.com``) and its URL forms carry only the tokens. The
Slack-compatible endpoint is reached through the Mattermost form (``mmost://host:port/token``),
which posts Slack's incoming-webhook payload (``text``, ``username``, ``icon_url``) to
``/hooks/<token>``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from safeship.config import Manifest, NotifyConfig
from safeship.core.notify import NotifyGate
from safeship.core.slo import Change, CheckClass, Transition
from safeship.deploy.record import Event
from safeship.errors import ConfigError
from safeship.monitor.endpoints import Endpoint
from safeship.monitor.notify import Notifier, deploy_notice, incident_notice
from safeship.monitor.probing import Sample
from safeship.monitor.scheduler import IncidentEvent
from safeship.testing import wait_until

from .conftest import SECRET


@dataclass
class Receiver:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bodies(self) -> list[Any]:
        return [r["json"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length).decode()
            received.append({"path": self.path, "json": json.loads(raw), "raw": raw})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server.server_address[1], received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def auth_event(change: Change, at: float = 10.0) -> IncidentEvent:
    endpoint = Endpoint("staging", "http://127.0.0.1:8700", "r2")
    sample = Sample(
        endpoint,
        at,
        "auth" if change is Change.OPENED else "ok",
        "http_status" if change is Change.OPENED else "ok",
        "HTTP 401 to the upgrade; error=invalid_token"
        if change is Change.OPENED
        else "WebSocket upgrade accepted",
        code=401 if change is Change.OPENED else None,
        hint="sign it with the secret the service expects",
    )
    transition = Transition(
        CheckClass.AUTH, change, at, sample.detail, None if change is Change.OPENED else 4.0
    )
    explanation = "clients sign with JWT_SECRET_STAGING fingerprint 1a2b3c; backend DIFFERENT"
    return IncidentEvent(endpoint, transition, sample, explanation)


def test_an_incident_and_its_resolution_reach_a_json_webhook(receiver: Receiver):
    notifier = Notifier([f"json://127.0.0.1:{receiver.port}/hooks/safeship"])

    async def scenario() -> None:
        assert await notifier.incident(auth_event(Change.OPENED))
        assert not await notifier.incident(auth_event(Change.OPENED, 11.0))  # duplicate
        assert await notifier.incident(auth_event(Change.RESOLVED, 20.0))

    asyncio.run(scenario())
    assert [r["path"] for r in receiver.requests] == ["/hooks/safeship"] * 2
    opened, resolved = receiver.bodies
    assert opened["type"] == "failure" and resolved["type"] == "success"
    assert opened["title"] == "safeship: incident opened (staging r2)"
    message = opened["message"]
    assert "auth incident on staging@r2" in message and "HTTP 401" in message
    assert "fingerprint 1a2b3c" in message  # the error behind the error
    assert "revision: r2" in message and "see more: safeship diagnose --env staging" in message
    assert "resolved after 16s" in resolved["message"]


def test_a_slack_compatible_webhook_gets_slack_s_payload(receiver: Receiver):
    notifier = Notifier([f"mmost://127.0.0.1:{receiver.port}/tok3n"])
    assert asyncio.run(notifier.incident(auth_event(Change.OPENED)))
    (request,) = receiver.requests
    assert request["path"] == "/hooks/tok3n"
    payload = request["json"]
    assert set(payload) >= {"text", "username"}
    assert "auth incident on staging@r2" in payload["text"]
    assert "safeship diagnose --env staging" in payload["text"]


def test_no_secret_reaches_a_payload(receiver: Receiver, monkeypatch: pytest.MonkeyPatch):
    from safeship.secrets import register_secret

    register_secret(SECRET)
    notifier = Notifier([f"json://127.0.0.1:{receiver.port}/x"])
    event = auth_event(Change.OPENED)
    leaky = IncidentEvent(event.endpoint, event.transition, event.sample, f"value was {SECRET}")
    assert asyncio.run(notifier.incident(leaky))
    assert SECRET not in receiver.requests[0]["raw"]


def test_the_rate_limit_holds_and_the_next_message_says_so(receiver: Receiver):
    gate = NotifyGate(dedupe_seconds=0, max_messages=2, per_seconds=3600)
    notifier = Notifier([f"json://127.0.0.1:{receiver.port}/x"], gate=gate)
    notices = [
        deploy_notice(Event("note", "canary", "info", 0, f"{p}%"), "s") for p in (10, 20, 30)
    ]
    sent = [asyncio.run(notifier.send(n)) for n in notices if n is not None]
    assert sent == [True, True, False] and len(receiver.requests) == 2


def test_events_outside_the_configured_kinds_are_not_sent(receiver: Receiver):
    notifier = Notifier([f"json://127.0.0.1:{receiver.port}/x"], events=["incident_opened"])
    canary = deploy_notice(Event("note", "canary", "info", 0, "10% to r2"), "staging")
    assert canary is not None and not asyncio.run(notifier.send(canary))
    assert receiver.requests == []


def test_deploy_events_are_sent_from_the_pipeline_s_sink(receiver: Receiver):
    notifier = Notifier([f"json://127.0.0.1:{receiver.port}/x"])
    seen: list[Event] = []
    reason = "r2 failed verification with auth"
    record = {
        "id": "d7",
        "candidate": "r2",
        "previous": "r1",
        "reason": "r2 failed verification with auth",
        "verification": [{"what": "websocket", "category": "auth", "detail": "HTTP 401"}],
    }

    async def deploy() -> None:
        sink = notifier.deploy_sink("staging", seen.append)
        sink(Event("step", "verify", "running", 0.0))
        sink(Event("outcome", "failed", "failed", 3.0, reason, data=record))
        await notifier.flush()

    asyncio.run(deploy())
    assert len(seen) == 2  # the progress view still gets everything
    wait_until(lambda: len(receiver.requests) == 1, timeout=5, what="the notification")
    message = receiver.bodies[0]["message"]
    assert "failed" in receiver.bodies[0]["title"] and "revision: r2" in message
    assert "cause: websocket: HTTP 401" in message


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (Event("step", "verify", "ok", 1, "r2 verified"), "verified"),
        (Event("step", "switch", "ok", 1, "new connections go to r2"), "switched"),
        (Event("note", "canary", "info", 1, "10% of new connections go to r2"), "canary_step"),
        (Event("outcome", "promoted", "promoted", 9, "r2 serves", data={"candidate": "r2"}), "promoted"),
        (Event("outcome", "rolled_back", "rolled_back", 9, "1011s", data={"candidate": "r2"}), "rolled_back"),
        (Event("outcome", "paused", "paused", 9, "inconclusive", data={}), "paused"),
        (Event("outcome", "blocked", "blocked", 9, "gate static", data={}), "blocked"),
        (Event("step", "verify", "running", 1), None),
        (Event("probe", "watch", "ok", 1), None),
        (Event("outcome", "cancelled", "cancelled", 1, "Ctrl-C", data={}), None),
    ],
)  # fmt: skip
def test_which_deploy_events_notify(event: Event, kind: str | None):
    notice = deploy_notice(event, "staging")
    assert (notice.kind if notice else None) == kind


def test_a_blocked_deploy_names_the_gate_s_finding():
    finding = "agents/history.py:12: F821: undefined name 'DatabaseSessionManager'"
    record = {
        "candidate": None,
        "gates": [
            {"gate": "secrets", "status": "passed", "top": []},
            {"gate": "static", "status": "failed",
             "top": [finding]},
        ],
    }  # fmt: skip
    event = Event("outcome", "failed", "failed", 2, "gates failed: static", data=record)
    notice = deploy_notice(event, "s")
    assert notice is not None and notice.kind == "blocked"
    assert notice.cause == f"gate static: {finding}"


def test_a_resolution_names_no_diagnose_but_a_check():
    notice = incident_notice(auth_event(Change.RESOLVED))
    assert notice.resolves == "incident_opened|staging@r2|auth"
    assert notice.command == "safeship monitor --once --env staging"


def test_urls_come_from_the_environment_only():
    manifest = Manifest(notify=NotifyConfig(urls_env="MY_HOOKS"))
    assert not Notifier.from_manifest(manifest, {}).enabled
    assert "$MY_HOOKS is not set" in Notifier.from_manifest(manifest, {}).describe()
    on = Notifier.from_manifest(
        manifest, {"MY_HOOKS": "json://127.0.0.1:9/a, json://127.0.0.1:9/b"}
    )
    assert on.describe() == "2 URL(s) from $MY_HOOKS"


def test_a_bad_url_is_named_by_position_not_shown():
    with pytest.raises(ConfigError) as caught:
        Notifier(["json://127.0.0.1:9/a", "nosuchscheme://s3cr3t-token@x"], source="HOOKS")
    assert "#2" in caught.value.message and "s3cr3t" not in caught.value.message


def test_unknown_event_kinds_are_a_config_error():
    manifest = Manifest(notify=NotifyConfig(events=["promoted", "exploded"]))
    with pytest.raises(ConfigError, match="exploded"):
        Notifier.from_manifest(manifest, {})
