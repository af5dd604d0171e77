from __future__ import annotations

import re

from safeship.demo.html import render_html

REPORT = {
    "started_at": "2026-01-01T00:00:00+00:00",
    "duration_s": 60,
    "load": {"connects_ok": 10, "connects_failed": 2, "events": 100, "lost": 0},
    "summary": {"rows": [{"failure": "x <b>", "caught_at": "gate", "client_failures": 0,
                          "time_to_safe_s": 1.5, "original": "y"}],
                "audit_ok": True, "audit_detail": "3 entries", "rollback_seconds": 1.2},
    "steps": [{"title": "r1", "kind": "promoted", "outcome": "promoted", "detail": "", "duration_s": 3}],
    "timeline": [{"t": 1, "ok": 4, "failed": 0}, {"t": 2, "ok": 2, "failed": 2}],
    "events": [{"t": 1.5, "label": "r1 <switched>", "kind": "deploy"}],
}  # fmt: skip


def test_every_svg_attribute_is_quoted():
    # An unquoted value swallows a following "/" and leaves the element open.
    svg = re.search(r"<svg.*</svg>", render_html(REPORT), re.S).group(0)
    assert not re.search(r'=[^"\s>]', svg)


def test_user_text_is_escaped_and_nothing_is_fetched():
    html = render_html(REPORT)
    assert "x &lt;b&gt;" in html and "r1 &lt;switched&gt;" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_failures_are_drawn():
    html = render_html(REPORT)
    assert html.count('class="failures"') == 1
    assert 'class="event"' in html
