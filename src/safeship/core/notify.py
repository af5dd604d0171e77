"""Which notifications go out: deduplication, a rate limit, and resolutions that always follow
what they resolve.

Pure: the sender asks :meth:`NotifyGate.decide` with the notice's key and ``now`` and sends
only on ``send``. Keys are plain strings the caller builds from what makes two events "the
same" (kind, environment, class, revision), never from free text that varies per probe.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Decision", "NotifyGate"]


@dataclass(frozen=True)
class Decision:
    send: bool
    reason: str = ""
    """Why not (``duplicate``, ``rate limited``, ``never announced``); empty when sent."""
    suppressed_before: int = 0
    """Notices dropped by the rate limit since the last one sent (to say so in this one)."""


class NotifyGate:
    """Args:
    dedupe_seconds: the same key is sent once within this window.
    max_messages, per_seconds: at most this many sends in any such window; a resolution of
        an incident that was announced is always sent, and counts.
    """

    def __init__(
        self, *, dedupe_seconds: float = 300.0, max_messages: int = 20, per_seconds: float = 60.0
    ) -> None:
        if max_messages < 1 or per_seconds <= 0 or dedupe_seconds < 0:
            raise ValueError("max_messages >= 1, per_seconds > 0 and dedupe_seconds >= 0")
        self.dedupe_seconds = dedupe_seconds
        self.max_messages = max_messages
        self.per_seconds = per_seconds
        self._last: dict[str, float] = {}
        self._sent: deque[float] = deque()
        self._announced: set[str] = set()
        self._dropped = 0

    def decide(self, key: str, now: float, *, resolves: str | None = None) -> Decision:
        """Whether to send the notice ``key`` now; records it when it is sent.

        Args:
            resolves: the key of the opening notice this one resolves. It is sent only when
                that one was, and then always (a page without its all-clear is worse than one
                message over the limit).
        """
        while self._sent and self._sent[0] <= now - self.per_seconds:
            self._sent.popleft()
        if resolves is not None:
            if resolves not in self._announced:
                return Decision(False, "never announced")
            self._announced.discard(resolves)
            self._last.pop(resolves, None)  # a new incident after this one is news again
            return self._send(key, now)
        last = self._last.get(key)
        if last is not None and now - last < self.dedupe_seconds:
            return Decision(False, "duplicate")
        if len(self._sent) >= self.max_messages:
            self._dropped += 1
            return Decision(False, "rate limited")
        self._announced.add(key)
        return self._send(key, now)

    def _send(self, key: str, now: float) -> Decision:
        self._last[key] = now
        self._sent.append(now)
        dropped, self._dropped = self._dropped, 0
        return Decision(True, suppressed_before=dropped)

    def is_announced(self, key: str) -> bool:
        return key in self._announced
