"""Probe verdicts: what a probe observed -> one classified ``Verdict``.

Pure: no I/O, no asyncio, no clock. The I/O layer (``safeship.probe``) fills an
``Observation`` with what it saw, phase by phase; ``classify`` decides. The rollout logic
only needs ``Verdict.category`` and ``Verdict.is_success``; the CLI uses ``Verdict.exit_code``.

Close codes follow the ``4000 + HTTP status`` convention (4401, 4403, 4429, ...), so a close
code and the HTTP status of a refused upgrade fall into the same categories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from .closecodes import DENIAL_HEADER, close_meaning

__all__ = [
    "EXIT_CODES",
    "Category",
    "Observation",
    "Verdict",
    "VerdictKind",
    "classify",
    "close_category",
    "starting_phase",
    "status_category",
]

_EXCERPT = 200


class VerdictKind(StrEnum):
    OK = "ok"
    DNS = "dns"
    TCP_REFUSED = "tcp_refused"
    TCP_TIMEOUT = "tcp_timeout"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    NO_ROUTE = "no_route"
    """A WebSocket upgrade answered 403/404 by something other than safeship's guard."""
    CLOSED = "closed"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    CHECK_FAILED = "check_failed"
    INCONCLUSIVE = "inconclusive"


class Category(StrEnum):
    """What a verdict means for a rollout."""

    OK = "ok"
    AUTH = "auth"
    NOT_READY = "not_ready"
    INTERNAL_ERROR = "internal_error"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    CHECK_FAILED = "check_failed"
    INCONCLUSIVE = "inconclusive"


# CLI exit code per kind: 0 ok, 1 the service failed the probe, 2 the probe could not run
# (like a usage or config error, it is the caller's setup to fix, not the service).
EXIT_CODES: Mapping[VerdictKind, int] = {kind: 1 for kind in VerdictKind} | {
    VerdictKind.OK: 0,
    VerdictKind.INCONCLUSIVE: 2,
}


def status_category(status: int) -> Category:
    """The category of an HTTP status that answered a probe (2xx is only ok for HTTP probes)."""
    if status in (401, 403):
        return Category.AUTH
    if status in (429, 503):
        return Category.NOT_READY
    if 500 <= status <= 599:
        return Category.INTERNAL_ERROR
    return Category.PROTOCOL


def close_category(code: int) -> Category:
    """The category of a close code that ended a probe before it succeeded."""
    if 4400 <= code <= 4599:
        return status_category(code - 4000)
    if code == 1008:  # frameworks (FastAPI's WebSocketException) deny auth with 1008
        return Category.AUTH
    if code in (1001, 1012, 1013):
        return Category.NOT_READY
    if code in (1006, 1011, 1014):  # 1006: the server broke the "never a silent drop" rule
        return Category.INTERNAL_ERROR
    return Category.PROTOCOL


@dataclass(frozen=True)
class Observation:
    """What the I/O layer saw. Unset fields mean "not reached". No secrets in here.

    Phases are ``dns``, ``tcp``, ``tls``, ``upgrade`` (or ``response`` for HTTP), ``settle``
    (connect-only window), ``step N`` (1-based), ``close``.
    """

    transport: Literal["ws", "http"] = "ws"
    target: str = ""
    """``host:port`` for messages."""
    setup_error: str | None = None
    """The probe itself could not run (token unavailable, bad input): inconclusive."""
    setup_hint: str | None = None
    token_sent: bool | None = None
    resolved: bool | None = None
    dns_error: str | None = None
    connect_error: str | None = None
    connect_errno: str | None = None
    """Errno name of the failed connect, e.g. ``ECONNREFUSED``, ``ETIMEDOUT``."""
    tls_error: str | None = None
    http_status: int | None = None
    http_headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers, names lower-cased."""
    http_body: str = ""
    upgraded: bool = False
    close_code: int | None = None
    close_reason: str = ""
    close_phase: str | None = None
    timed_out_phase: str | None = None
    timeout_seconds: float | None = None
    protocol_error: str | None = None
    protocol_phase: str | None = None
    steps_total: int = 0
    steps_passed: int = 0
    check_failure: str | None = None
    check_phase: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    """Milliseconds per phase, for reports; ``classify`` does not judge speed."""


@dataclass(frozen=True)
class Verdict:
    """One classified probe outcome.

    ``code`` is the HTTP status (``http_status``) or the close code (``closed``); ``phase``
    says where it happened (``upgrade``, ``step 2``, ...); ``hint`` says what to do next.
    """

    kind: VerdictKind
    detail: str
    code: int | None = None
    phase: str | None = None
    reason: str | None = None
    hint: str | None = None
    retry_after: float | None = None

    @property
    def is_success(self) -> bool:
        return self.kind is VerdictKind.OK

    @property
    def category(self) -> Category:
        kind = self.kind
        if kind is VerdictKind.HTTP_STATUS and self.code is not None:
            return status_category(self.code)
        if kind is VerdictKind.CLOSED and self.code is not None:
            return close_category(self.code)
        return _KIND_CATEGORY[kind]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "category": self.category.value,
            "ok": self.is_success,
            "detail": self.detail,
            "code": self.code,
            "phase": self.phase,
            "reason": self.reason,
            "hint": self.hint,
            "retry_after": self.retry_after,
        }


_KIND_CATEGORY: Mapping[VerdictKind, Category] = {
    VerdictKind.OK: Category.OK,
    VerdictKind.DNS: Category.UNREACHABLE,
    VerdictKind.TCP_REFUSED: Category.UNREACHABLE,
    VerdictKind.TCP_TIMEOUT: Category.UNREACHABLE,
    VerdictKind.TLS: Category.UNREACHABLE,
    VerdictKind.HTTP_STATUS: Category.PROTOCOL,  # only without a code
    VerdictKind.NO_ROUTE: Category.PROTOCOL,
    VerdictKind.CLOSED: Category.PROTOCOL,  # only without a code
    VerdictKind.TIMEOUT: Category.TIMEOUT,
    VerdictKind.PROTOCOL: Category.PROTOCOL,
    VerdictKind.CHECK_FAILED: Category.CHECK_FAILED,
    VerdictKind.INCONCLUSIVE: Category.INCONCLUSIVE,
}


_HINT_NO_ANSWER = "the host did not answer: check the address, firewalls, and that the host is up"
_TIMEOUT_HINTS = {
    "dns": "the resolver did not answer: check this machine's DNS",
    "tls": "the TLS handshake stalled: check that the port serves TLS",
    "upgrade": "the server accepted the TCP connection but never answered the upgrade: "
    "a load balancer with no healthy backend, or a blocked event loop",
    "response": "the server accepted the connection but never answered the request",
}


def classify(obs: Observation) -> Verdict:
    """Classify an observation; the earliest failing phase wins."""
    target = obs.target or "the server"
    if obs.setup_error is not None:
        return Verdict(
            VerdictKind.INCONCLUSIVE,
            f"the probe could not run: {obs.setup_error}",
            phase="setup",
            hint=obs.setup_hint
            or "fix the probe's setup (token source, URL); this says nothing about the service",
        )
    if obs.dns_error is not None:
        return Verdict(
            VerdictKind.DNS,
            f"could not resolve {target}: {obs.dns_error}",
            phase="dns",
            hint="check the host name in the URL and this machine's DNS",
        )
    if obs.timed_out_phase in ("dns", "tcp", "tls"):
        return _timeout(obs)
    if obs.connect_error is not None:
        return _connect_failed(obs, target)
    if obs.tls_error is not None:
        return Verdict(
            VerdictKind.TLS,
            f"TLS handshake with {target} failed: {obs.tls_error}",
            phase="tls",
            hint="check the certificate (host name, chain, expiry), or use ws:// / http:// "
            "for a plain listener",
        )
    if obs.http_status is not None and not obs.upgraded:
        if obs.transport == "http" and 200 <= obs.http_status <= 299:
            return Verdict(
                VerdictKind.OK, f"HTTP {obs.http_status} from {target}", code=obs.http_status
            )
        if _unmarked_refusal(obs):
            return Verdict(
                VerdictKind.NO_ROUTE,
                f"HTTP {obs.http_status} to the upgrade at {target}, not a safeship denial: "
                "no such WebSocket route (or refused by something in front of the guard)",
                code=obs.http_status,
                phase="upgrade",
                hint="check the URL's path against the app's WebSocket routes (the manifest's "
                "service.ws_path); safeship's guard marks each of its refusals with the "
                f"{DENIAL_HEADER} header",
            )
        return _http_status(obs)
    if obs.protocol_error is not None:
        return Verdict(
            VerdictKind.PROTOCOL,
            obs.protocol_error,
            phase=obs.protocol_phase,
            hint="the server did not speak the expected protocol: check the URL path and "
            "that a WebSocket endpoint is served there",
        )
    if obs.timed_out_phase is not None:
        return _timeout(obs)
    if obs.close_code is not None:
        return _closed(obs)
    if obs.check_failure is not None:
        return Verdict(
            VerdictKind.CHECK_FAILED,
            f"{obs.check_phase or 'step'}: {obs.check_failure}",
            phase=obs.check_phase,
            hint="the service answered, but not as expected: compare the reply with --expect",
        )
    if obs.steps_passed < obs.steps_total:
        return Verdict(
            VerdictKind.INCONCLUSIVE,
            f"the probe stopped after {obs.steps_passed} of {obs.steps_total} steps without "
            "a recorded cause",
            phase=f"step {obs.steps_passed + 1}",
        )
    if obs.transport == "ws" and not obs.upgraded:
        return Verdict(VerdictKind.INCONCLUSIVE, "the probe ended before the upgrade")
    steps = f", {obs.steps_passed} step(s) passed" if obs.steps_total else ""
    what = "HTTP" if obs.transport == "http" else "WebSocket upgrade accepted"
    return Verdict(VerdictKind.OK, f"{what} by {target}{steps}")


def _connect_failed(obs: Observation, target: str) -> Verdict:
    why = obs.connect_error
    if obs.connect_errno and obs.connect_errno not in (why or ""):
        why = f"{why} ({obs.connect_errno})"
    if obs.connect_errno == "ETIMEDOUT":
        return Verdict(
            VerdictKind.TCP_TIMEOUT,
            f"TCP connect to {target} timed out: {why}",
            phase="tcp",
            hint=_HINT_NO_ANSWER,
        )
    return Verdict(
        VerdictKind.TCP_REFUSED,
        f"TCP connect to {target} failed: {why}",
        phase="tcp",
        hint="nothing accepts connections there: is the service running, on this host and port?",
    )


def _timeout(obs: Observation) -> Verdict:
    phase = obs.timed_out_phase or "probe"
    within = f" within {obs.timeout_seconds:g} s" if obs.timeout_seconds is not None else ""
    if phase == "tcp":
        return Verdict(
            VerdictKind.TCP_TIMEOUT,
            f"TCP connect to {obs.target or 'the server'} did not complete{within}",
            phase="tcp",
            hint=_HINT_NO_ANSWER,
        )
    if phase.startswith("step"):
        detail = f"{phase}: no matching reply{within}"
        hint = "does the service echo the message's request_id? is the step timeout long enough?"
    else:
        detail = f"timed out in phase {phase}{within}"
        hint = _TIMEOUT_HINTS.get(phase, "the server did not answer in time")
    return Verdict(VerdictKind.TIMEOUT, detail, phase=phase, hint=hint)


def _unmarked_refusal(obs: Observation) -> bool:
    """Starlette answers an upgrade to a path without a WebSocket route with a bare 403 (404
    elsewhere); the guard's own refusals carry ``DENIAL_HEADER``."""
    if obs.transport != "ws" or obs.http_status not in (403, 404):
        return False
    return DENIAL_HEADER not in {k.lower() for k in obs.http_headers}


def _http_status(obs: Observation) -> Verdict:
    status = obs.http_status
    assert status is not None
    headers = {k.lower(): v for k, v in obs.http_headers.items()}
    body = _body_summary(obs.http_body)
    what = "the upgrade" if obs.transport == "ws" else "the request"
    parts = [f"HTTP {status} to {what}"]
    if body:
        parts.append(body)
    if "www-authenticate" in headers:
        parts.append(f"WWW-Authenticate: {_excerpt(headers['www-authenticate'])}")
    retry_after = _retry_after(headers.get("retry-after"))
    if retry_after is not None:
        parts.append(f"Retry-After: {retry_after:g} s")
    category = status_category(status)
    return Verdict(
        VerdictKind.HTTP_STATUS,
        "; ".join(parts),
        code=status,
        phase="upgrade" if obs.transport == "ws" else "response",
        hint=_category_hint(category, status, obs),
        retry_after=retry_after,
    )


def _closed(obs: Observation) -> Verdict:
    code = obs.close_code
    assert code is not None
    phase = obs.close_phase
    if phase == "close" and code in (1000, 1001):
        steps = f", {obs.steps_passed} step(s) passed" if obs.steps_total else ""
        return Verdict(
            VerdictKind.OK, f"closed normally ({code}) after the probe{steps}", code=code
        )
    where = f" during {phase}" if phase else ""
    reason = obs.close_reason
    detail = f"closed with {code} ({close_meaning(code)}){where}"
    if reason:
        detail += f": {_excerpt(reason)}"
    return Verdict(
        VerdictKind.CLOSED,
        detail,
        code=code,
        phase=phase,
        reason=reason or None,
        hint=_category_hint(close_category(code), code, obs),
    )


def _category_hint(category: Category, code: int, obs: Observation) -> str | None:
    if category is Category.AUTH:
        if code in (403, 4403):
            return "the token was valid but is not allowed here: check its subject and claims"
        if obs.token_sent is False:
            return "no token was sent: pass one with --token, --token-file, --secret-env or --token-url"
        return (
            "the service rejected the token: sign it with the secret the service expects "
            "(JWT_SECRET_<ENV>), and check issuer, audience and expiry"
        )
    if category is Category.NOT_READY:
        if code in (429, 4429):
            return "the connection limit was reached: back off and retry"
        if code == 1012:
            return "the service is draining for a restart: reconnect"
        return "the service is not ready: check GET /health/ready and its startup phases"
    if category is Category.INTERNAL_ERROR:
        if code == 1011:
            return "look the error id in the close reason up in the service's logs"
        return "the service failed: read its logs for the traceback"
    return None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: shown in the headers, not parsed here
    return seconds if seconds >= 0 else None


def _body_summary(body: str) -> str:
    """The useful part of a denial or health body: ``{error, detail}`` or ``{status, phase, error}``."""
    text = body.strip()
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return _excerpt(text)
    if isinstance(data, dict):
        keys = ("error", "detail", "status", "phase", "hint")
        parts = [
            f"{k}={_excerpt(str(data[k]), 120)}" for k in keys if data.get(k) not in (None, "")
        ]
        if parts:
            return " ".join(parts)
    return _excerpt(text)


def starting_phase(detail: str) -> str | None:
    """The startup phase named in a readiness answer's detail (``status=starting
    phase=cache``, as :func:`_body_summary` writes it), or ``None``."""
    if "status=starting" not in detail:
        return None
    for word in detail.split():
        if word.startswith("phase=") and len(word) > len("phase="):
            return word[len("phase=") :].rstrip(";,")
    return None


def _excerpt(text: str, limit: int = _EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
