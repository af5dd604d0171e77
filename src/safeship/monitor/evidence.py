"""What is known about an environment besides the probes: which secret each party holds (by
keyed fingerprint), what the serving revision logged, what its health endpoints say.

Read-only and bounded: files are read from their end, HTTP calls have a deadline. Used by the
monitor (to say more in an auth alert) and by ``diagnose``. No secret value leaves this module:
only fingerprints, variable names and where they were found.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import procs
from ..config import Manifest
from ..errors import SafeshipError
from ..secrets import candidate_names, fingerprint, source_from_spec

__all__ = [
    "backend_secret",
    "client_secret",
    "consumer_secrets",
    "error_line",
    "fetch_json",
    "log_tail",
]

_TAIL_BYTES = 256 * 1024
_SECRET_LINE = "JWT secret for "
_FINGERPRINT = "(fingerprint "


def log_tail(path: str | os.PathLike[str] | None, max_bytes: int = _TAIL_BYTES) -> list[str]:
    """The non-blank lines of the end of a log file (at most ``max_bytes`` of it); ``[]`` when
    unreadable."""
    if not path:
        return []
    return procs.tail(Path(path), lines=max_bytes, max_bytes=max_bytes)


def _lookup(
    spec: str, manifest: Manifest, env: str, environ: Mapping[str, str] | None
) -> dict[str, Any]:
    base = manifest.auth.secret
    config = manifest.secret_config(base)
    names = candidate_names(base, env, config.per_environment)
    try:
        source = source_from_spec(spec, root=manifest.root, environ=environ)
        for name in names:
            value = source.get(name)
            if value:
                return {
                    "consumer": spec,
                    "name": name,
                    "fingerprint": fingerprint(value, manifest.service.salt),
                    "where": source.describe(),
                }
    except SafeshipError as exc:
        return {"consumer": spec, "name": None, "fingerprint": None, "error": exc.message}
    return {
        "consumer": spec,
        "name": None,
        "fingerprint": None,
        "error": f"none of {', '.join(names)} is set",
    }


def client_secret(
    manifest: Manifest, env: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The secret the clients sign with, as the probes see it (``[deploy] probe_secret``)."""
    found = _lookup(manifest.deploy.probe_secret, manifest, env, environ)
    found["role"] = "clients ([deploy] probe_secret)"
    return found


def consumer_secrets(
    manifest: Manifest, env: str, environ: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every consumer of the signing secret (``[secrets.<auth.secret>] consumers``), as the
    secrets gate reads them."""
    config = manifest.secret_config(manifest.auth.secret)
    return [_lookup(spec, manifest, env, environ) for spec in config.consumers]


def backend_secret(lines: list[str]) -> dict[str, Any] | None:
    """What the service logged when it loaded its secret (``Safeship.load_secrets``):
    ``JWT secret for ENV: NAME from SOURCE (fingerprint FP)``; the last such line."""
    for line in reversed(lines):
        start = line.find(_SECRET_LINE)
        if start < 0:
            continue
        rest = line[start + len(_SECRET_LINE) :]
        env, _, rest = rest.partition(": ")
        name, _, rest = rest.partition(" from ")
        source, _, fp = rest.rpartition(" " + _FINGERPRINT)
        fp = fp.rstrip(")").strip()
        if name and fp:
            return {"env": env, "name": name, "where": source, "fingerprint": fp}
    return None


def error_line(lines: list[str], error_id: str) -> dict[str, Any] | None:
    """The log lines about error id ``error_id`` (a 1011's close reason names it): the line
    that mentions it and the traceback's last frame and exception after it."""
    if not error_id:
        return None
    for index in range(len(lines) - 1, -1, -1):
        if error_id in lines[index]:
            following = lines[index + 1 : index + 60]
            where = None
            exception = None
            for line in following:
                text = line.strip()
                if text.startswith('File "'):
                    path, _, rest = text[6:].partition('", line ')
                    number = rest.split(",", 1)[0]
                    where = f"{path}:{number}"
                elif (
                    text
                    and not line.startswith((" ", "\t"))
                    and ":" in text
                    and not text.startswith("Traceback")
                ):
                    exception = text
                    break
            return {"line": lines[index].strip(), "where": where, "exception": exception}
    return None


async def fetch_json(url: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 -- a deadline in seconds, like the probes'
    """``GET url``: ``{status, body}`` (``body`` parsed when JSON), or ``{error}``."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            reply = await asyncio.wait_for(client.get(url), timeout + 1)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        return {"url": url, "error": f"{type(exc).__name__}: {exc}".rstrip(": ")}
    try:
        body: Any = reply.json()
    except ValueError:
        body = reply.text[:500]
    return {"url": url, "status": reply.status_code, "body": body}


def revision_log(revision: Mapping[str, Any]) -> list[str]:
    return log_tail(revision.get("log_path"))


def is_readable(path: str | None) -> bool:
    return bool(path) and Path(str(path)).is_file()
