"""The monitor loop: every endpoint probed on its own schedule, every sample judged by
``core.slo`` (one :class:`~safeship.core.slo.ProbeTracker` per endpoint), and what the
judgement changes carried out: history, metrics, notifications.

Probes start on a fixed schedule whatever the last one took, so a probe stalled until its
deadline does not delay the next: up to ``ceil(timeout / interval) + 1`` probes of one
endpoint may be in flight, and a stall is counted at the pace of the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Manifest
from ..core.slo import (
    BurnPair,
    Change,
    CheckClass,
    Hysteresis,
    ProbeTracker,
    SloPolicy,
    Transition,
)
from ..errors import ConfigError
from .analysis import analysis
from .endpoints import Endpoint
from .exporter import Exporter
from .history import History
from .probing import EndpointProber, Sample

__all__ = ["IncidentEvent", "Monitor", "MonitorSettings"]

logger = logging.getLogger("safeship.monitor")

_PRUNE_EVERY = 600.0


@dataclass(frozen=True)
class MonitorSettings:
    interval: float = 10.0
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    slo: SloPolicy = field(default_factory=SloPolicy)
    latency_threshold_ms: float = 1000.0
    latency_samples: int = 20

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> MonitorSettings:
        """Raises ``ConfigError`` naming the key of impossible thresholds."""
        m = manifest.monitor
        try:
            hysteresis = Hysteresis(m.window, m.failures, m.successes)
        except ValueError as exc:
            raise ConfigError(
                f"[monitor] failures = {m.failures} cannot happen in a window of {m.window}: {exc}",
                file=manifest.display_path,
                key="monitor.failures",
                hint="set failures to at most window",
            ) from None
        slo = SloPolicy(
            objective=m.objective,
            pairs=(
                BurnPair("fast", m.fast_windows[0], m.fast_windows[1], m.fast_burn),
                BurnPair("slow", m.slow_windows[0], m.slow_windows[1], m.slow_burn),
            ),
        )
        return cls(m.interval, hysteresis, slo, m.latency_threshold_ms, m.latency_samples)

    def tracker(self) -> ProbeTracker:
        return ProbeTracker(
            hysteresis=self.hysteresis,
            slo=self.slo,
            latency_threshold_ms=self.latency_threshold_ms,
            latency_samples=self.latency_samples,
        )


@dataclass(frozen=True)
class IncidentEvent:
    """An incident that opened or resolved, for notifications."""

    endpoint: Endpoint
    transition: Transition
    sample: Sample
    explanation: str = ""
    """What more the monitor found out (the auth class: the secrets' fingerprints)."""

    @property
    def kind(self) -> str:
        return f"incident_{self.transition.change}"


Explainer = Callable[[Endpoint, CheckClass, Sample], Awaitable[str]]
IncidentSink = Callable[[IncidentEvent], Awaitable[None]]


class Monitor:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        probers: Mapping[str, EndpointProber],
        settings: MonitorSettings,
        *,
        history: History | None = None,
        exporter: Exporter | None = None,
        on_incident: IncidentSink | None = None,
        explain: Explainer | None = None,
        on_sample: Callable[[Sample], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = list(endpoints)
        self.probers = dict(probers)
        self.settings = settings
        self.history = history
        self.exporter = exporter or Exporter()
        self.on_incident = on_incident
        self.explain = explain
        self.on_sample = on_sample
        """Called with every judged sample (the live view); must not raise."""
        self.clock = clock
        self.trackers = {e.key: settings.tracker() for e in self.endpoints}
        self.last: dict[str, Sample] = {}
        self.events: deque[IncidentEvent] = deque(maxlen=256)
        self._last_prune = -math.inf
        self._stop: asyncio.Event | None = None
        self._loops: dict[str, asyncio.Task[None]] = {}

    # -- state -----------------------------------------------------------------------------

    def restore(self) -> int:
        """Replay the history's recent samples into the trackers (SLO windows survive a
        restart); returns how many. Incidents replayed here are not notified again."""
        if self.history is None:
            return 0
        since = self.clock() - self.settings.slo.horizon
        count = 0
        for endpoint in self.endpoints:
            tracker = self.trackers[endpoint.key]
            for at, category, handshake_ms in self.history.samples(endpoint.key, since):
                tracker.observe(at, category, handshake_ms=handshake_ms)
                count += 1
        return count

    def analysis(self, env: str, revision: str | None = None) -> tuple[int, dict[str, Any]]:
        key = env if revision is None else f"{env}@{revision}"
        known = key in self.trackers
        status, doc = analysis(
            env, revision, self.trackers.get(key), self.last.get(key), self.clock()
        )
        if not known:
            doc["reason"] = f"{key} is not monitored here; monitored: {', '.join(self.trackers)}"
            return 404, doc
        return status, doc

    def snapshot(self) -> dict[str, Any]:
        """Every endpoint's analysis document, by key."""
        return {e.key: self.analysis(e.env, e.revision)[1] for e in self.endpoints}

    # -- probing ---------------------------------------------------------------------------

    async def probe_once(self) -> list[Sample]:
        """Probe every endpoint once, concurrently, and judge the samples."""
        samples = await asyncio.gather(*(self._probe(e) for e in self.endpoints))
        for sample in samples:
            await self._judge(sample)
        return list(samples)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until ``stop`` is set."""
        self._stop = stop
        for endpoint in self.endpoints:
            self._start(endpoint)
        try:
            await stop.wait()
        finally:
            loops, self._loops = list(self._loops.values()), {}
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self._stop = None

    def _start(self, endpoint: Endpoint) -> None:
        if self._stop is not None and endpoint.key not in self._loops:
            self._loops[endpoint.key] = asyncio.create_task(self._loop(endpoint, self._stop))

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> tuple[list[str], list[str]]:
        """Probe these from now on: a new revision is added, a stopped one is dropped (with its
        incidents: it serves no one). Returns the keys added and removed."""
        wanted = {e.key: e for e in endpoints}
        removed = [key for key in self.trackers if key not in wanted]
        added = [key for key in wanted if key not in self.trackers]
        for key in removed:
            task = self._loops.pop(key, None)
            if task is not None:
                task.cancel()
            del self.trackers[key]
            self.last.pop(key, None)
        for key in added:
            self.trackers[key] = self.settings.tracker()
        self.endpoints = list(endpoints)
        for endpoint in self.endpoints:
            self._start(endpoint)
        return added, removed

    async def _loop(self, endpoint: Endpoint, stop: asyncio.Event) -> None:
        interval = self.settings.interval
        prober = self.probers[endpoint.env]
        limit = math.ceil(prober.timeout / interval) + 1
        in_flight: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not stop.is_set():
                if len(in_flight) < limit:
                    task = asyncio.create_task(self._probe_and_judge(endpoint))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                next_at += interval
                delay = next_at - loop.time()
                if delay < 0:  # fell behind (a suspended machine): start again from now
                    next_at, delay = loop.time(), 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _probe_and_judge(self, endpoint: Endpoint) -> None:
        try:
            await self._judge(await self._probe(endpoint))
        except asyncio.CancelledError:
            raise
        except Exception:  # a locked history, a bug: the next probe must still run
            logger.exception("monitor: judging a probe of %s failed", endpoint.key)

    async def _probe(self, endpoint: Endpoint) -> Sample:
        return await self.probers[endpoint.env].probe(endpoint)

    async def _judge(self, sample: Sample) -> None:
        endpoint = sample.endpoint
        key = endpoint.key
        tracker = self.trackers.get(key)
        if tracker is None:
            return  # dropped while this probe ran
        self.last[key] = sample
        transitions = tracker.observe(
            sample.at, sample.category, handshake_ms=sample.handshake_ms, detail=sample.detail
        )
        self.exporter.observe(sample)
        self.exporter.set_state(key, set(tracker.open_incidents()), tracker.burn_rates(sample.at))
        if self.history is not None:
            self.history.add(sample)
            if sample.at - self._last_prune > _PRUNE_EVERY:
                self._last_prune = sample.at
                self.history.prune(sample.at)
        if self.on_sample is not None:
            self.on_sample(sample)
        for transition in transitions:
            await self._transition(endpoint, transition, sample)

    async def _transition(self, endpoint: Endpoint, transition: Transition, sample: Sample) -> None:
        check = transition.check
        explanation = ""
        if transition.change is Change.OPENED and self.explain is not None:
            try:
                explanation = await asyncio.wait_for(self.explain(endpoint, check, sample), 5.0)
            except Exception as exc:  # the explanation is extra: never lose the alert for it
                explanation = f"(no further diagnosis: {type(exc).__name__}: {exc})"
        if self.history is not None:
            if transition.change is Change.OPENED:
                detail = transition.detail + (f" -- {explanation}" if explanation else "")
                self.history.open_incident(
                    endpoint.key, endpoint.env, endpoint.revision, str(check), transition.at, detail
                )
            else:
                self.history.resolve_incident(endpoint.key, str(check), transition.at)
        event = IncidentEvent(endpoint, transition, sample, explanation)
        self.events.append(event)
        if self.on_incident is not None:
            try:
                await self.on_incident(event)
            except Exception:  # a notification that failed must not stop the probing
                logger.exception("monitor: handling %s for %s failed", event.kind, endpoint.key)
