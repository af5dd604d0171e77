"""The demo's closing summary reads well in an 80-column terminal (CI logs, laptops)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from safeship.cli.demo_view import summary_view

FINGERPRINTS = ("48451746d2e2", "d831b14f945a")


def _report() -> dict[str, Any]:
    step = {"outcome": "blocked", "caught_at": "gate (secrets)", "as_expected": True}
    return {
        "ok": True,
        "steps": [
            {
                **step,
                "id": "r2",
                "detail": "static gate: examples/agent_service/agents/"
                "history.py:21 Undefined name `DatabaseSessionManager` | forced: NameError",
            },
            {
                **step,
                "id": "r3",
                "detail": "secrets gate: JWT_SECRET differs between consumers: "
                f"env has fingerprint {FINGERPRINTS[0]}, file:tests/e2e/staging.env has "
                f"fingerprint {FINGERPRINTS[1]}",
            },
        ],
        "summary": {
            "rows": [
                {
                    "step": "r4",
                    "failure": "HTTP 403 on every WebSocket",
                    "figure": "forced: verification denied (401) before any traffic",
                    "caught_at": "secrets gate",
                    "client_failures": 0,
                    "time_to_safe_s": 0.7,
                    "original": "every client got 403",
                },
            ],
            "audit_ok": True,
            "audit_detail": "36 entries, hash chain intact",
        },
        "load": {
            "connections": 147,
            "connects_ok": 130,
            "connects_failed": 17,
            "events": 2160,
            "resumes": 10,
        },
        "rollback": {"detection_after_switch_s": 2.5, "time_to_rollback_s": 1.0},
    }


def test_details_are_never_cut_mid_word_at_80_columns() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_view(_report()))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    # What a reader copies out of the summary stays whole: names, paths, fingerprints.
    for word in (
        "`DatabaseSessionManager`",
        "examples/agent_service/agents/history.py:21",
        "file:tests/e2e/staging.env",
        *FINGERPRINTS,
    ):
        assert word in text, word
    # One line per part of a step's detail, under its revision.
    assert any(line.startswith("r2  forced: NameError") for line in text.splitlines())


def test_the_connection_counts_say_what_they_count() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_view(_report()))
    text = console.export_text()
    assert "147 connections: 130 ok, 17 failed" in text
    assert "measured: forced: verification denied (401) before any traffic" in text


def test_the_watch_line_shows_time_left_probes_and_the_last_verdict() -> None:
    from pathlib import Path

    from safeship.cli.demo_view import watch_line
    from safeship.demo.story import Story

    story = Story(Path("unused"))
    assert watch_line(story) == ""
    story.watch = {"step": "watch", "until": story.now() + 20.4, "probes": 7, "last": "ok"}
    line = watch_line(story)
    assert line.startswith("watch: 2") and line.endswith("s left, 7 probes, last: ok")
