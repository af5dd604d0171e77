"""The demo's self-contained HTML report: the timeline of the client success rate with the deploy
events marked on it, the steps, and the summary table. No scripts, fonts or images from the
network: one file that opens anywhere."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_html"]

_WIDTH, _PLOT_H, _PAD_L, _PAD_R, _PAD_T, _PAD_B, _LEGEND_H = 960, 220, 64, 24, 8, 44, 40

_KIND_COLOR = {
    "deploy": "#2563eb",
    "blocked": "#d97706",
    "rollback": "#dc2626",
    "promoted": "#16a34a",
    "info": "#6b7280",
}

_PILL = {"promoted": "promoted", "blocked": "stopped", "rollback": "rolled back"}
_EVENT_NAMES = {
    "deploy": "switch",
    "blocked": "stopped before traffic",
    "rollback": "rollback",
    "promoted": "promoted",
}

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
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f4f6;padding:0 .2rem;border-radius:3px;overflow-wrap:anywhere}
td{overflow-wrap:anywhere}
.nowrap{white-space:nowrap}
@media (max-width:640px){
body{margin:1rem auto}
table,thead,tbody,tr,td{display:block;width:100%}
thead{display:none}
tr{border-bottom:2px solid #d1d5db;padding:.4rem 0}
td{border:0;padding:.2rem 0}
td::before{content:attr(data-label);display:block;font-size:12px;color:#6b7280;font-weight:600}
.kpi{min-width:0;flex:1 1 40%}
}
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
        ("client connections", load.get("connections", 0)),
        ("succeeded", load.get("connects_ok", 0)),
        ("failed", load.get("connects_failed", 0)),
        ("events received", load.get("events", 0)),
        ("events lost", load.get("lost", 0)),
        ("rollback after first failure", _seconds(summary.get("rollback_seconds"))),
    ]
    cells = "".join(f"<div class=kpi>{escape(k)}<b>{escape(str(v))}</b></div>" for k, v in items)
    return f"<div class=kpis>{cells}</div>"


def _seconds(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"


_LABEL_CHAR_W = 6.6  # px per character of the 12px label font, a generous estimate
_LABEL_ROW_H = 15


def _label_rows(events: list[dict[str, Any]], x: Any) -> list[tuple[float, str, int, bool]]:
    """Where each event's label goes: ``(x, anchor side, row, grows right)``. A label takes the
    first row where it does not overlap a label already placed, so labels never overlap."""
    placed: list[list[tuple[float, float]]] = []
    out = []
    right_edge = _WIDTH - _PAD_R
    for event in events:
        ex = x(float(event.get("t", 0)))
        width = len(str(event.get("label", ""))) * _LABEL_CHAR_W + 6
        grows_right = ex + width <= right_edge
        lo, hi = (ex, ex + width) if grows_right else (ex - width, ex)
        row = 0
        while row < len(placed) and any(lo < b and a < hi for a, b in placed[row]):
            row += 1
        if row == len(placed):
            placed.append([])
        placed[row].append((lo, hi))
        out.append((ex, "start" if grows_right else "end", row, grows_right))
    return out


def _chart(timeline: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """An inline SVG: success rate per second as a line, failures as red bars, events as
    labelled vertical markers in rows above the plot (so labels never overlap), with labelled
    axes, ticks and a legend. Every attribute is quoted: in HTML an unquoted value swallows a
    following ``/`` and leaves the element open."""
    if not timeline:
        return "<p class=sub>No client load was recorded.</p>"
    t_end = max([float(p["t"]) for p in timeline] + [float(e.get("t", 0)) for e in events] + [1.0])
    inner_w = _WIDTH - _PAD_L - _PAD_R

    def x(t: float) -> float:
        return _PAD_L + inner_w * (t / t_end)

    labels = _label_rows(events, x)
    rows = 1 + max((row for *_, row, _ in labels), default=-1)
    band = rows * _LABEL_ROW_H + 6  # the event labels sit in this band above the plot
    top = _PAD_T + band
    height = top + _PLOT_H + _PAD_B + _LEGEND_H
    bottom = top + _PLOT_H

    def y(rate: float) -> float:
        return top + _PLOT_H * (1 - rate)

    out = [
        f'<svg id="chart" role="img" aria-label="client success rate over time" '
        f'viewBox="0 0 {_WIDTH} {height}" width="100%">'
    ]
    for rate in (0, 0.25, 0.5, 0.75, 1):
        out.append(
            f'<line class="grid" x1="{_PAD_L}" x2="{_WIDTH - _PAD_R}" y1="{y(rate):.1f}" '
            f'y2="{y(rate):.1f}" stroke="#e5e7eb"/>'
            f'<text class="tick y" x="{_PAD_L - 8}" y="{y(rate) + 4:.1f}" '
            f'text-anchor="end">{rate:.0%}</text>'
        )
    step = _tick_step(t_end)
    tick = 0.0
    while tick <= t_end + 1e-9:
        out.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{bottom}" y2="{bottom + 5}" '
            'stroke="#6b7280"/>'
            f'<text class="tick x" x="{x(tick):.1f}" y="{bottom + 18}" '
            f'text-anchor="middle">{tick:g}</text>'
        )
        tick += step
    out.append(
        f'<line x1="{_PAD_L}" x2="{_PAD_L}" y1="{top}" y2="{bottom}" stroke="#6b7280"/>'
        f'<line x1="{_PAD_L}" x2="{_WIDTH - _PAD_R}" y1="{bottom}" y2="{bottom}" '
        'stroke="#6b7280"/>'
        f'<text class="axis-title" x="{_PAD_L + inner_w / 2:.0f}" y="{bottom + 34}" '
        'text-anchor="middle">seconds since the demo started</text>'
        f'<text class="axis-title" transform="translate(14 {top + _PLOT_H / 2:.0f}) rotate(-90)" '
        'text-anchor="middle">client connections that succeeded</text>'
    )
    max_failed = max((int(p.get("failed", 0)) for p in timeline), default=0)
    for p in timeline:
        failed = int(p.get("failed", 0))
        if failed:
            bar = _PLOT_H * 0.35 * failed / max(max_failed, 1)
            out.append(
                f'<rect class="failures" x="{x(float(p["t"])) - 2:.1f}" '
                f'y="{bottom - bar:.1f}" width="4" height="{bar:.1f}" '
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
    for event, (ex, anchor, row, grows_right) in zip(events, labels, strict=True):
        color = _KIND_COLOR.get(str(event.get("kind")), _KIND_COLOR["info"])
        label = escape(str(event.get("label", "")))
        ly = _PAD_T + 11 + row * _LABEL_ROW_H
        tx = ex + 3 if grows_right else ex - 3
        out.append(
            f'<g class="event"><line x1="{ex:.1f}" x2="{ex:.1f}" y1="{ly + 3}" '
            f'y2="{bottom}" stroke="{color}" stroke-dasharray="4 3"/>'
            f'<text x="{tx:.1f}" y="{ly}" fill="{color}" text-anchor="{anchor}">{label}</text></g>'
        )
    out.append(_legend(height - _LEGEND_H + 14))
    out.append("</svg>")
    return "".join(out)


def _legend(y: float) -> str:
    items = [
        ("line", "#16a34a", "share of connections that succeeded, per second"),
        ("bar", "#fca5a5", "failed connections"),
    ] + [("dash", _KIND_COLOR[k], name) for k, name in _EVENT_NAMES.items()]
    out, lx = ['<g class="legend">'], float(_PAD_L)
    for shape, color, name in items:
        width = 22 + len(name) * _LABEL_CHAR_W
        if lx + width > _WIDTH - _PAD_R:
            lx, y = float(_PAD_L), y + 16
        if shape == "line":
            mark = f'<line x1="{lx}" x2="{lx + 14}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" stroke-width="2"/>'
        elif shape == "bar":
            mark = f'<rect x="{lx + 4}" y="{y - 10}" width="6" height="10" fill="{color}"/>'
        else:
            mark = (
                f'<line x1="{lx + 7}" x2="{lx + 7}" y1="{y - 11}" y2="{y + 1}" stroke="{color}" '
                'stroke-dasharray="4 3"/>'
            )
        out.append(f'{mark}<text x="{lx + 18}" y="{y}">{escape(name)}</text>')
        lx += width + 12
    out.append("</g>")
    return "".join(out)


def _tick_step(t_end: float) -> float:
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600):
        if t_end / step <= 12:
            return float(step)
    return float(round(t_end / 10))


def _rate(point: dict[str, Any]) -> float:
    ok, failed = int(point.get("ok", 0)), int(point.get("failed", 0))
    return ok / (ok + failed) if ok + failed else 1.0


def _text(value: Any) -> str:
    """Escaped text, with `code` spans rendered as <code> (never raw backticks)."""
    parts = escape(str(value)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text without it
        return "".join(parts)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _cell(label: str, html: str) -> str:
    return f"<td data-label='{escape(label)}'>{html}</td>"


def _summary_table(rows: list[dict[str, Any]]) -> str:
    columns = (
        "failure mode", "caught at", "clients failed", "time to a safe state", "measured",
        "the original pipeline",
    )  # fmt: skip
    head = "<table id=summary-table><thead><tr>" + "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + _cell(
            columns[0], f"<b>{escape(str(r.get('step', '')))}</b> {_text(r.get('failure', ''))}"
        )
        + _cell(columns[1], _text(r.get("caught_at", "")))
        + _cell(columns[2], escape(str(r.get("client_failures", ""))))
        + _cell(columns[3], escape(_seconds(r.get("time_to_safe_s"))))
        + _cell(columns[4], _text(r.get("figure", "")))
        + _cell(columns[5], _text(r.get("original", "")))
        + "</tr>"
        for r in rows
    )
    return head + "</tr></thead><tbody>" + body + "</tbody></table>"


def _steps_table(steps: list[dict[str, Any]]) -> str:
    columns = ("step", "outcome", "detail", "time")
    head = "<table id=steps-table><thead><tr>" + "".join(f"<th>{c}</th>" for c in columns)
    rows = []
    for s in steps:
        kind = str(s.get("kind"))
        pill = _PILL.get(kind, kind)
        outcome = str(s.get("outcome", ""))
        # The pill already says it: "promoted" is not repeated as "promoted promoted", nor
        # "rolled back" as "rolled back rolled back 1.1 s after...".
        if outcome.lower().startswith(pill.lower()):
            outcome = outcome[len(pill) :].lstrip(" :;,")
        rest = _text(outcome)
        color = _KIND_COLOR.get(kind, "#6b7280")
        details = "".join(
            f"<div>{_text(part)}</div>" for part in str(s.get("detail", "")).split(" | ") if part
        )
        rows.append(
            "<tr>"
            + _cell(columns[0], _text(s.get("title", "")))
            + _cell(
                columns[1],
                f"<span class=pill style='background:{color}'>{escape(pill)}</span> {rest}",
            )
            + _cell(columns[2], details)
            + _cell(columns[3], f"<span class=nowrap>{float(s.get('duration_s', 0)):.1f} s</span>")
            + "</tr>"
        )
    return head + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
