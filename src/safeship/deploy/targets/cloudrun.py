"""The Cloud Run target, on the Admin API v2 (``google-cloud-run``'s ``run_v2`` clients).

A revision is ``SVC-rN``, tagged ``rN`` at 0 % until the switch, so the pipeline verifies it on
its own tag URL before any user reaches it. A switch or a split rewrites the service's
``traffic``; ``state`` reads ``traffic_statuses``; ``stop`` drains the revision through its tag
URL, removes the tag, waits out the drain window and deletes the revision. The request bodies
are built by the pure functions of :mod:`.cloudrun_plan`; here they are only sent, each call
with a deadline (the sync client runs in a worker thread).

Cloud Run keeps a retired revision's WebSockets open until the request timeout, with no signal
to drain: the drain call is what closes them (with 1012, over the window) so clients reconnect
to the serving revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from google.api_core import exceptions as api
from google.api_core import retry as retries
from google.api_core.client_options import ClientOptions
from google.api_core.future import polling
from google.cloud import run_v2

from ...config import current_env
from ...errors import ConfigError, SafeshipError, TargetError
from . import cloudrun_plan as plan
from .base import Revision, RevisionSpec, RevisionStatus, TargetState
from .cloudrun_drain import Drainer, http_drainer

if TYPE_CHECKING:
    from ...config import CloudRunConfig, Manifest

__all__ = ["ID_TOKEN_ENV", "CloudRunTarget", "IdTokenSource", "google_id_token"]

T = TypeVar("T")
IdTokenSource = Callable[[str], str]
"""Audience -> a Google ID token for it (blocking; called in a worker thread)."""
_LOG_BYTES = 64 * 1024


ID_TOKEN_ENV = "SAFESHIP_CLOUDRUN_ID_TOKEN"


def google_id_token(audience: str) -> str:
    """An ID token for ``audience``: ``$SAFESHIP_CLOUDRUN_ID_TOKEN`` when set (CI, where
    Workload Identity Federation's credentials cannot mint one themselves), else from the
    application default credentials (the metadata server, a service account key, or an
    impersonated service account)."""
    given = os.environ.get(ID_TOKEN_ENV, "").strip()
    if given:
        return given
    import google.auth.transport.requests
    from google.oauth2 import id_token

    token: str = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return token


class CloudRunTarget:
    """Deploys revisions of one existing Cloud Run service.

    Args:
        services, revisions: ``run_v2`` clients (tests pass ones on a loopback transport).
        id_token: gives the ID token probes send in ``X-Serverless-Authorization``; ``None``
            for a public service.
        drainer: tells a revision to drain (see :meth:`stop`); ``None`` leaves the revision's
            connections to its deletion (SIGTERM, 10 s).
    """

    name = "cloudrun"

    def __init__(
        self,
        config: CloudRunConfig,
        services: Any,
        revisions: Any,
        *,
        environ_env: Mapping[str, Mapping[str, str]] | None = None,
        secret_names: frozenset[str] = frozenset(),
        id_token: IdTokenSource | None = None,
        drainer: Drainer | None = None,
    ) -> None:
        assert config.project and config.region and config.service
        self.config = config
        self.place = plan.Place(config.project, config.region, config.service)
        self.services, self.revisions = services, revisions
        self.environ_env = dict(environ_env or {})
        self.secret_names = secret_names
        self.id_token, self.drainer = id_token, drainer
        self.env = current_env()
        """The environment whose secret signs drain tokens: the last started revision's."""
        self.drains: dict[str, str] = {}
        """Revision -> its answer to the drain call."""
        self._tokens: dict[str, tuple[str, float]] = {}
        self._audience: str | None = config.audience
        self._retry = retries.Retry(
            predicate=retries.if_exception_type(api.ServiceUnavailable, api.InternalServerError),
            initial=0.1,
            maximum=1.0,
            timeout=config.request_timeout,
        )

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> CloudRunTarget:
        config = manifest.deploy.cloudrun
        missing = [k for k in ("project", "region", "service") if not getattr(config, k)]
        if missing:
            raise ConfigError(
                f"the cloudrun target needs [deploy.cloudrun] {', '.join(missing)}",
                file=manifest.display_path,
                key=f"deploy.cloudrun.{missing[0]}",
                hint='e.g. project = "my-project", region = "europe-west1", service = "api"',
            )
        options: dict[str, Any] = {}
        if config.endpoint:
            options["client_options"] = ClientOptions(api_endpoint=config.endpoint)
            if config.endpoint.startswith("http://"):
                from google.auth.credentials import AnonymousCredentials

                options["credentials"] = AnonymousCredentials()
        try:
            services = run_v2.ServicesClient(transport="rest", **options)
            revisions = run_v2.RevisionsClient(transport="rest", **options)
        except Exception as exc:  # google.auth's DefaultCredentialsError, and kin
            raise TargetError(
                f"no Google Cloud credentials for the cloudrun target: {type(exc).__name__}",
                hint="run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS (in CI: Workload Identity Federation, see "
                "docs/cloudrun.md)",
            ) from None
        names = {manifest.auth.secret, *manifest.secrets}
        declared = frozenset(n for base in names for n in (base, *_suffixed(base, manifest)))
        return cls(
            config,
            services,
            revisions,
            environ_env={name: dict(e.env) for name, e in manifest.environments.items()},
            secret_names=declared,
            id_token=google_id_token if config.private else None,
            drainer=http_drainer(manifest),  # None without [service] drain_path
        )

    # -- Target ---------------------------------------------------------------------------

    async def start(self, spec: RevisionSpec) -> Revision:
        """Create ``SVC-rN`` with a 0 % tag ``rN``; return once it is ready, or failed (with
        its Ready condition and, where its logs are readable, its ``startup_failed`` line).

        Raises:
            TargetError: no image, the API refused (permission, quota, a region mismatch), or
                the operation outlived ``operation_timeout``.
        """
        image = spec.image or self.config.image
        if not image:
            raise TargetError(
                "the cloudrun target runs images: none was given",
                hint="build and push an image, then pass --image or set [deploy.cloudrun] image",
            )
        env_name = spec.env.get("SAFESHIP_ENV", "")
        self.env = env_name or self.env
        literals = {**self.environ_env.get(env_name, {}), **self.config.env}
        if env_name:
            literals["SAFESHIP_ENV"] = env_name
        env = plan.container_env(
            literals, self.config.secrets, self.place.project, self.secret_names
        )
        service = await self._get_service()
        listed = await self._call("list the revisions of", self._list_revisions)
        # The latest created one counts too: a failed start's revision may be deleted since,
        # and its name is not to be taken again.
        taken = [r.name for r in listed] + [service.latest_created_revision]
        name, tag = plan.next_revision(self.place.service, taken)
        body = plan.start_service(service, name, tag, image, env)
        try:
            updated = await self._update(body, f"create revision {name} of")
        except asyncio.CancelledError:
            await asyncio.shield(self._abandon(name))
            raise
        except TargetError as exc:
            revision = await self._failed_revision(name)
            if revision is None:
                raise exc from None
            return revision
        return self._revision(updated, name, RevisionStatus.RUNNING)

    async def switch(self, revision_id: str) -> None:
        """Send all traffic to the revision (its tag and the others' are kept)."""
        await self._set_traffic({revision_id: 100}, f"switch traffic to {revision_id} on")

    async def split(self, new: str, old: str, percent: int) -> None:
        """``percent`` % of the traffic to ``new``, the rest to ``old``."""
        if not 1 <= percent <= 99:
            raise TargetError(f"a split takes 1..99 %, not {percent}", hint="use switch()")
        shares = {new: percent, old: 100 - percent}
        await self._set_traffic(shares, f"send {percent} % to {new} on")

    async def state(self) -> TargetState:
        service, listed = await asyncio.gather(
            self._get_service(), self._call("list the revisions of", self._list_revisions)
        )
        return plan.read_state(self.name, service, listed)

    async def stop(self, revision_id: str, *, drain_seconds: float) -> None:
        """Tell the revision to drain through its tag URL (while the tag still routes), remove
        the tag, wait ``drain_seconds``, then delete the revision.

        Raises:
            TargetError: the revision still has traffic, or the API refused.
        """
        service = await self._get_service()
        share = plan.shares(service).get(revision_id, 0)
        if share:
            raise TargetError(
                f"{revision_id} still receives {share} % of the traffic of {self.place}; it "
                "was not stopped",
                hint="switch the traffic to another revision first (`safeship rollback`)",
            )
        url = next((s.uri for s in service.traffic_statuses if s.revision == revision_id), "")
        problem = None
        if drain_seconds > 0 and url and self.drainer is not None:
            # Before the tag goes: the tag URL is the only way to this revision's instances.
            problem = await self._drain(revision_id, url)
        if any(r == revision_id and t for r, _, t in plan.traffic_of(service)):
            body = plan.with_traffic(service, plan.shares(service), untag=revision_id)
            await self._update(body, f"remove the tag of {revision_id} on")
        if drain_seconds > 0:
            await asyncio.sleep(drain_seconds)
        await self._delete(revision_id)
        if problem is not None:
            raise TargetError(
                f"{revision_id} is deleted, but it refused the drain call ({problem}): its "
                "WebSockets were closed when it was deleted, not spread over the drain window",
                hint="set [service] drain_path in the service's manifest and deploy it; the "
                "drain token is signed with the [deploy] probe_secret of the environment",
            )

    async def _drain(self, revision_id: str, url: str) -> str | None:
        """Tell the revision to drain; what went wrong, in words, or ``None``."""
        assert self.drainer is not None
        try:
            headers = await self.probe_headers(url)
            answer = await asyncio.wait_for(
                self.drainer(url, headers, self.env), self.config.request_timeout
            )
        except SafeshipError as exc:
            return exc.message
        except (TimeoutError, OSError) as exc:
            return f"no answer within {self.config.request_timeout:g} s ({type(exc).__name__})"
        self.drains[revision_id] = answer
        return None

    # -- probes ---------------------------------------------------------------------------

    async def probe_headers(self, url: str) -> dict[str, str]:
        """``X-Serverless-Authorization`` for a private service, so the app's own token keeps
        ``Authorization``. Empty for a public one."""
        if self.id_token is None:
            return {}
        audience = self._audience or (await self._get_service()).uri
        self._audience = audience
        token, until = self._tokens.get(audience, ("", 0.0))
        if time.monotonic() >= until:
            try:
                token = await asyncio.wait_for(
                    asyncio.to_thread(self.id_token, audience), self.config.request_timeout
                )
            except Exception as exc:  # google.auth raises several types; no token in them
                raise TargetError(
                    f"cannot get a Google ID token for {audience}: {type(exc).__name__}",
                    hint="use credentials that can mint ID tokens (a service account key or "
                    f"impersonation, the metadata server), or hand one over in {ID_TOKEN_ENV} "
                    "(CI with Workload Identity Federation, see docs/cloudrun.md); a public "
                    "service takes [deploy.cloudrun] private = false",
                ) from None
            self._tokens[audience] = (token, time.monotonic() + 30 * 60)
        return {"X-Serverless-Authorization": f"Bearer {token}"}

    # -- calls ----------------------------------------------------------------------------

    async def _call(self, action: str, fn: Callable[[], T]) -> T:
        timeout = self.config.request_timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), timeout + 5)
        except (api.GoogleAPIError, OSError, TimeoutError) as exc:
            raise plan.api_error(exc, action, self.place, timeout) from None
        except Exception as exc:  # requests' transport errors surface as their own types
            if isinstance(exc, SafeshipError):
                raise
            raise plan.api_error(exc, action, self.place, timeout) from None

    async def _get_service(self) -> run_v2.Service:
        timeout = self.config.request_timeout

        def get() -> run_v2.Service:
            return self.services.get_service(
                name=self.place.name, retry=self._retry, timeout=timeout
            )

        return await self._call("read", get)

    def _list_revisions(self) -> list[run_v2.Revision]:
        pager = self.revisions.list_revisions(
            parent=self.place.name, retry=self._retry, timeout=self.config.request_timeout
        )
        return list(pager)

    async def _update(self, body: run_v2.Service, action: str) -> run_v2.Service:
        config = self.config
        request = run_v2.UpdateServiceRequest(service=body)
        poll = polling.DEFAULT_POLLING.with_delay(
            initial=config.poll_interval, maximum=config.poll_interval * 2, multiplier=1.5
        )

        def send() -> run_v2.Service:
            operation = self.services.update_service(
                request=request, retry=self._retry, timeout=config.request_timeout
            )
            result: run_v2.Service = operation.result(
                timeout=config.operation_timeout,
                polling=poll.with_timeout(config.operation_timeout),
            )
            return result

        try:
            return await asyncio.wait_for(
                asyncio.to_thread(send), config.operation_timeout + config.request_timeout + 5
            )
        except TimeoutError:
            raise TargetError(
                f"Cloud Run did not finish to {action} {self.place} within "
                f"{config.operation_timeout:g} s",
                hint="see `gcloud run services describe`; raise [deploy.cloudrun] "
                "operation_timeout if the service is slow to start",
            ) from None
        except Exception as exc:
            if isinstance(exc, SafeshipError):
                raise
            raise plan.api_error(exc, action, self.place, config.request_timeout) from None

    async def _set_traffic(self, shares: dict[str, int], action: str) -> None:
        service = await self._get_service()
        listed = {plan.short(r.name) for r in await self._call("list", self._list_revisions)}
        unknown = sorted(set(shares) - listed)
        if unknown:
            raise TargetError(
                f"no revision {', '.join(unknown)} in {self.place}; traffic was not moved",
                hint="see `safeship status` for the revisions that exist",
            )
        await self._update(plan.with_traffic(service, shares), action)

    async def _delete(self, revision_id: str) -> None:
        name = f"{self.place.name}/revisions/{revision_id}"
        timeout = self.config.request_timeout

        def delete() -> None:
            try:
                operation = self.revisions.delete_revision(
                    name=name, retry=self._retry, timeout=timeout
                )
                operation.result(timeout=self.config.operation_timeout)
            except api.NotFound:
                pass  # already gone

        await self._call(f"delete revision {revision_id} of", delete)

    async def _failed_revision(self, name: str) -> Revision | None:
        """The revision as the API reports it after a failed start, if it was created."""
        full = f"{self.place.name}/revisions/{name}"
        timeout = self.config.request_timeout
        try:
            revision = await self._call(
                "read revision " + name + " of",
                lambda: self.revisions.get_revision(name=full, retry=self._retry, timeout=timeout),
            )
        except TargetError:
            return None
        if plan.revision_status(revision) is not RevisionStatus.FAILED:
            return None
        lines = await asyncio.to_thread(_read_log, revision.log_uri)
        return Revision(
            id=name,
            url="",
            status=RevisionStatus.FAILED,
            created=time.time(),
            log_path=revision.log_uri or None,
            failure=plan.start_failure(revision, lines),
        )

    async def _abandon(self, name: str) -> None:
        """After Ctrl-C mid-start: leave no tagged, half-made revision behind. The cut-short
        operation still runs on the server, so wait for it to end first (bounded; the next
        ``state`` shows whatever remains)."""
        deadline = time.monotonic() + min(self.config.operation_timeout, 60.0)
        with contextlib.suppress(SafeshipError, TimeoutError):
            while time.monotonic() < deadline:
                if not (await self._get_service()).reconciling:
                    break
                await asyncio.sleep(self.config.poll_interval)
            await asyncio.wait_for(self.stop(name, drain_seconds=0.0), 30)

    def _revision(self, service: run_v2.Service, name: str, status: RevisionStatus) -> Revision:
        url = next((s.uri for s in service.traffic_statuses if s.revision == name), "")
        return Revision(id=name, url=url, status=status, created=time.time())


def _read_log(log_uri: str) -> list[str]:
    """The revision's last log lines, where its log is a readable file (an emulator's);
    Cloud Logging is not read: the failure's hint gives its URL instead."""
    if not log_uri.startswith("file://"):
        return []
    path = Path(unquote(urlsplit(log_uri).path))
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - _LOG_BYTES))
            return handle.read().decode("utf-8", "replace").splitlines()[-60:]
    except OSError:
        return []


def _suffixed(base: str, manifest: Manifest) -> list[str]:
    from ...secrets import candidate_names

    envs = {"development", "test", "staging", "production", *manifest.environments}
    per_env = manifest.secret_config(base).per_environment
    return [name for env in envs for name in candidate_names(base, env, per_env)]
