"""Asking a revision to drain through its drain endpoint (``[service] drain_path``), for
targets whose platform never signals an old revision (Cloud Run). Failures come back as data:
the caller records them and carries on (the revision is stopped later anyway)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..service.drain import mint_drain_token

__all__ = ["DrainReply", "request_drain"]


@dataclass(frozen=True)
class DrainReply:
    ok: bool
    status: int | None
    """The HTTP status; ``None`` when the revision could not be reached."""
    detail: str


async def request_drain(
    base_url: str,
    *,
    path: str,
    secret: str,
    within: float,
    algorithm: str = "HS256",
    issuer: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> DrainReply:
    """``POST <base_url><path>`` with a fresh drain token signed with ``secret``.

    ``headers`` are added (e.g. ``X-Serverless-Authorization`` for a private Cloud Run
    service); the drain token always travels in ``Authorization``.
    """
    import httpx

    token = mint_drain_token(secret, ttl=60.0, algorithm=algorithm, issuer=issuer)
    url = f"{base_url.rstrip('/')}{path}"
    sent = {**(headers or {}), "authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(timeout=within) as client:
            reply = await client.post(url, headers=sent)
    except httpx.HTTPError as exc:
        return DrainReply(False, None, f"{url} could not be reached: {exc or type(exc).__name__}")
    if reply.status_code == 202:
        return DrainReply(True, 202, f"{url} drains")
    try:
        detail = str(reply.json().get("detail") or reply.text[:200])
    except ValueError:
        detail = reply.text[:200]
    hint = {
        401: "the drain token does not verify: is the secret the service's own?",
        403: "the service refused the token as a drain token",
        404: "no drain endpoint there: set [service] drain_path in the service's manifest",
        405: "no drain endpoint there: set [service] drain_path in the service's manifest",
    }.get(reply.status_code, "")
    return DrainReply(
        False,
        reply.status_code,
        f"{url} answered {reply.status_code}: {detail}" + (f" ({hint})" if hint else ""),
    )
