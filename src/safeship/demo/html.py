"""The demo's self-contained HTML report: the timeline of the client success rate with the deploy
events marked on it, the steps, and the summary table. No scripts, fonts or images from the
network: one file that opens anywhere."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_html"]

_WIDTH, _HEIGHT, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 960, 300, 56, 24, 24, 44

_KIND_COLOR = {
    "deploy": "#2563eb",
    "blocked": "#d97706",
    "rollback": "#dc2626",
    "promoted": "#16a34a",
    "info": "#6b7280",
}

_PILL = {"promoted": "promoted", "blocked": "stopped", "rollback": "rolled back"}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#111827;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .3rem} h2{font-size:1.2rem;margin:2rem 0 .6rem}
.sub{color:#6b7280;margin:0 0 1.2rem}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border-bottom:1px solid #e5e7eb;padding:.45rem .5rem;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}
.ok{color:#16a34a;font-weight:600}.bad{color:#dc2626;font-weight:600}
.pill{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:12px;color:#fff;white-space:nowrap}
svg text{font:12px system-ui,sans-serif;fill:#374151}
.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.kpi{border:1px solid #e5e7eb;border-radius:8px;padding:.6rem .9rem;min-width:150px}
.kpi b{display:block;font-size:1.4rem}
"""


def render_html(report: dict[str, Any]) -> str:
    """Render the demo report (the same dict ``safeship demo --json`` prints)."""
    summary = report.get("summary", {})
    load = report.get("load", {})
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        "<title>safeship demo report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>safeship demo: the staging incident, replayed and prevented</h1>",
        f"<p class=sub>{escape(str(report.get('started_at', '')))} &middot; "
        f"{float(report.get('duration_s', 0)):.0f} s &middot; environment "
        f"{escape(str(report.get('env', 'staging')))} &middot; local target</p>",
        _kpis(load, summary),
        "<h2 id=timeline>Client success rate over time</h2>",
        _chart(report.get("timeline", []), report.get("events", [])),
        "<h2 id=summary>Summary</h2>",
        _summary_table(summary.get("rows", [])),
        "<h2 id=steps>Steps</h2>",
        _steps_table(report.get("steps", [])),
        f"<p class=sub>Audit log: {_ok(summary.get('audit_ok'))} "
        f"{escape(str(summary.get('audit_detail', '')))}</p>",
        "</body></html>",
    ]
    return "".join(parts)


def _ok(value: Any) -> str:
    return "<span class=ok>verified</span>" if value else "<span class=bad>BROKEN</span>"


def _kpis(load: dict[str, Any], summary: dict[str, Any]) -> str:
    items = [
        ("client connections", load.get("connects_ok", 0) + load.get("connects_failed", 0)),
        ("failed connections", load.get("connects_failed", 0)),
        ("events received", load.get("events", 0)),
        ("events lost", load.get("lost", 0)),
        ("rollback after first failure", _seconds(summary.get("rollback_seconds"))),
    ]
    cells = "".join(f"<div class=kpi>{escape(k)}<b>{escape(str(v))}</b></div>" for k, v in items)
    return f"<div class=kpis>{cells}</div>"


def _seconds(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"


def _chart(timeline: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """An inline SVG: success rate per second as a line, failures as red bars, events as
    labelled vertical markers. Every attribute is quoted: in HTML an unquoted value swallows a
    following ``/`` and leaves the element open."""
    if not timeline:
        return "<p class=sub>No client load was recorded.</p>"
    t_end = max([float(p["t"]) for p in timeline] + [float(e.get("t", 0)) for e in events] + [1.0])
    inner_w, inner_h = _WIDTH - _PAD_L - _PAD_R, _HEIGHT - _PAD_T - _PAD_B

    def x(t: float) -> float:
        return _PAD_L + inner_w * (t / t_end)

    def y(rate: float) -> float:
        return _PAD_T + inner_h * (1 - rate)

    out = [
        f'<svg id="chart" role="img" aria-label="client success rate over time" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%">'
    ]
    for rate in (0, 0.5, 1):
        out.append(
            f'<line x1="{_PAD_L}" x2="{_WIDTH - _PAD_R}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" '
            'stroke="#e5e7eb"/>'
            f'<text x="{_PAD_L - 8}" y="{y(rate) + 4:.1f}" text-anchor="end">{rate:.0%}</text>'
        )
    max_failed = max((int(p.get("failed", 0)) for p in timeline), default=0)
    for p in timeline:
        failed = int(p.get("failed", 0))
        if failed:
            height = inner_h * 0.35 * failed / max(max_failed, 1)
            out.append(
                f'<rect class="failures" x="{x(float(p["t"])) - 2:.1f}" '
                f'y="{_PAD_T + inner_h - height:.1f}" width="4" height="{height:.1f}" '
                f'fill="#fca5a5"><title>{failed} failed at {float(p["t"]):.0f}s</title></rect>'
            )
    points = " ".join(
        f"{x(float(p['t'])):.1f},{y(_rate(p)):.1f}"
        for p in timeline
        if int(p.get("ok", 0)) + int(p.get("failed", 0))
    )
    out.append(
        f'<polyline class="rate" points="{points}" fill="none" stroke="#16a34a" stroke-width="2"/>'
    )
    for i, event in enumerate(events):
        ex = x(float(event.get("t", 0)))
        color = _KIND_COLOR.get(str(event.get("kind")), _KIND_COLOR["info"])
        label = escape(str(event.get("label", "")))
        ly = _PAD_T + 12 + (i % 5) * 14
        right = ex < _PAD_L + inner_w * 0.7  # labels near the right edge grow leftwards
        out.append(
            f'<g class="event"><line x1="{ex:.1f}" x2="{ex:.1f}" y1="{_PAD_T}" '
            f'y2="{_PAD_T + inner_h}" stroke="{color}" stroke-dasharray="4 3"/>'
            f'<text x="{ex + 3 if right else ex - 3:.1f}" y="{ly}" fill="{color}" '
            f'text-anchor="{"start" if right else "end"}">{label}</text></g>'
        )
    out.append(
        f'<text x="{_PAD_L + inner_w / 2:.0f}" y="{_HEIGHT - 10}" text-anchor="middle">'
        "seconds since the demo started</text></svg>"
    )
    return "".join(out)


def _rate(point: dict[str, Any]) -> float:
    ok, failed = int(point.get("ok", 0)), int(point.get("failed", 0))
    return ok / (ok + failed) if ok + failed else 1.0


def _summary_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "<table id=summary-table><tr><th>failure mode</th><th>caught at</th>"
        "<th>client connections failed</th><th>time to a safe state</th>"
        "<th>the original pipeline</th></tr>"
    )
    body = "".join(
        "<tr>"
        f"<td>{escape(str(r.get('failure', '')))}</td>"
        f"<td>{escape(str(r.get('caught_at', '')))}</td>"
        f"<td>{escape(str(r.get('client_failures', '')))}</td>"
        f"<td>{escape(_seconds(r.get('time_to_safe_s')))}</td>"
        f"<td>{escape(str(r.get('original', '')))}</td>"
        "</tr>"
        for r in rows
    )
    return head + body + "</table>"


def _steps_table(steps: list[dict[str, Any]]) -> str:
    head = (
        "<table id=steps-table><tr><th>step</th><th>outcome</th><th>detail</th><th>time</th></tr>"
    )
    body = "".join(
        "<tr>"
        f"<td>{escape(str(s.get('title', '')))}</td>"
        f"<td><span class=pill style='background:{_KIND_COLOR.get(str(s.get('kind')), '#6b7280')}'>"
        f"{escape(_PILL.get(str(s.get('kind')), str(s.get('kind'))))}</span> "
        f"{escape(str(s.get('outcome', '')))}</td>"
        f"<td>{escape(str(s.get('detail', '')))}</td>"
        f"<td>{float(s.get('duration_s', 0)):.1f} s</td>"
        "</tr>"
        for s in steps
    )
    return head + body + "</table>"
