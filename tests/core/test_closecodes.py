import json

import pytest

from safeship.core.closecodes import TABLE, CloseCode, DenyKind, close_meaning, denial_response

# Every row of the DESIGN.md table: kind -> (HTTP status, close code, error, extra header)
ROWS = [
    (
        DenyKind.UNAUTHENTICATED,
        401,
        4401,
        "invalid_token",
        (b"www-authenticate", b'Bearer error="invalid_token"'),
    ),
    (DenyKind.FORBIDDEN, 403, 4403, "forbidden", None),
    (DenyKind.TOO_MANY, 429, 4429, "too_many_connections", (b"retry-after", b"5")),
    (DenyKind.NOT_READY, 503, 1013, "not_ready", (b"retry-after", b"1")),
    (DenyKind.DRAINING, 503, 1012, "draining", (b"retry-after", b"1")),
    (DenyKind.INTERNAL, 500, 1011, "internal_error", None),
]


def test_every_kind_has_a_row():
    assert {row[0] for row in ROWS} == set(DenyKind)
    assert set(TABLE) == set(DenyKind)


@pytest.mark.parametrize(("kind", "status", "code", "error", "header"), ROWS)
def test_denial_row(kind, status, code, error, header):
    spec = TABLE[kind]
    assert spec.http_status == status
    assert int(spec.close_code) == code
    got_status, headers, body = denial_response(kind, "why it was refused")
    assert got_status == status
    assert json.loads(body) == {"error": error, "detail": "why it was refused"}
    assert (b"content-type", b"application/json") in headers
    assert (b"content-length", str(len(body)).encode()) in headers
    if header is not None:
        assert header in headers
    names = {name for name, _ in headers}
    assert (b"www-authenticate" in names) == (kind is DenyKind.UNAUTHENTICATED)


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (1000, "normal"),
        (1006, "dropped"),
        (1009, "too big"),
        (1011, "internal"),
        (1012, "restart"),
        (1013, "try again"),
        (4401, "token"),
        (4403, "forbidden"),
        (4429, "too many"),
        (4404, "HTTP 404"),
        (4001, "application-defined"),
        (2999, "unknown"),
    ],
)
def test_close_meaning(code, fragment):
    assert fragment in close_meaning(code)


def test_close_codes_follow_the_4000_plus_status_convention():
    assert CloseCode.UNAUTHORIZED == 4000 + 401
    assert CloseCode.FORBIDDEN == 4000 + 403
    assert CloseCode.TOO_MANY_CONNECTIONS == 4000 + 429
