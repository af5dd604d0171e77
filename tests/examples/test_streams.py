from __future__ import annotations

from agent_service.streams import Delivery, RunCursors, Step


def test_a_new_run_is_followed_from_its_first_event():
    cursors = RunCursors()
    assert cursors.on_live("r", 1) == Delivery(Step.SEND, new=True)
    assert cursors.sent("r", 1, terminal=False) is False
    assert cursors.on_live("r", 2) == Delivery(Step.SEND)
    cursors.sent("r", 2, terminal=False)
    assert cursors.last("r") == 2


def test_a_run_already_under_way_is_not_followed_implicitly():
    cursors = RunCursors()
    assert cursors.on_live("r", 4).step is Step.SKIP
    assert "r" not in cursors


def test_duplicates_are_skipped_and_gaps_backfilled():
    cursors = RunCursors()
    cursors.on_live("r", 1)
    cursors.sent("r", 1, terminal=False)
    assert cursors.on_live("r", 1).step is Step.SKIP
    assert cursors.on_live("r", 5) == Delivery(Step.BACKFILL, after=1)


def test_terminal_event_ends_following():
    cursors = RunCursors()
    cursors.on_live("r", 1)
    assert cursors.sent("r", 1, terminal=True) is True
    assert "r" not in cursors and len(cursors) == 0
    assert cursors.on_live("r", 2).step is Step.SKIP


def test_resume_replays_from_the_clients_seq_and_keeps_the_highest_sent():
    cursors = RunCursors()
    assert cursors.resume("r", 3) is True
    assert cursors.on_live("r", 4).step is Step.SEND
    # The replay resends what the client asked for; the cursor never goes back.
    cursors.sent("r", 6, terminal=False)
    assert cursors.resume("r", 2) is False
    for seq in (3, 4, 5, 6):
        cursors.sent("r", seq, terminal=False)
    assert cursors.last("r") == 6
    assert cursors.on_live("r", 6).step is Step.SKIP
    assert cursors.forget("r") is True and cursors.forget("r") is False
