import pytest

from safeship.core.closecodes import DenyKind
from safeship.core.handshake import (
    Accept,
    AuthOutcome,
    Deny,
    Limits,
    Readiness,
    decide,
    denial_form,
    expiry_deadline,
    readiness_with_checks,
)

GOOD = AuthOutcome(claims={"sub": "alice", "exp": 2000})


@pytest.mark.parametrize(
    ("readiness", "kind"),
    [
        (Readiness.STARTING, DenyKind.NOT_READY),
        (Readiness.FAILED, DenyKind.NOT_READY),
        (Readiness.DRAINING, DenyKind.DRAINING),
    ],
)
def test_not_ready_is_decided_before_auth(readiness, kind):
    # Even a bad token gets "retry later" first: the token is not even looked at.
    verdict = decide(readiness, AuthOutcome(failure="expired"))
    assert isinstance(verdict, Deny)
    assert verdict.kind is kind


def test_accept():
    verdict = decide(Readiness.READY, GOOD)
    assert verdict == Accept(subject="alice", claims={"sub": "alice", "exp": 2000})


@pytest.mark.parametrize(
    "failure", ["missing", "expired", "bad_signature", "malformed", "bad_ticket"]
)
def test_auth_failures_are_401(failure):
    verdict = decide(Readiness.READY, AuthOutcome(failure=failure, detail=f"token {failure}"))
    assert isinstance(verdict, Deny)
    assert verdict.kind is DenyKind.UNAUTHENTICATED
    assert failure in verdict.detail


def test_no_credentials_explains_where_a_token_goes():
    verdict = decide(Readiness.READY, AuthOutcome())
    assert isinstance(verdict, Deny) and verdict.kind is DenyKind.UNAUTHENTICATED
    assert "Authorization" in verdict.detail and "subprotocol" in verdict.detail


def test_claims_without_subject_are_refused():
    verdict = decide(Readiness.READY, AuthOutcome(claims={"exp": 1}))
    assert isinstance(verdict, Deny) and verdict.kind is DenyKind.UNAUTHENTICATED


def test_forbidden():
    verdict = decide(Readiness.READY, AuthOutcome(claims={"sub": "bob"}, forbidden="no ws scope"))
    assert verdict == Deny(DenyKind.FORBIDDEN, "no ws scope")


def test_global_limit_before_auth():
    verdict = decide(
        Readiness.READY, AuthOutcome(failure="expired"), limits=Limits(total=2), total_connections=2
    )
    assert isinstance(verdict, Deny) and verdict.kind is DenyKind.TOO_MANY


def test_per_user_limit():
    limits = Limits(per_user=2)
    assert isinstance(decide(Readiness.READY, GOOD, limits=limits, user_connections=1), Accept)
    verdict = decide(Readiness.READY, GOOD, limits=limits, user_connections=2)
    assert isinstance(verdict, Deny) and verdict.kind is DenyKind.TOO_MANY
    assert "per user" in verdict.detail


def test_limits_below_threshold_accept():
    verdict = decide(
        Readiness.READY,
        GOOD,
        limits=Limits(per_user=5, total=10),
        total_connections=9,
        user_connections=4,
    )
    assert isinstance(verdict, Accept)


@pytest.mark.parametrize(
    ("claims", "grace", "expected"),
    [
        ({"exp": 100}, 0, 100.0),
        ({"exp": 100}, 30, 130.0),
        ({"exp": 100.5}, 0, 100.5),
        ({}, 30, None),
        ({"exp": "100"}, 0, None),
        ({"exp": True}, 0, None),
    ],
)
def test_expiry_deadline(claims, grace, expected):
    assert expiry_deadline(claims, grace) == expected


@pytest.mark.parametrize(
    ("mode", "supported", "browser", "form"),
    [
        ("auto", True, False, "http"),
        ("auto", True, True, "close"),
        ("auto", False, False, "close"),
        ("http", True, True, "http"),
        ("http", False, False, "close"),
        ("browser", True, False, "close"),
    ],
)
def test_denial_form(mode, supported, browser, form):
    assert denial_form(mode, http_response_supported=supported, from_browser=browser) == form


@pytest.mark.parametrize(
    ("startup", "checks_ok", "expected"),
    [
        (Readiness.READY, True, Readiness.READY),
        (Readiness.READY, False, Readiness.STARTING),
        (Readiness.DRAINING, True, Readiness.DRAINING),
        (Readiness.FAILED, False, Readiness.FAILED),
        (Readiness.STARTING, True, Readiness.STARTING),
    ],
)
def test_readiness_with_checks(startup, checks_ok, expected):
    assert readiness_with_checks(startup, checks_ok) is expected
