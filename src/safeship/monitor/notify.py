"""Notifications of deploy and monitor events, sent through apprise (Slack, Teams, Discord,
email, JSON webhooks, ... one URL scheme each).

Building a message is kept apart from sending it: :func:`deploy_notice` and
:func:`incident_notice` are pure (an event in, a :class:`Notice` out), ``core.notify`` decides
whether it goes out (deduplication, rate limit, resolutions), and :class:`Notifier` sends it.

Every notice carries the error behind the error, the revision, and the command that shows
more (``safeship diagnose --env E``). URLs come from the environment variable named by
``[notify] urls_env``, never from the manifest, and are never printed (they carry tokens).
Bodies go through ``safeship.secrets.redact`` on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Manifest
from ..core.notify import NotifyGate
from ..errors import ConfigError
from ..secrets import redact

if TYPE_CHECKING:
    from .scheduler import IncidentEvent

__all__ = [
    "EVENT_KINDS",
    "Notice",
    "Notifier",
    "deploy_notice",
    "incident_notice",
    "parse_urls",
]

logger = logging.getLogger("safeship.notify")

EVENT_KINDS = (
    "blocked",
    "verified",
    "switched",
    "canary_step",
    "promoted",
    "rolled_back",
    "paused",
    "failed",
    "incident_opened",
    "incident_resolved",
)
_LEVEL = {
    "blocked": "failure",
    "verified": "info",
    "switched": "info",
    "canary_step": "info",
    "promoted": "success",
    "rolled_back": "failure",
    "paused": "warning",
    "failed": "failure",
    "incident_opened": "failure",
    "incident_resolved": "success",
}
_OUTCOMES = {
    "promoted": "promoted",
    "restored": "promoted",
    "rolled_back": "rolled_back",
    "paused": "paused",
    "failed": "failed",
    "error": "failed",
    "blocked": "blocked",
}
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Notice:
    kind: str
    env: str
    summary: str
    revision: str | None = None
    cause: str = ""
    """The error behind the error: the probe verdict, the failing gate, the startup failure."""
    command: str = ""
    key: str = ""
    """What makes two notices the same, for deduplication."""
    resolves: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def level(self) -> str:
        return _LEVEL.get(self.kind, "info")

    @property
    def title(self) -> str:
        where = f"{self.env}" + (f" {self.revision}" if self.revision else "")
        return f"safeship: {self.kind.replace('_', ' ')} ({where})"

    def body(self) -> str:
        lines = [self.summary]
        if self.cause and self.cause != self.summary:
            lines.append(f"cause: {self.cause}")
        if self.revision:
            lines.append(f"revision: {self.revision}")
        if self.command:
            lines.append(f"see more: {self.command}")
        return redact("\n".join(lines))


def _diagnose(env: str) -> str:
    return f"safeship diagnose --env {env}"


# -- building -------------------------------------------------------------------------------


def incident_notice(event: IncidentEvent) -> Notice:
    t = event.transition
    endpoint = event.endpoint
    check = str(t.check)
    opened_key = f"incident_opened|{endpoint.key}|{check}"
    sample = event.sample
    if t.change == "opened":
        cause = t.detail
        if sample.hint:
            cause += f" (hint: {sample.hint})"
        if event.explanation:
            cause += f"; {event.explanation}"
        return Notice(
            "incident_opened",
            endpoint.env,
            f"{check} incident on {endpoint.key} ({endpoint.base_url}): {t.detail}",
            endpoint.revision,
            cause,
            _diagnose(endpoint.env),
            opened_key,
            details={"class": check, "url": endpoint.base_url},
        )
    lasted = "" if t.opened_at is None else f" after {t.at - t.opened_at:.0f}s"
    return Notice(
        "incident_resolved",
        endpoint.env,
        f"{check} incident on {endpoint.key} resolved{lasted}: {sample.detail}",
        endpoint.revision,
        "",
        f"safeship monitor --once --env {endpoint.env}",
        f"incident_resolved|{endpoint.key}|{check}",
        resolves=opened_key,
        details={"class": check, "url": endpoint.base_url},
    )


def _deploy_cause(record: Mapping[str, Any]) -> str:
    """The error behind a deploy's outcome: the last failed probe, the blocking gate's first
    finding, the failed step's detail, else the reason."""
    for key in ("watch", "verification"):
        failed = [p for p in record.get(key) or () if p.get("category") not in (None, "ok")]
        if failed:
            last = failed[-1]
            return f"{last.get('what', 'probe')}: {last.get('detail', '')}".strip()
    for gate in record.get("gates") or ():
        if gate.get("status") in ("failed", "error"):
            top = list(gate.get("top") or ()) or [gate.get("error") or gate.get("status")]
            return f"gate {gate.get('gate')}: {top[0]}"
    for step in record.get("steps") or ():
        if step.get("status") == "failed" and step.get("detail"):
            return f"{step['name']}: {step['detail']}"
    return str(record.get("reason", ""))


def deploy_notice(event: Any, env: str) -> Notice | None:
    """The notice for a deploy :class:`~safeship.deploy.record.Event`, or ``None``."""
    kind, step, status = event.kind, event.step, event.status
    data = event.data or {}
    if kind == "outcome":
        mapped = _OUTCOMES.get(str(step))
        if mapped is None:
            return None
        if mapped == "failed" and str(event.detail).startswith("gates failed"):
            mapped = "blocked"  # a gate blocked it: nothing was started
        revision = data.get("candidate")
        cause = _deploy_cause(data) if mapped != "promoted" else ""
        return Notice(
            mapped,
            env,
            f"deploy {data.get('id') or ''} {str(step).replace('_', ' ')}: {event.detail}".replace(
                "  ", " "
            ),
            revision,
            cause,
            _diagnose(env) if mapped != "promoted" else "safeship status",
            f"{mapped}|{env}|{data.get('id')}",
            details={"deploy": data.get("id"), "previous": data.get("previous")},
        )
    if kind == "step" and status == "ok" and step in ("verify", "switch"):
        mapped = "verified" if step == "verify" else "switched"
        return Notice(mapped, env, f"{step}: {event.detail}", None, "", "safeship status",
                      f"{mapped}|{env}|{event.detail}")  # fmt: skip
    if kind == "note" and step == "canary" and status == "info":
        return Notice("canary_step", env, f"canary: {event.detail}", None, "",
                      "safeship status", f"canary_step|{env}|{event.detail}")  # fmt: skip
    return None


# -- sending --------------------------------------------------------------------------------


def parse_urls(text: str | None) -> list[str]:
    return [u for u in _SEPARATORS.split(text or "") if u]


class Notifier:
    """Sends notices to every apprise URL, through the gate of ``core.notify``.

    Raises (constructor):
        ConfigError: a URL apprise does not accept (named by its position, never shown).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        gate: NotifyGate | None = None,
        events: Sequence[str] = (),
        timeout: float = 10.0,
        source: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = list(urls)
        self.gate = gate or NotifyGate()
        self.events = set(events) or set(EVENT_KINDS)
        self.timeout = timeout
        self.source = source
        self.clock = clock
        self.sent: list[Notice] = []
        self.failures: list[str] = []
        self._tasks: set[asyncio.Task[bool]] = set()
        self._apprise: Any = None
        if self.urls:
            import apprise

            self._apprise = apprise.Apprise()
            for index, url in enumerate(self.urls, 1):
                if not self._apprise.add(url):
                    scheme = url.partition("://")[0] or "?"
                    raise ConfigError(
                        f"notification URL #{index} in ${source or 'the notify URLs'} (scheme "
                        f"{scheme!r}) is not one apprise accepts",
                        key="notify.urls_env",
                        hint="check it against apprise's URL forms, e.g. "
                        "json://host:port/path or slack://TokenA/TokenB/TokenC",
                    )

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, environ: Mapping[str, str] | None = None
    ) -> Notifier:
        config = manifest.notify
        unknown = sorted(set(config.events) - set(EVENT_KINDS))
        if unknown:
            raise ConfigError(
                f"unknown notification event(s): {', '.join(unknown)}",
                file=manifest.display_path,
                key="notify.events",
                hint=f"use some of {', '.join(EVENT_KINDS)}, or [] for all",
            )
        environ = os.environ if environ is None else environ
        return cls(
            parse_urls(environ.get(config.urls_env)),
            gate=NotifyGate(
                dedupe_seconds=config.dedupe_seconds,
                max_messages=config.max_messages,
                per_seconds=config.per_seconds,
            ),
            events=config.events,
            timeout=config.timeout,
            source=config.urls_env,
        )

    @property
    def enabled(self) -> bool:
        return self._apprise is not None

    def describe(self) -> str:
        if not self.enabled:
            return f"none (${self.source} is not set)" if self.source else "none"
        return f"{len(self.urls)} URL(s) from ${self.source}"

    async def send(self, notice: Notice) -> bool:
        """Send ``notice`` if the gate lets it through; ``True`` when it was delivered."""
        if not self.enabled or notice.kind not in self.events:
            return False
        decision = self.gate.decide(notice.key, self.clock(), resolves=notice.resolves)
        if not decision.send:
            logger.debug("notification %s not sent: %s", notice.key, decision.reason)
            return False
        import apprise

        body = notice.body()
        if decision.suppressed_before:
            body += f"\n({decision.suppressed_before} earlier notification(s) were rate-limited)"
        try:
            result = await asyncio.wait_for(
                self._apprise.async_notify(
                    body=body,
                    title=notice.title,
                    notify_type=apprise.NotifyType(notice.level),
                    timeout=self.timeout,
                ),
                self.timeout + 1,
            )
        except TimeoutError:
            result = False
        except Exception as exc:  # a transport's bug must not take the deploy or monitor down
            logger.warning("notification %s failed: %s", notice.kind, type(exc).__name__)
            result = False
        if not result:
            self.failures.append(f"{notice.kind}: not delivered within {self.timeout:g}s")
            logger.warning("notification %s was not delivered to every URL", notice.kind)
            return False
        self.sent.append(notice)
        return True

    async def incident(self, event: IncidentEvent) -> bool:
        return await self.send(incident_notice(event))

    def deploy_sink(
        self, env: str, then: Callable[[Any], None] | None = None
    ) -> Callable[[Any], None]:
        """An event sink for the deploy pipeline: forwards to ``then`` (the progress view) and
        sends the matching notices in the background (see :meth:`flush`)."""

        def sink(event: Any) -> None:
            if then is not None:
                then(event)
            notice = deploy_notice(event, env) if self.enabled else None
            if notice is None or notice.kind not in self.events:
                return
            try:
                task = asyncio.get_running_loop().create_task(self.send(notice))
            except RuntimeError:
                return  # no loop: nothing to send from
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return sink

    async def flush(self) -> None:
        """Wait (within the send deadline) for the notices the deploy sink started."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.timeout + 2)

    async def close(self) -> None:
        await self.flush()
        for task in list(self._tasks):
            task.cancel()
