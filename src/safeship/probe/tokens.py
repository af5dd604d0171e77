"""Where a probe gets its token: one small protocol, one class per source, one registry.

Each source is asked again on every probe (``await source.get()``), so a rotated token file,
a changed secret or a fresh token from an endpoint is picked up by the next probe. A source
that cannot give a token raises ``ProbeError``; the probe turns that into an ``inconclusive``
verdict (the probe could not run), never into a failure of the service.

No source ever puts a token in a message, a repr or a log line.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from ..errors import ProbeError, UsageError

__all__ = [
    "TOKEN_SOURCES",
    "MintedToken",
    "StaticToken",
    "TokenEndpoint",
    "TokenFile",
    "TokenSource",
    "subprotocols_for",
    "token_source",
]


@runtime_checkable
class TokenSource(Protocol):
    """Gives the token for one probe."""

    async def get(self) -> str:
        """The token. Raises ``ProbeError`` (naming the file, variable or URL) when unavailable."""
        ...

    def describe(self) -> str:
        """Where the token comes from, for humans; never the token."""
        ...


def subprotocols_for(token: str) -> list[str]:
    """The subprotocols that carry ``token``: ``jwt-auth`` and ``jwt.<base64url(token)>``."""
    from ..tokens import AUTH_SUBPROTOCOL, SUBPROTOCOL_PREFIX

    encoded = base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode("ascii")
    return [AUTH_SUBPROTOCOL, SUBPROTOCOL_PREFIX + encoded]


class StaticToken:
    """A token given as is (``--token``)."""

    def __init__(self, token: str) -> None:
        self._token = token.strip()

    async def get(self) -> str:
        if not self._token:
            raise ProbeError(
                "the token given with --token is empty",
                hint="pass the token itself, or use --token-file / --secret-env",
            )
        return self._token

    def describe(self) -> str:
        return "a static token"

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class TokenFile:
    """A token read from a file on every probe (``--token-file``), so rotation is picked up."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def get(self) -> str:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            )
            raise ProbeError(
                f"cannot read the token file {self.path}: {reason}",
                hint="check the path and its permissions (it is read again on every probe)",
            ) from None
        if not token:
            raise ProbeError(
                f"the token file {self.path} is empty",
                hint="write the token (one line) into it",
            )
        return token

    def describe(self) -> str:
        return f"token file {self.path}"

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"


class MintedToken:
    """A short-lived token minted from a secret in an environment variable (``--secret-env``).

    The variable is read on every probe, so the probe signs with what the environment holds now.
    """

    def __init__(
        self,
        secret_env_var: str,
        *,
        sub: str = "safeship-probe",
        ttl: float = 60.0,
        algorithm: str = "HS256",
        issuer: str | None = None,
        audience: str | None = None,
        claims: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.variable = secret_env_var
        self.sub = sub
        self.ttl = ttl
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.claims = dict(claims or {})
        self._environ = environ

    async def get(self) -> str:
        environ = os.environ if self._environ is None else self._environ
        secret = environ.get(self.variable)
        if not secret:
            state = "empty" if secret == "" else "not set"
            raise ProbeError(
                f"cannot mint a probe token: the environment variable {self.variable} is {state}",
                hint=f"export {self.variable} with the service's JWT secret, or pass "
                "--token / --token-file",
            )
        from ..tokens import mint

        try:
            return mint(
                secret,
                self.sub,
                ttl=self.ttl,
                algorithm=self.algorithm,
                issuer=self.issuer,
                audience=self.audience,
                **self.claims,
            )
        except Exception as exc:  # PyJWT raises several types; the secret is never in them
            raise ProbeError(
                f"cannot mint a probe token from {self.variable} with {self.algorithm}: "
                f"{type(exc).__name__}",
                hint="HS* algorithms need a shared secret; RS*/ES* need a PEM private key",
            ) from None

    def describe(self) -> str:
        return f"token minted from ${self.variable} (sub={self.sub}, ttl={self.ttl:g}s)"

    def __repr__(self) -> str:
        return f"MintedToken({self.variable!r})"


class TokenEndpoint:
    """A token fetched by POST from an endpoint that answers ``{"token"|"access_token": ...}``."""

    def __init__(
        self,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.body = dict(body or {})
        self.headers = dict(headers or {})
        self.timeout = timeout

    async def get(self) -> str:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                response = await client.post(self.url, json=self.body, headers=self.headers)
        except httpx.TimeoutException:
            raise ProbeError(
                f"the token endpoint {self.url} did not answer within {self.timeout:g} s",
                hint="check the endpoint, or pass --token / --token-file",
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise ProbeError(
                f"cannot reach the token endpoint {self.url}: {type(exc).__name__}: {exc}",
                hint="check the URL and that the endpoint is running",
            ) from None
        if not response.is_success:
            raise ProbeError(
                f"the token endpoint {self.url} answered HTTP {response.status_code}",
                hint="check the credentials the endpoint expects",
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        token = None
        if isinstance(data, dict):
            token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise ProbeError(
                f"the token endpoint {self.url} answered without a token",
                hint='expected a JSON object with "token" or "access_token"',
            )
        return token.strip()

    def describe(self) -> str:
        return f"token endpoint {self.url}"

    def __repr__(self) -> str:
        return f"TokenEndpoint({self.url!r})"


# One entry per source; the CLI's --token, --token-file, --secret-env and --token-url map here.
TOKEN_SOURCES: dict[str, Callable[[str], TokenSource]] = {
    "token": StaticToken,
    "file": TokenFile,
    "env": MintedToken,
    "url": TokenEndpoint,
}


def token_source(kind: str, value: str) -> TokenSource:
    """Build a registered token source.

    Raises:
        UsageError: ``kind`` is not registered.
    """
    try:
        factory = TOKEN_SOURCES[kind]
    except KeyError:
        raise UsageError(
            f"unknown token source {kind!r}",
            hint=f"use one of {', '.join(sorted(TOKEN_SOURCES))}",
        ) from None
    return factory(value)
