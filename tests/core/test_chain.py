"""``diagnose``'s chains, from plain facts."""

from __future__ import annotations

from safeship.core.chain import Facts, ProbeFact, RevisionFact, explain

NOW = 1_000_000.0
R2 = RevisionFact("r2", "running", "http://127.0.0.1:9002", log_path="/state/r2/log")

DENIED = ProbeFact("auth", "http_status", 401, "HTTP 401 to the upgrade; error=invalid_token")
CLIENT = {"consumer": "file:clients.env", "name": "JWT_SECRET_STAGING", "fingerprint": "aaaa11112222",
          "where": "clients.env"}  # fmt: skip
BACKEND = {"name": "JWT_SECRET_STAGING", "where": "env", "fingerprint": "bbbb33334444"}
CONSUMERS = [
    {"consumer": "env", "name": "JWT_SECRET_STAGING", "fingerprint": "bbbb33334444"},
    {"consumer": "file:clients.env", "name": "JWT_SECRET_STAGING", "fingerprint": "aaaa11112222"},
]


def whats(chain):
    return [link.what for link in chain.links]


def test_403_on_every_websocket_is_a_secret_mismatch_down_to_each_consumer():
    facts = Facts("staging", NOW, probes=[DENIED] * 3, revision=R2, client_secret=CLIENT,
                  backend_secret=BACKEND, consumers=CONSUMERS)  # fmt: skip
    chain = explain(facts)
    assert (chain.status, chain.cause) == ("failing", "secret_mismatch")
    text = whats(chain)
    assert text[0].startswith("every probe: HTTP 401")
    assert "token verification fails" in text[1]
    assert "aaaa11112222" in text[2] and "bbbb33334444" in text[2] and "revision r2" in text[2]
    assert "env JWT_SECRET_STAGING = bbbb33334444" in text[3]
    assert "file:clients.env JWT_SECRET_STAGING = aaaa11112222" in text[3]
    assert "into file:clients.env" in chain.hint


def test_same_fingerprints_clear_the_secret():
    same = dict(BACKEND, fingerprint=CLIENT["fingerprint"])
    chain = explain(Facts("s", NOW, probes=[DENIED], client_secret=CLIENT, backend_secret=same))
    assert chain.cause == "token_rejected" and "not the cause" in whats(chain)[-1]
    assert "issuer" in chain.hint


def test_an_unreadable_backend_still_names_the_disagreeing_consumers():
    chain = explain(Facts("s", NOW, probes=[DENIED], client_secret=CLIENT, consumers=CONSUMERS))
    assert chain.cause == "secret_mismatch"
    assert any("not readable" in w for w in whats(chain))
    assert "into" not in chain.hint  # which side is right is not known


def test_forbidden_is_not_a_secret_problem():
    forbidden = ProbeFact("auth", "http_status", 403, "HTTP 403 to the upgrade")
    chain = explain(Facts("s", NOW, probes=[forbidden], client_secret=CLIENT, consumers=CONSUMERS))
    assert chain.cause == "forbidden" and "claims" in chain.hint


STARTUP_FAILED = {
    "event": "startup_failed",
    "phase": "services",
    "error": "NameError: name 'DatabaseSessionManager' is not defined",
    "where": "agent_service/agents/research.py:10",
    "hint": "the name was probably removed from an import: restore it or rename the use",
    "causes": [],
}


def test_1011_leads_to_the_startup_failed_line_phase_error_and_hint():
    closed = ProbeFact("internal_error", "closed", 1011, "closed with 1011 (internal error)")
    dead = RevisionFact("r2", "exited", exit_code=3)
    chain = explain(
        Facts("s", NOW, probes=[closed] * 2, revision=dead, startup_failed=STARTUP_FAILED)
    )
    assert chain.cause == "startup_failed"
    text = whats(chain)
    assert text[1] == "revision r2 (exited with code 3) wrote a startup_failed line"
    assert text[2] == "startup failed in phase 'services'"
    assert text[3] == (
        "NameError: name 'DatabaseSessionManager' is not defined at "
        "agent_service/agents/research.py:10"
    )
    assert chain.hint == STARTUP_FAILED["hint"]


def test_the_503_a_front_answers_for_a_dead_backend_leads_to_the_same_line():
    refused = ProbeFact(
        "not_ready", "http_status", 503, "HTTP 503 to the upgrade; error=unavailable"
    )
    dead = RevisionFact("r2", "exited", exit_code=3)
    chain = explain(Facts("s", NOW, probes=[refused], revision=dead, startup_failed=STARTUP_FAILED))
    assert chain.cause == "startup_failed" and "phase 'services'" in whats(chain)[2]


def test_a_1011_at_run_time_leads_to_the_logged_error_id():
    closed = ProbeFact(
        "internal_error", "closed", 1011, "closed with 1011", reason="internal error, id e-42"
    )
    logged = {"e-42": {"line": "ERROR error id e-42", "where": "agents/history.py:12",
                       "exception": "NameError: name 'X' is not defined"}}  # fmt: skip
    chain = explain(Facts("s", NOW, probes=[closed], revision=R2, error_lines=logged))
    assert chain.cause == "runtime_error"
    assert whats(chain)[2] == "NameError: name 'X' is not defined at agents/history.py:12"
    assert "import" in chain.hint


def test_a_1011_with_nothing_found_says_where_to_read():
    closed = ProbeFact("internal_error", "closed", 1011, "closed with 1011", reason="id e-1")
    chain = explain(Facts("s", NOW, probes=[closed], revision=R2))
    assert chain.cause == "unknown" and "/state/r2/log" in chain.hint


STARTUP = {
    "status": "starting",
    "phase": "agents",
    "since": NOW - 95.0,
    "phases": [
        {"name": "config", "state": "ok", "duration_ms": 2000.0, "timeout_s": 5},
        {"name": "database", "state": "ok", "duration_ms": 3000.0, "timeout_s": 30},
        {"name": "agents", "state": "running", "duration_ms": None, "timeout_s": 120},
        {"name": "websocket", "state": "pending", "duration_ms": None, "timeout_s": 5},
    ],
}


def test_handshake_timeouts_lead_to_the_phase_the_backend_is_stuck_in():
    hung = ProbeFact("timeout", "timeout", None, "timed out in phase upgrade within 2 s",
                     phase="upgrade", connect_ms=0.4, timeout_s=2.0)  # fmt: skip
    facts = Facts(
        "s", NOW, probes=[hung] * 3, revision=R2,
        front_health={"url": "x", "error": "ReadTimeout"},
        revision_health={"status": 503, "body": {"status": "starting", "phase": "agents"}},
        revision_startup={"status": 503, "body": STARTUP},
    )  # fmt: skip
    chain = explain(facts)
    assert chain.cause == "stuck_starting"
    text = whats(chain)
    assert text[1].startswith("the front accepts: TCP connected in 0 ms")
    assert "no answer (ReadTimeout)" in text[2]
    assert "revision r2 is not ready" in text[3] and "phase 'agents'" in text[3]
    assert text[4] == "it has been stuck in phase 'agents' for 90 s (its timeout is 120 s)"


def test_timeouts_with_a_dead_backend():
    hung = ProbeFact("timeout", "timeout", None, "timed out", phase="upgrade", connect_ms=1.0)
    dead = RevisionFact("r2", "exited", exit_code=-9, log_path="/l")
    chain = explain(Facts("s", NOW, probes=[hung], revision=dead))
    assert chain.cause == "backend_exited" and "code -9" in whats(chain)[-1]


def test_not_ready_while_starting():
    refused = ProbeFact("not_ready", "http_status", 503, "HTTP 503; status=starting")
    facts = Facts("s", NOW, probes=[refused], revision=R2,
                  revision_startup={"status": 503, "body": STARTUP})  # fmt: skip
    assert explain(facts).cause == "stuck_starting"


def test_nothing_listening():
    refused = ProbeFact("unreachable", "tcp_refused", None, "TCP connect refused")
    chain = explain(
        Facts("s", NOW, url="http://x:1", probes=[refused], problems=["the front is dead"])
    )
    assert chain.cause == "nothing_listens"
    assert whats(chain)[1:] == ["the front is dead", "nothing accepts connections at http://x:1"]


def test_healthy_and_inconclusive():
    ok = ProbeFact("ok", "ok", None, "accepted")
    assert explain(Facts("s", NOW, probes=[ok, ok])).as_dict()["ok"] is True
    cannot = ProbeFact("inconclusive", "inconclusive", None, "cannot mint a probe token")
    chain = explain(Facts("s", NOW, probes=[cannot]))
    assert chain.status == "inconclusive" and "cannot mint" in whats(chain)[0]
    assert explain(Facts("s", NOW)).status == "inconclusive"


def test_the_most_common_failure_is_explained():
    closed = ProbeFact("internal_error", "closed", 1011, "closed with 1011", reason="id e-1")
    chain = explain(Facts("s", NOW, probes=[closed, DENIED, DENIED], client_secret=CLIENT))
    assert chain.symptom.startswith("2 of 3 probes: HTTP 401")


def test_a_wrong_reply():
    wrong = ProbeFact("check_failed", "check_failed", None, "step 1: type: expected pong")
    chain = explain(Facts("s", NOW, probes=[wrong]))
    assert chain.cause == "wrong_reply" and "probe_expect" in chain.hint


def test_the_monitor_s_open_incidents_come_right_after_the_symptom():
    incident = {"class": "auth", "key": "staging", "opened": NOW - 125.0}
    chain = explain(Facts("staging", NOW, probes=[DENIED], client_secret=CLIENT,
                          backend_secret=BACKEND, incidents=[incident]))  # fmt: skip
    assert whats(chain)[1] == "the monitor has had an open auth incident on staging for 125 s"
    assert chain.links[1].source == "history" and chain.cause == "secret_mismatch"
