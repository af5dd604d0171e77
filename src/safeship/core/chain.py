"""``diagnose``: from what is known about a failing environment to its root cause, as a chain
of observations, each one explaining the one before.

Pure: :class:`Facts` holds what the I/O layer gathered (fresh probes, health endpoints, the
target's state, the serving revision's log, the secrets' fingerprints) as plain values, with
``now``; :func:`explain` returns the :class:`Chain`. The three chains the incident asked for:

- **auth (401/4401):** token verification fails -> the clients' secret fingerprint differs
  from the backend's -> which consumer holds which.
- **1011 (or the 503 a front answers when the backend died):** the serving revision's
  ``startup_failed`` line -> the phase -> the error at file:line -> the hint.
- **handshake timeouts:** the front accepts -> the backend is not ready -> it has been stuck
  in phase X for N s.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Chain", "Facts", "Link", "ProbeFact", "RevisionFact", "error_id", "explain"]


@dataclass(frozen=True)
class ProbeFact:
    """One probe of the environment's URL (a WebSocket handshake and round trip)."""

    category: str
    kind: str = ""
    code: int | None = None
    detail: str = ""
    phase: str | None = None
    reason: str | None = None
    connect_ms: float | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class RevisionFact:
    id: str
    status: str
    url: str | None = None
    exit_code: int | None = None
    log_path: str | None = None


@dataclass(frozen=True)
class Facts:
    env: str
    now: float
    url: str | None = None
    probes: Sequence[ProbeFact] = ()
    front_health: Mapping[str, Any] | None = None
    """``GET <url>/health/ready``: ``{status, body}`` or ``{error}``."""
    revision: RevisionFact | None = None
    """The revision the target serves (or last served) for the environment."""
    revision_health: Mapping[str, Any] | None = None
    """``GET <revision url>/health/ready``, bypassing the front."""
    revision_startup: Mapping[str, Any] | None = None
    """``GET <revision url>/health/startup``."""
    startup_failed: Mapping[str, Any] | None = None
    """The revision's ``startup_failed`` line (log or target record)."""
    error_lines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Error id (from a 1011's reason) -> ``{line, where, exception}`` from the log."""
    client_secret: Mapping[str, Any] | None = None
    backend_secret: Mapping[str, Any] | None = None
    consumers: Sequence[Mapping[str, Any]] = ()
    problems: Sequence[str] = ()
    """What the target says is inconsistent (a dead front, ...)."""
    incidents: Sequence[Mapping[str, Any]] = ()
    """The monitor's open incidents for the environment: ``{class, opened, key}``."""


@dataclass(frozen=True)
class Link:
    what: str
    source: str
    """Where it was seen: ``probe``, ``health``, ``target``, ``log``, ``secrets``."""
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "source": self.source, "data": dict(self.data)}


@dataclass(frozen=True)
class Chain:
    env: str
    status: str
    """``ok``, ``failing`` or ``inconclusive``."""
    symptom: str
    cause: str
    """The root cause, as an identifier: ``secret_mismatch``, ``token_rejected``,
    ``forbidden``, ``startup_failed``, ``runtime_error``, ``stuck_starting``, ``not_ready``,
    ``backend_exited``, ``nothing_serves``, ``nothing_listens``, ``wrong_reply``, ``unknown``
    or ``healthy``."""
    links: tuple[Link, ...]
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "ok": self.ok,
            "status": self.status,
            "symptom": self.symptom,
            "cause": self.cause,
            "chain": [link.as_dict() for link in self.links],
            "hint": self.hint,
        }


def explain(facts: Facts) -> Chain:
    """The chain of observations from the symptom to its root cause."""
    probes = list(facts.probes)
    counted = [p for p in probes if p.category != "inconclusive"]
    if not counted:
        why = probes[0].detail if probes else "no probe ran"
        return Chain(
            facts.env,
            "inconclusive",
            "the probes could not run",
            "unknown",
            (Link(why, "probe"),),
            "fix the probe's setup ([deploy] probe_secret, the environment's url); this says "
            "nothing about the service",
        )
    failed = [p for p in counted if p.category != "ok"]
    if not failed:
        return Chain(
            facts.env,
            "ok",
            f"{len(counted)} of {len(counted)} probes passed",
            "healthy",
            (Link(f"{len(counted)} authenticated handshakes and round trips passed", "probe"),),
        )
    category, _ = Counter(p.category for p in failed).most_common(1)[0]
    sample = next(p for p in failed if p.category == category)
    symptom = _symptom(sample, sum(p.category == category for p in failed), len(counted))
    first = Link(symptom, "probe", {"category": category, "code": sample.code})
    handler = _CHAINS.get(category, _generic)
    cause, links, hint = handler(facts, sample)
    history = [
        Link(
            f"the monitor has had an open {i.get('class')} incident on {i.get('key')} for "
            f"{max(0.0, facts.now - float(i.get('opened') or facts.now)):.0f} s",
            "history",
            {"incident": dict(i)},
        )
        for i in facts.incidents
    ]
    return Chain(facts.env, "failing", symptom, cause, (first, *history, *links), hint)


def _symptom(probe: ProbeFact, count: int, total: int) -> str:
    share = "every probe" if count == total else f"{count} of {total} probes"
    return f"{share}: {probe.detail}"


_Result = tuple[str, list[Link], str | None]


# -- auth -----------------------------------------------------------------------------------


def _auth(facts: Facts, probe: ProbeFact) -> _Result:
    links: list[Link] = []
    if probe.code in (403, 4403):
        links.append(
            Link("the token verifies, but the service forbids this subject or claims", "probe")
        )
        return (
            "forbidden",
            links,
            "check the token's subject and claims against the service's authorize rule",
        )
    links.append(Link("token verification fails: the service rejects the clients' token", "probe"))
    client, backend = facts.client_secret or {}, facts.backend_secret or {}
    client_fp, backend_fp = client.get("fingerprint"), backend.get("fingerprint")
    holders = _holders(facts.consumers)
    if client_fp and backend_fp:
        if client_fp == backend_fp:
            links.append(
                Link(
                    f"the clients' secret and the backend's have the same fingerprint "
                    f"({client_fp}): the secret is not the cause",
                    "secrets",
                    {"client": dict(client), "backend": dict(backend)},
                )
            )
            return (
                "token_rejected",
                links,
                "check the token's issuer, audience, algorithm and expiry against [auth]",
            )
        links.append(
            Link(
                f"the clients' secret fingerprint {client_fp} ({client.get('name')} in "
                f"{client.get('where') or client.get('consumer')}) differs from the backend's "
                f"{backend_fp} ({backend.get('name')} from {backend.get('where')}, as "
                f"{_revision_name(facts)} logged at startup)",
                "secrets",
                {"client": dict(client), "backend": dict(backend)},
            )
        )
    elif client_fp:
        links.append(
            Link(
                f"the clients sign with fingerprint {client_fp} ({client.get('name')}); the "
                "backend's fingerprint is not readable (no 'JWT secret for' line in its log)",
                "secrets",
                {"client": dict(client)},
            )
        )
    if holders:
        consumers = [dict(c) for c in facts.consumers]
        links.append(
            Link("which consumer holds which: " + holders, "secrets", {"consumers": consumers})
        )
    prints = {c.get("fingerprint") for c in facts.consumers if c.get("fingerprint")}
    mismatch = (client_fp and backend_fp and client_fp != backend_fp) or len(prints) > 1
    if not mismatch:
        return (
            "token_rejected",
            links,
            "compare the secret the clients sign with and the one the service reads "
            "(`safeship check --only secrets`), then issuer, audience and expiry",
        )
    if not backend_fp:
        return (
            "secret_mismatch",
            links,
            "the consumers hold different secrets: make every one hold the secret the service "
            "verifies with (its startup log names the variable and fingerprint); "
            "`safeship check --only secrets` compares them before the next deploy",
        )
    stale = [
        str(c.get("consumer"))
        for c in facts.consumers
        if c.get("fingerprint") not in (None, backend_fp)
    ]
    target = f" into {', '.join(stale)}" if stale else ""
    return (
        "secret_mismatch",
        links,
        f"make every consumer hold the secret the backend verifies with: copy "
        f"{backend.get('name') or 'it'}{target}, or rotate both together; "
        "`safeship check --only secrets` compares them before the next deploy",
    )


def _holders(consumers: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for c in consumers:
        what = c.get("fingerprint") or f"unreadable ({c.get('error', '?')})"
        name = f" {c['name']}" if c.get("name") else ""
        parts.append(f"{c.get('consumer')}{name} = {what}")
    return "; ".join(parts)


def _revision_name(facts: Facts) -> str:
    return f"revision {facts.revision.id}" if facts.revision else "the backend"


# -- 1011, 5xx and a dead backend -----------------------------------------------------------


def _startup_links(facts: Facts) -> _Result | None:
    """The serving revision's ``startup_failed`` line -> phase -> error at file:line -> hint."""
    failure = facts.startup_failed
    revision = facts.revision
    if not failure:
        return None
    name = _revision_name(facts)
    status = revision.status if revision else "?"
    code = f" with code {revision.exit_code}" if revision and revision.exit_code is not None else ""
    links = [
        Link(
            f"{name} ({status}{code}) wrote a startup_failed line",
            "log",
            {"revision": revision.id if revision else None, "line": dict(failure)},
        ),
        Link(f"startup failed in phase {failure.get('phase')!r}", "log"),
    ]
    error = str(failure.get("error") or "")
    where = failure.get("where")
    links.append(Link(f"{error}" + (f" at {where}" if where else ""), "log", {"where": where}))
    for cause in failure.get("causes") or ():
        links.append(Link(f"caused by {cause}", "log"))
    return "startup_failed", links, failure.get("hint") or None


def _internal(facts: Facts, probe: ProbeFact) -> _Result:
    found = _startup_links(facts)
    if found is not None:
        return found
    found_id = error_id(probe.reason or probe.detail)
    logged = facts.error_lines.get(found_id) if found_id else None
    name = _revision_name(facts)
    if logged:
        where = logged.get("where")
        links = [
            Link(f"{name} logged error id {found_id}: {logged.get('line')}", "log"),
            Link(
                f"{logged.get('exception') or 'an exception'}" + (f" at {where}" if where else ""),
                "log",
                {"where": where},
            ),
        ]
        hint = (
            "a name no longer defined: restore its import or rename the use (`safeship check` "
            "finds them before a deploy)"
            if "NameError" in str(logged.get("exception"))
            else "fix the exception at that line; the traceback is in the log"
        )
        return "runtime_error", links, hint
    log = f": read {facts.revision.log_path}" if facts.revision and facts.revision.log_path else ""
    return (
        "unknown",
        [Link(f"{name} runs; no startup failure or logged error matches the close", "target")],
        f"look the error id up in the service's logs{log}",
    )


def error_id(text: str) -> str | None:
    """The error id a 1011's reason carries (``... id e-1234``)."""
    words = text.replace(",", " ").replace(")", " ").split()
    for before, word in itertools.pairwise(words):
        if before.lower() in ("id", "id:", "error_id", "error_id="):
            return word.strip(".;:")
    return None


# -- not ready, timeouts --------------------------------------------------------------------


def _stuck_links(facts: Facts) -> _Result | None:
    """The backend's own health: not ready -> stuck in phase X for N s."""
    health = facts.revision_health or {}
    raw_body = health.get("body")
    body: Mapping[str, Any] = raw_body if isinstance(raw_body, Mapping) else {}
    startup = facts.revision_startup or {}
    raw = startup.get("body")
    snapshot: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    known = snapshot or body
    if known.get("status") != "starting":
        return None
    name = _revision_name(facts)
    phase = known.get("phase")
    links = [
        Link(
            f"{name} is not ready: /health/ready answers {health.get('status', '?')} "
            f"(status starting, phase {phase!r})",
            "health",
            {"body": dict(body or {})},
        )
    ]
    stuck_for, timeout = _phase_age(snapshot, facts.now)
    if stuck_for is not None:
        over = f" (its timeout is {timeout:g} s)" if timeout is not None else ""
        links.append(
            Link(
                f"it has been stuck in phase {phase!r} for {stuck_for:.0f} s{over}",
                "health",
                {"phase": phase, "seconds": round(stuck_for, 1), "timeout_s": timeout},
            )
        )
    hint = (
        f"phase {phase!r} does not finish: check what it waits on (a database, a cache, an "
        "upstream), and its timeout; /health/startup lists every phase"
    )
    return "stuck_starting", links, hint


def _phase_age(snapshot: Mapping[str, Any], now: float) -> tuple[float | None, float | None]:
    """How long the running phase has run: ``since`` (when startup began) plus the phases
    done before it."""
    since = snapshot.get("since")
    if not isinstance(since, int | float):
        return None, None
    done, timeout = 0.0, None
    for phase in snapshot.get("phases") or ():
        if phase.get("state") == "running":
            timeout = phase.get("timeout_s")
            break
        done += (phase.get("duration_ms") or 0.0) / 1000.0
    return max(0.0, now - since - done), timeout


def _backend_gone(facts: Facts) -> _Result | None:
    revision = facts.revision
    if revision is None:
        link = Link("the target serves no revision for this environment", "target")
        return "nothing_serves", [link], "deploy one with `safeship deploy`"
    if revision.status in ("exited", "failed", "stopped"):
        found = _startup_links(facts)
        if found is not None:
            return found
        code = f" with code {revision.exit_code}" if revision.exit_code is not None else ""
        log = f"; its log: {revision.log_path}" if revision.log_path else ""
        return (
            "backend_exited",
            [Link(f"revision {revision.id} {revision.status}{code}{log}", "target")],
            "read the revision's log for why it stopped, then deploy a fix or `safeship rollback`",
        )
    return None


def _not_ready(facts: Facts, probe: ProbeFact) -> _Result:
    for step in (_backend_gone, _startup_links, _stuck_links):
        found = step(facts)
        if found is not None:
            return found
    return (
        "not_ready",
        [
            Link(
                f"{_revision_name(facts)} says it is not ready: {_health_text(facts.revision_health)}",
                "health",
            )
        ],
        "check GET /health/ready and /health/startup of the serving revision",
    )


def _timeout(facts: Facts, probe: ProbeFact) -> _Result:
    links: list[Link] = []
    if probe.phase in ("upgrade", None) and probe.connect_ms is not None:
        links.append(
            Link(
                f"the front accepts: TCP connected in {probe.connect_ms:.0f} ms, then the upgrade "
                f"went unanswered" + (f" for {probe.timeout_s:g} s" if probe.timeout_s else ""),
                "probe",
                {"connect_ms": probe.connect_ms},
            )
        )
    front = facts.front_health
    if front is not None:
        links.append(Link(f"through the front, /health/ready: {_health_text(front)}", "health"))
    for step in (_backend_gone, _stuck_links, _startup_links):
        found = step(facts)
        if found is not None:
            cause, more, hint = found
            return cause, links + more, hint
    if facts.revision_health is not None:
        links.append(
            Link(
                f"{_revision_name(facts)} itself, /health/ready: "
                f"{_health_text(facts.revision_health)}",
                "health",
            )
        )
    return (
        "not_ready",
        links,
        "something between the clients and the backend accepts connections it cannot serve: "
        "check the load balancer's backends and the revision's event loop",
    )


def _health_text(health: Mapping[str, Any] | None) -> str:
    if not health:
        return "not checked"
    if "error" in health:
        return f"no answer ({health['error']})"
    body = health.get("body")
    if isinstance(body, Mapping):
        keys = ("status", "phase", "error", "detail")
        shown = " ".join(f"{k}={body[k]}" for k in keys if body.get(k) not in (None, ""))
        return f"HTTP {health.get('status')} {shown}".strip()
    return f"HTTP {health.get('status')}"


# -- the rest -------------------------------------------------------------------------------


def _unreachable(facts: Facts, probe: ProbeFact) -> _Result:
    links = [Link(p, "target") for p in facts.problems]
    found = _backend_gone(facts)
    if found is not None and found[0] != "nothing_serves":
        return found[0], links + found[1], found[2]
    return (
        "nothing_listens",
        [*links, Link(f"nothing accepts connections at {facts.url or 'the URL'}", "probe")],
        "is the front (or load balancer) running? `safeship status` shows the local target",
    )


def _generic(facts: Facts, probe: ProbeFact) -> _Result:
    cause = "wrong_reply" if probe.category == "check_failed" else "unknown"
    return (
        cause,
        [],
        "compare the reply with [deploy] probe_expect" if cause == "wrong_reply" else None,
    )


_CHAINS = {
    "auth": _auth,
    "internal_error": _internal,
    "not_ready": _not_ready,
    "timeout": _timeout,
    "unreachable": _unreachable,
}
