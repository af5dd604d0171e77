"""One-time tickets in Redis, shared by every instance of a service (behind a load balancer, or
``uvicorn --workers N``): a ticket issued by one instance is redeemed by any other.

- single use: ``GETDEL`` reads and deletes in one atomic step;
- short-lived: each ticket key has the store's TTL (``PX``), checked again against ``now``;
- a per-subject cap: a sorted set per subject holds its live tickets by expiry; past
  ``max_per_subject`` the subject's own oldest tickets are deleted, never someone else's;
- bound to a path: the WebSocket path the ticket was issued for is stored with it.

``redis`` (redis-py) is imported when a store is built, not with this module. Every call has a
deadline (``timeout``); a store that does not answer is a ``TokenError``, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from typing import Any

from ..errors import TokenError
from .tickets import DEFAULT_PER_SUBJECT

__all__ = ["RedisTicketStore"]


class RedisTicketStore:
    """The ``Tickets`` store for several processes: see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 30.0,
        max_per_subject: int = DEFAULT_PER_SUBJECT,
        prefix: str = "safeship:ticket:",
        timeout: float = 2.0,
    ) -> None:
        if not (0 < ttl < float("inf")) or max_per_subject < 1 or not (0 < timeout < 60):
            raise ValueError("RedisTicketStore needs a finite ttl > 0, max_per_subject >= 1")
        import redis.asyncio as redis

        self.ttl = ttl
        self.max_per_subject = max_per_subject
        self.prefix = prefix
        self.timeout = timeout
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)

    def _ticket_key(self, ticket: str) -> str:
        return f"{self.prefix}t:{ticket}"

    def _subject_key(self, subject: str) -> str:
        # Subjects are arbitrary text: hashed into the key.
        return f"{self.prefix}s:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"

    async def issue_async(
        self, token: str, *, subject: str, path: str | None, now: float | None = None
    ) -> str:
        now = time.time() if now is None else now
        ticket = secrets.token_urlsafe(32)
        expires = now + self.ttl
        ttl_ms = max(1, int(self.ttl * 1000))
        value = json.dumps({"token": token, "path": path, "exp": expires, "sub": subject})
        mine = self._subject_key(subject)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zremrangebyscore(mine, "-inf", now)
                    pipe.zadd(mine, {ticket: expires})
                    pipe.set(self._ticket_key(ticket), value, px=ttl_ms)
                    pipe.pexpire(mine, ttl_ms)
                    pipe.zcard(mine)
                    *_, count = await pipe.execute()
                over = int(count) - self.max_per_subject
                if over > 0:
                    dropped = await self._redis.zpopmin(mine, over)
                    keys = [self._ticket_key(_text(name)) for name, _ in dropped]
                    if keys:
                        await self._redis.delete(*keys)
        except self._errors as exc:
            raise TokenError("bad_ticket", f"the ticket store is unavailable: {exc}") from None
        return ticket

    async def redeem_async(self, ticket: str, *, path: str, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        if len(ticket) > 128:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self._redis.getdel(self._ticket_key(ticket))
                if raw is None:
                    return None
                entry = json.loads(raw)
                await self._redis.zrem(self._subject_key(str(entry.get("sub"))), ticket)
        except self._errors as exc:
            raise TokenError("bad_ticket", f"the ticket store is unavailable: {exc}") from None
        except ValueError:
            return None
        bound = entry.get("path")
        if bound is not None and bound != path:
            return None
        if not now < float(entry.get("exp", 0)):
            return None
        token = entry.get("token")
        return token if isinstance(token, str) else None

    async def aclose(self) -> None:
        await self._redis.aclose()


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)
