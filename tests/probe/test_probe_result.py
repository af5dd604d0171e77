from __future__ import annotations

import json

import pytest

from safeship.core.verdict import Verdict, VerdictKind
from safeship.probe.result import ProbeResult, StepResult, display_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
        ("wss://user:pw@example.com/ws", "wss://example.com/ws"),
        ("ws://h/ws?ticket=abc&room=1", "ws://h/ws?ticket=[redacted]&room=1"),
        (
            "http://h/x?token=t&access_token=u#frag",
            "http://h/x?token=[redacted]&access_token=[redacted]",
        ),
    ],
)
def test_display_url_hides_credentials(url, shown):
    assert display_url(url) == shown


def test_as_dict_shape():
    result = ProbeResult(
        url="ws://h/ws",
        verdict=Verdict(VerdictKind.OK, "fine"),
        timings={"dns": 1.23456, "tcp": 0.5, "upgrade": 2.0, "total": 4.0},
        steps=[StepResult(1, "probe-1", True, 1.5, "matched", 2)],
        messages_seen=3,
        subprotocol="jwt-auth",
        token_source="a static token",
    )
    data = result.as_dict()
    json.dumps(data)
    assert data["ok"] is True
    assert data["verdict"]["kind"] == "ok"
    assert data["timings"] == {
        "dns": 1.23,
        "tcp": 0.5,
        "upgrade": 2.0,
        "total": 4.0,
        "steps": [1.5],
    }
    assert data["steps"][0] == {
        "index": 1,
        "request_id": "probe-1",
        "passed": True,
        "ms": 1.5,
        "detail": "matched",
        "skipped_messages": 2,
    }
    assert data["messages_seen"] == 3
