"""Google Cloud Secret Manager as a secret source (the optional ``cloudrun`` extra).

The client library is imported lazily, so safeship works without it; asking for this source
without the extra installed is an error with the install command as its hint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SecretError

__all__ = ["GcpSecretManagerSource"]

_INSTALL_HINT = "pip install 'safeship[cloudrun]'"
_NAME = re.compile(
    r"projects/(?P<project>[^/]+)"
    r"(?:/locations/(?P<location>[^/]+))?"
    r"(?:/secrets/(?P<secret>[^/]+)(?:/versions/(?P<version>[^/]+))?)?"
)
# Secret Manager's own rule for secret ids; anything else cannot name a secret.
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


class GcpSecretManagerSource:
    """Secret Manager: ``projects/P`` (the secret named like the key), ``projects/P/secrets/S``
    (that secret, whatever the key), optionally ``/versions/V`` to pin a version, and
    ``projects/P/locations/L/...`` for regional secrets.

    ``get`` reads the latest *enabled* version (the ``latest`` alias fails when the newest
    version is disabled). Each call has a deadline of ``timeout`` seconds, transient errors
    included.

    Args:
        name: the resource name, with or without the ``gcp:`` prefix.
        client: a ``SecretManagerServiceClient`` to use (tests pass one built with a local
            transport); by default one is created, with application default credentials, on
            first use.
    """

    def __init__(self, name: str, *, client: Any = None, timeout: float = 10.0) -> None:
        name = name.removeprefix("gcp:").strip("/")
        match = _NAME.fullmatch(name)
        if match is None:
            raise SecretError(
                f"invalid Secret Manager source 'gcp:{name}'",
                hint="write 'gcp:projects/PROJECT' or 'gcp:projects/PROJECT/secrets/SECRET'",
            )
        try:
            from google.api_core import exceptions
        except ImportError:
            raise SecretError(
                "the Secret Manager source needs google-cloud-secret-manager, which is not "
                "installed",
                hint=_INSTALL_HINT,
            ) from None
        self._exceptions = exceptions
        if client is None:
            try:
                from google.cloud import secretmanager  # noqa: F401
            except ImportError:
                raise SecretError(
                    "the Secret Manager source needs google-cloud-secret-manager, which is not "
                    "installed",
                    hint=_INSTALL_HINT,
                ) from None
        self.name = name
        self.spec = f"gcp:{name}"
        self.timeout = timeout
        self._match = match
        self._client = client

    @classmethod
    def from_spec(
        cls, arg: str, *, root: Path, environ: Mapping[str, str] | None = None
    ) -> GcpSecretManagerSource:
        return cls(arg)

    def describe(self) -> str:
        return f"Secret Manager {self.name}"

    def _secret_path(self, key: str) -> str | None:
        if self._match["secret"]:
            return self.name.split("/versions/")[0]
        if not _SECRET_ID.fullmatch(key):
            return None
        return f"{self.name}/secrets/{key}"

    def _client_or_default(self) -> Any:
        if self._client is None:
            from google.auth import exceptions as auth_exceptions
            from google.cloud import secretmanager

            location = self._match["location"]
            options = (
                {"api_endpoint": f"secretmanager.{location}.rep.googleapis.com"}
                if location
                else None
            )
            try:
                self._client = secretmanager.SecretManagerServiceClient(client_options=options)
            except auth_exceptions.DefaultCredentialsError:
                raise SecretError(
                    f"no Google Cloud credentials to read {self.describe()}",
                    hint="run `gcloud auth application-default login`, or set "
                    "GOOGLE_APPLICATION_CREDENTIALS to a service account key file",
                ) from None
        return self._client

    def get(self, key: str) -> str | None:
        """The secret's latest enabled version, or None when the secret or an enabled version
        does not exist.

        Raises:
            SecretError: permission denied, or Secret Manager did not answer in time.
        """
        secret = self._secret_path(key)
        if secret is None:
            return None
        from google.api_core import retry as retries

        # Bounded retries of transient errors, all within the one deadline.
        retry = retries.Retry(
            predicate=retries.if_transient_error,
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=self.timeout,
        )
        errors = self._exceptions
        client = self._client_or_default()
        version_name = f"{secret}/versions/latest"
        try:
            version = self._match["version"]
            if version:
                version_name = f"{secret}/versions/{version}"
            else:
                pager = client.list_secret_versions(
                    request={"parent": secret, "filter": "state:ENABLED"},
                    retry=retry,
                    timeout=self.timeout,
                )
                # Versions are listed newest first; the first enabled one is the latest.
                first = next(iter(pager), None)
                if first is None:
                    return None
                version_name = first.name
            response = client.access_secret_version(
                request={"name": version_name}, retry=retry, timeout=self.timeout
            )
        except errors.NotFound:
            return None
        # Over REST the class follows the HTTP status: 403 is Forbidden (PermissionDenied
        # over gRPC, a subclass), 400 is BadRequest (FailedPrecondition over gRPC).
        except (errors.Forbidden, errors.Unauthorized):
            raise SecretError(
                f"permission denied reading {secret} from Secret Manager",
                hint="grant roles/secretmanager.secretAccessor on the secret to the service "
                "account this runs as",
            ) from None
        except errors.BadRequest:
            raise SecretError(
                f"Secret Manager refused {version_name}: the version is disabled or destroyed, "
                "or the name is invalid",
                hint="enable the version or add a new one, and check the resource name",
            ) from None
        except (errors.DeadlineExceeded, errors.RetryError, errors.ServiceUnavailable, OSError):
            raise SecretError(
                f"Secret Manager did not answer for {secret} within {self.timeout:g} s "
                "(unreachable, unavailable or too slow)",
                hint="check network access to Secret Manager and retry",
            ) from None
        except errors.GoogleAPIError as exc:
            raise SecretError(
                f"Secret Manager refused reading {secret} ({type(exc).__name__})",
                hint="check the resource name and the project's Secret Manager API",
            ) from None
        data: bytes = response.payload.data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(
                f"{secret} in Secret Manager is not UTF-8 text",
                hint="store the secret as text, e.g. the output of secrets.token_urlsafe(48)",
            ) from None
        # `echo ... | gcloud secrets versions add` leaves a newline, as files do.
        return text.rstrip("\r\n")
