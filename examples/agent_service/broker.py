"""Brokers carry run events between instances; delivery inside an instance never depends on
them (runs hand events to the local :class:`~agent_service.hub.Hub` first).

Two providers, picked from :data:`BROKERS` by the settings: ``memory`` (one instance, nothing
to carry) and ``redis`` (``REDIS_URL``: publish/subscribe through Redis). Each carries two
kinds of message: run events, and commands for the instance that owns a run (a
``user_message`` sent through another instance).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from .metrics import ServiceMetrics
from .protocol import Event

__all__ = [
    "BROKERS",
    "Broker",
    "Deliver",
    "InProcessBroker",
    "OnCommand",
    "decode_message",
    "encode_command",
    "encode_event",
    "make_broker",
]

Deliver = Callable[[Event], None]
OnCommand = Callable[[dict[str, Any]], None]


class Broker(Protocol):
    name: str

    async def start(self, deliver: Deliver, on_command: OnCommand, *, deadline: float) -> None:
        """Connect and start receiving. Raises ``CacheUnavailable`` when unreachable."""
        ...

    def publish(self, event: Event) -> None:
        """Send an event to the other instances. Never blocks, never raises."""
        ...

    def forward(self, command: dict[str, Any]) -> bool:
        """Send a command to the instance owning a run. False: no way to reach it now."""
        ...

    def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class InProcessBroker:
    """A single instance: every connection is local, so there is nothing to carry."""

    name = "memory"

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self, deliver: Deliver, on_command: OnCommand, *, deadline: float) -> None:
        return None

    def publish(self, event: Event) -> None:
        return None

    def forward(self, command: dict[str, Any]) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {"broker": self.name}

    async def close(self) -> None:
        return None


def _redis_broker(**kwargs: Any) -> Broker:
    from .redis_broker import RedisBroker

    return RedisBroker(**kwargs)


BROKERS: dict[str, Callable[..., Broker]] = {
    "memory": InProcessBroker,
    "redis": _redis_broker,
}


def make_broker(
    redis_url: str | None, *, instance: str, channel: str, metrics: ServiceMetrics | None
) -> Broker:
    if redis_url:
        return BROKERS["redis"](url=redis_url, instance=instance, channel=channel, metrics=metrics)
    return BROKERS["memory"]()


# -- wire format between instances (pure) --------------------------------------------------


def encode_event(event: Event, origin: str) -> str:
    return json.dumps(
        {
            "origin": origin,
            "kind": "event",
            "run_id": event.run_id,
            "seq": event.seq,
            "type": event.type,
            "ts": event.timestamp,
            "payload": event.payload,
            "user": event.user,
            "request_id": event.request_id,
        },
        separators=(",", ":"),
    )


def encode_command(command: dict[str, Any], origin: str) -> str:
    return json.dumps(
        {"origin": origin, "kind": "command", "command": command}, separators=(",", ":")
    )


def decode_message(data: str | bytes, *, own: str) -> tuple[str, Event | dict[str, Any]] | None:
    """``("event", Event)`` or ``("command", dict)``; None for our own messages (each instance
    ignores what it published) and for anything malformed."""
    try:
        message = json.loads(data)
        if not isinstance(message, dict) or message.get("origin") == own:
            return None
        if message["kind"] == "event":
            return "event", Event(
                run_id=str(message["run_id"]),
                seq=int(message["seq"]),
                type=str(message["type"]),
                timestamp=float(message["ts"]),
                payload=dict(message.get("payload") or {}),
                user=str(message["user"]),
                request_id=message.get("request_id"),
            )
        if message["kind"] == "command" and isinstance(message.get("command"), dict):
            return "command", message["command"]
    except (ValueError, KeyError, TypeError):
        return None
    return None
