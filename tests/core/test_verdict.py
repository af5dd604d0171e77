from __future__ import annotations

import pytest

from safeship.core.verdict import (
    EXIT_CODES,
    Category,
    Observation,
    Verdict,
    VerdictKind,
    classify,
    close_category,
    status_category,
)

UP = {"target": "127.0.0.1:8000", "resolved": True, "upgraded": True}
REFUSED = {"target": "127.0.0.1:8000", "resolved": True, "token_sent": True}

# (id, observation, kind, category, code, phase)
CASES = [
    ("ok-upgrade", Observation(**UP), "ok", "ok", None, None),
    ("ok-steps", Observation(**UP, steps_total=2, steps_passed=2), "ok", "ok", None, None),
    (
        "ok-1000-after-steps",
        Observation(**UP, steps_total=1, steps_passed=1, close_code=1000, close_phase="close"),
        "ok",
        "ok",
        1000,
        None,
    ),
    (
        "ok-1001-after-steps",
        Observation(**UP, steps_total=1, steps_passed=1, close_code=1001, close_phase="close"),
        "ok",
        "ok",
        1001,
        None,
    ),
    ("ok-http-200", Observation(transport="http", http_status=200), "ok", "ok", 200, None),
    ("ok-http-204", Observation(transport="http", http_status=204), "ok", "ok", 204, None),
    (
        "inconclusive-setup",
        Observation(setup_error="cannot read t.txt"),
        "inconclusive",
        "inconclusive",
        None,
        "setup",
    ),
    ("dns", Observation(dns_error="Name or service not known"), "dns", "unreachable", None, "dns"),
    ("dns-timeout", Observation(timed_out_phase="dns"), "timeout", "timeout", None, "dns"),
    (
        "tcp-refused",
        Observation(connect_error="Connection refused", connect_errno="ECONNREFUSED"),
        "tcp_refused",
        "unreachable",
        None,
        "tcp",
    ),
    (
        "tcp-unreachable",
        Observation(connect_error="No route to host", connect_errno="EHOSTUNREACH"),
        "tcp_refused",
        "unreachable",
        None,
        "tcp",
    ),
    (
        "tcp-etimedout",
        Observation(connect_error="Connection timed out", connect_errno="ETIMEDOUT"),
        "tcp_timeout",
        "unreachable",
        None,
        "tcp",
    ),
    (
        "tcp-deadline",
        Observation(resolved=True, timed_out_phase="tcp"),
        "tcp_timeout",
        "unreachable",
        None,
        "tcp",
    ),
    (
        "tls",
        Observation(resolved=True, tls_error="CERTIFICATE_VERIFY_FAILED"),
        "tls",
        "unreachable",
        None,
        "tls",
    ),
    (
        "tls-timeout",
        Observation(resolved=True, timed_out_phase="tls"),
        "timeout",
        "timeout",
        None,
        "tls",
    ),
    ("http-401", Observation(**REFUSED, http_status=401), "http_status", "auth", 401, "upgrade"),
    (
        "http-403-guard",
        Observation(**REFUSED, http_status=403, http_headers={"x-safeship-denial": "forbidden"}),
        "http_status",
        "auth",
        403,
        "upgrade",
    ),
    # Starlette's bare 403 for a path without a WebSocket route is not an auth failure.
    (
        "http-403-no-route",
        Observation(**REFUSED, http_status=403),
        "no_route",
        "protocol",
        403,
        "upgrade",
    ),
    (
        "http-429",
        Observation(**REFUSED, http_status=429),
        "http_status",
        "not_ready",
        429,
        "upgrade",
    ),
    (
        "http-503",
        Observation(**REFUSED, http_status=503),
        "http_status",
        "not_ready",
        503,
        "upgrade",
    ),
    (
        "http-500",
        Observation(**REFUSED, http_status=500),
        "http_status",
        "internal_error",
        500,
        "upgrade",
    ),
    (
        "http-502",
        Observation(**REFUSED, http_status=502),
        "http_status",
        "internal_error",
        502,
        "upgrade",
    ),
    (
        "http-404",
        Observation(**REFUSED, http_status=404),
        "no_route",
        "protocol",
        404,
        "upgrade",
    ),
    (
        "http-200-no-upgrade",
        Observation(**REFUSED, http_status=200),
        "http_status",
        "protocol",
        200,
        "upgrade",
    ),
    (
        "http-probe-503",
        Observation(transport="http", http_status=503),
        "http_status",
        "not_ready",
        503,
        "response",
    ),
    (
        "protocol",
        Observation(**REFUSED, protocol_error="bad status line", protocol_phase="upgrade"),
        "protocol",
        "protocol",
        None,
        "upgrade",
    ),
    (
        "timeout-upgrade",
        Observation(**REFUSED, timed_out_phase="upgrade"),
        "timeout",
        "timeout",
        None,
        "upgrade",
    ),
    (
        "timeout-step",
        Observation(**UP, steps_total=1, timed_out_phase="step 1", timeout_seconds=0.5),
        "timeout",
        "timeout",
        None,
        "step 1",
    ),
    (
        "closed-4401",
        Observation(**UP, close_code=4401, close_phase="settle"),
        "closed",
        "auth",
        4401,
        "settle",
    ),
    (
        "closed-4403",
        Observation(**UP, close_code=4403, close_phase="settle"),
        "closed",
        "auth",
        4403,
        "settle",
    ),
    (
        "closed-1008",
        Observation(**UP, close_code=1008, close_phase="step 1"),
        "closed",
        "auth",
        1008,
        "step 1",
    ),
    (
        "closed-4429",
        Observation(**UP, close_code=4429, close_phase="settle"),
        "closed",
        "not_ready",
        4429,
        "settle",
    ),
    (
        "closed-1013",
        Observation(**UP, close_code=1013, close_phase="settle"),
        "closed",
        "not_ready",
        1013,
        "settle",
    ),
    (
        "closed-1012",
        Observation(**UP, close_code=1012, close_phase="step 1"),
        "closed",
        "not_ready",
        1012,
        "step 1",
    ),
    (
        "closed-1001",
        Observation(**UP, close_code=1001, close_phase="settle"),
        "closed",
        "not_ready",
        1001,
        "settle",
    ),
    (
        "closed-1011",
        Observation(**UP, close_code=1011, close_reason="error id e-42", close_phase="step 1"),
        "closed",
        "internal_error",
        1011,
        "step 1",
    ),
    (
        "closed-1006",
        Observation(**UP, close_code=1006, close_phase="step 1"),
        "closed",
        "internal_error",
        1006,
        "step 1",
    ),
    (
        "closed-1009",
        Observation(**UP, close_code=1009, close_phase="step 1"),
        "closed",
        "protocol",
        1009,
        "step 1",
    ),
    (
        "closed-1000-before-steps-done",
        Observation(**UP, steps_total=2, steps_passed=1, close_code=1000, close_phase="step 2"),
        "closed",
        "protocol",
        1000,
        "step 2",
    ),
    (
        "closed-1000-in-settle",
        Observation(**UP, close_code=1000, close_phase="settle"),
        "closed",
        "protocol",
        1000,
        "settle",
    ),
    (
        "closed-1011-after-steps",
        Observation(**UP, steps_total=1, steps_passed=1, close_code=1011, close_phase="close"),
        "closed",
        "internal_error",
        1011,
        "close",
    ),
    (
        "check-failed",
        Observation(
            **UP,
            steps_total=1,
            check_failure='type: expected "pong", got "error"',
            check_phase="step 1",
        ),
        "check_failed",
        "check_failed",
        None,
        "step 1",
    ),
    (
        "inconclusive-stopped",
        Observation(**UP, steps_total=2, steps_passed=1),
        "inconclusive",
        "inconclusive",
        None,
        "step 2",
    ),
    (
        "inconclusive-no-upgrade",
        Observation(resolved=True),
        "inconclusive",
        "inconclusive",
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("obs", "kind", "category", "code", "phase"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_classify(obs, kind, category, code, phase):
    verdict = classify(obs)
    assert verdict.kind == kind
    assert verdict.category == category
    assert verdict.code == code
    assert verdict.phase == phase
    assert verdict.is_success == (kind == "ok")
    assert verdict.detail


def test_the_table_covers_every_kind_and_category():
    verdicts = [classify(case[1]) for case in CASES]
    assert {v.kind for v in verdicts} == set(VerdictKind)
    assert {v.category for v in verdicts} == set(Category)


def test_earliest_failing_phase_wins():
    obs = Observation(
        dns_error="nope",
        connect_error="refused",
        http_status=401,
        close_code=1011,
        check_failure="x",
    )
    assert classify(obs).kind is VerdictKind.DNS
    obs = Observation(resolved=True, http_status=503, timed_out_phase="step 1", close_code=1011)
    assert classify(obs).kind is VerdictKind.HTTP_STATUS
    obs = Observation(**UP, timed_out_phase="step 1", close_code=1011)
    assert classify(obs).kind is VerdictKind.TIMEOUT


def test_exit_codes():
    assert EXIT_CODES[VerdictKind.OK] == 0
    assert EXIT_CODES[VerdictKind.INCONCLUSIVE] == 2
    failed = set(VerdictKind) - {VerdictKind.OK, VerdictKind.INCONCLUSIVE}
    assert {EXIT_CODES[k] for k in failed} == {1}
    assert Verdict(VerdictKind.TIMEOUT, "x").exit_code == 1


def test_401_detail_names_the_denial_and_the_header():
    obs = Observation(
        **REFUSED,
        http_status=401,
        http_headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        http_body='{"error": "invalid_token", "detail": "token expired"}',
    )
    verdict = classify(obs)
    assert "HTTP 401" in verdict.detail
    assert "error=invalid_token" in verdict.detail
    assert "detail=token expired" in verdict.detail
    assert 'Bearer error="invalid_token"' in verdict.detail
    assert verdict.hint is not None and "secret" in verdict.hint


def test_401_without_a_token_says_to_send_one():
    verdict = classify(Observation(resolved=True, token_sent=False, http_status=401))
    assert verdict.hint is not None and "--token" in verdict.hint


def test_503_retry_after_and_health_body():
    obs = Observation(
        transport="http",
        http_status=503,
        http_headers={"retry-after": "2"},
        http_body='{"status": "starting", "phase": "database", "error": null}',
    )
    verdict = classify(obs)
    assert verdict.retry_after == 2
    assert "phase=database" in verdict.detail
    assert "status=starting" in verdict.detail
    assert "Retry-After: 2 s" in verdict.detail


def test_http_date_retry_after_is_not_a_number():
    obs = Observation(
        **REFUSED, http_status=503, http_headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    assert classify(obs).retry_after is None


def test_non_json_body_is_excerpted():
    obs = Observation(**REFUSED, http_status=502, http_body="<html>" + "x" * 1000 + "</html>")
    verdict = classify(obs)
    assert "<html>" in verdict.detail
    assert len(verdict.detail) < 300


def test_1011_keeps_the_reason_with_the_error_id():
    verdict = classify(
        Observation(
            **UP, close_code=1011, close_reason="internal error, id e-7f3a", close_phase="step 1"
        )
    )
    assert verdict.reason == "internal error, id e-7f3a"
    assert "e-7f3a" in verdict.detail
    assert "step 1" in verdict.detail
    assert verdict.hint is not None and "logs" in verdict.hint


def test_step_timeout_detail_names_the_step_and_deadline():
    verdict = classify(
        Observation(
            **UP, steps_total=2, steps_passed=1, timed_out_phase="step 2", timeout_seconds=1.5
        )
    )
    assert verdict.detail == "step 2: no matching reply within 1.5 s"


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (401, "auth"),
        (403, "auth"),
        (429, "not_ready"),
        (503, "not_ready"),
        (500, "internal_error"),
        (504, "internal_error"),
        (400, "protocol"),
        (404, "protocol"),
        (301, "protocol"),
    ],
)
def test_status_category(status, category):
    assert status_category(status) == category


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (4401, "auth"),
        (4403, "auth"),
        (1008, "auth"),
        (4429, "not_ready"),
        (4503, "not_ready"),
        (1013, "not_ready"),
        (1012, "not_ready"),
        (1001, "not_ready"),
        (1011, "internal_error"),
        (1006, "internal_error"),
        (1014, "internal_error"),
        (4500, "internal_error"),
        (1000, "protocol"),
        (1002, "protocol"),
        (1009, "protocol"),
        (4404, "protocol"),
        (4000, "protocol"),
    ],
)
def test_close_category(code, category):
    assert close_category(code) == category


def test_as_dict_is_plain_data():
    verdict = classify(
        Observation(**UP, close_code=4401, close_reason="expired", close_phase="settle")
    )
    data = verdict.as_dict()
    assert data == {
        "kind": "closed",
        "category": "auth",
        "ok": False,
        "detail": data["detail"],
        "code": 4401,
        "phase": "settle",
        "reason": "expired",
        "hint": data["hint"],
        "retry_after": None,
    }
    assert isinstance(data["kind"], str) and isinstance(data["category"], str)


@pytest.mark.parametrize(
    ("detail", "phase"),
    [
        ("HTTP 503 to the request; status=starting phase=cache", "cache"),
        ("HTTP 503 to the request; status=draining phase=agents", None),
        ("HTTP 503 to the request; status=starting", None),
        ("", None),
    ],
)
def test_starting_phase_reads_the_phase_of_a_service_still_starting(detail, phase) -> None:
    from safeship.core.verdict import starting_phase

    assert starting_phase(detail) == phase
