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
    "steps": [{"title": "r1", "kind": "promoted", "outcome": "promoted", "detail": "", "duration_s": 3},
              {"title": "r5", "kind": "rollback", "outcome": "rolled back 1.1 s after the first failure",
               "detail": "use `x.y` | forced: z", "duration_s": 3}],
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


def test_no_raw_backticks_and_no_repeated_pill_text():
    html = render_html(REPORT)
    assert "`" not in html and "<code>x.y</code>" in html
    assert "promoted</span> promoted" not in html
    assert "rolled back</span> 1.1 s after the first failure" in html


def test_event_labels_never_overlap_however_close_the_events_are():
    from safeship.demo.html import _label_rows

    events = [{"t": t, "label": f"event number {i} with a long label"} for i, t in
              enumerate([1, 1.2, 1.4, 30, 30.5, 59.9, 60])]  # fmt: skip
    x = lambda t: 64 + 872 * t / 60  # noqa: E731
    placed = _label_rows(events, x)
    boxes = []
    for event, (ex, _anchor, row, grows_right) in zip(events, placed, strict=True):
        width = len(event["label"]) * 6.6 + 6
        lo, hi = (ex, ex + width) if grows_right else (ex - width, ex)
        assert hi <= 960 - 24 + 0.01 or not grows_right
        boxes.append((row, lo, hi))
    for i, (row, lo, hi) in enumerate(boxes):
        for row2, lo2, hi2 in boxes[i + 1 :]:
            assert row != row2 or hi <= lo2 or hi2 <= lo


def test_the_chart_has_labelled_axes_ticks_and_a_legend():
    html = render_html(REPORT)
    assert "seconds since the demo started" in html
    assert "client connections that succeeded" in html
    assert html.count('class="tick y"') == 5 and html.count('class="tick x"') >= 2
    assert 'class="legend"' in html and "failed connections" in html
