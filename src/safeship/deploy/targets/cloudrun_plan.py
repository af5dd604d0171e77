"""What the Cloud Run target sends and how it reads the answers: pure functions over
``google.cloud.run_v2`` messages, with no I/O, so each request body is tested without sockets.

- :func:`next_revision`, :func:`start_service`, :func:`with_traffic`: the bodies of
  ``update_service`` for a start (a new ``template.revision`` with a 0 % tag, traffic kept on
  the revisions that have it), a switch, a split and a tag removal;
- :func:`container_env`: the container's variables; secrets only as Secret Manager references;
- :func:`read_state`, :func:`start_failure`: a ``TargetState`` and a ``StartFailure`` from the
  service, its revisions and their conditions;
- :func:`api_error`: an API exception as a ``TargetError`` that names the project, region and
  service and says what to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.api_core import exceptions as api
from google.cloud import run_v2

from ...core.startup import startup_failed_event
from ...errors import TargetError
from .base import Revision, RevisionStatus, StartFailure, TargetState

__all__ = [
    "Place",
    "api_error",
    "container_env",
    "next_revision",
    "read_state",
    "secret_reference",
    "short",
    "start_failure",
    "start_service",
    "tag_for",
    "traffic_of",
    "with_traffic",
]

REVISION_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
_STATE = run_v2.Condition.State
ROLES_HINT = (
    "grant the deploying account roles/run.developer on the service (or the project) and "
    "roles/iam.serviceAccountUser on the service's runtime service account"
)
# Why a revision did not become ready, by the reason in its Ready condition.
_REASON_HINTS = {
    "CONTAINER_MISSING": "the image cannot be pulled: check that it exists (name, tag or "
    "digest) in a registry of a project Cloud Run can read",
    "CONTAINER_IMAGE_UNAUTHORIZED": "the image cannot be pulled: grant the Cloud Run service "
    "agent roles/artifactregistry.reader on the repository",
    "CONTAINER_PERMISSION_DENIED": "the image cannot be pulled: grant the Cloud Run service "
    "agent roles/artifactregistry.reader on the repository",
    "CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED": "the image was refused by Binary "
    "Authorization: sign it, or check the policy",
    "SECRETS_ACCESS_CHECK_FAILED": "grant the runtime service account "
    "roles/secretmanager.secretAccessor on the secret, and check that the secret and version "
    "exist",
    "HEALTH_CHECK_CONTAINER_ERROR": "the container exited or did not listen on $PORT: see its "
    "startup_failed line and logs",
    "PROGRESS_DEADLINE_EXCEEDED": "the revision did not become ready in time: see its logs, "
    "or give its startup probe more time",
}


@dataclass(frozen=True)
class Place:
    """Where an API call went, for the messages."""

    project: str
    region: str
    service: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.service}"

    def __str__(self) -> str:
        return f"Cloud Run service {self.service!r} (project {self.project}, region {self.region})"


def short(name: str) -> str:
    """``projects/.../revisions/svc-r3`` -> ``svc-r3``."""
    return name.rsplit("/", 1)[-1]


def next_revision(service_id: str, existing: Iterable[str]) -> tuple[str, str]:
    """The next revision name and its tag: ``svc-r4``, ``r4`` after ``svc-r3``."""
    pattern = re.compile(re.escape(service_id) + r"-r(\d{1,9})")
    numbers = [int(m[1]) for m in (pattern.fullmatch(short(n)) for n in existing) if m]
    number = max(numbers, default=0) + 1
    return f"{service_id}-r{number}", f"r{number}"


def tag_for(service_id: str, revision: str) -> str:
    """A tag for a revision: ``rN`` for ``SVC-rN``, else its name without the service's
    prefix (``00001-abc``), as tags must be short lowercase DNS labels."""
    suffix = revision.removeprefix(f"{service_id}-")
    label = re.sub(r"[^a-z0-9-]", "-", suffix.lower()).strip("-")[:40] or "previous"
    return label if label[0].isalpha() else f"rev-{label}"


def traffic_of(service: run_v2.Service) -> list[tuple[str, int, str]]:
    """The service's traffic as ``(revision, percent, tag)``, ``LATEST`` pinned to the
    latest ready revision (so a new template does not take the traffic with it)."""
    latest = short(service.latest_ready_revision)
    out = []
    for target in service.traffic:
        revision = latest if target.type_ == LATEST_TYPE else short(target.revision)
        out.append((revision, int(target.percent), target.tag))
    return out


def with_traffic(
    service: run_v2.Service,
    percents: Mapping[str, int],
    *,
    tags: Mapping[str, str] | None = None,
    untag: str | None = None,
) -> run_v2.Service:
    """A copy of ``service`` whose traffic gives each revision of ``percents`` its share (all
    others 0 %). Tags are kept (each on a 0 % entry when its revision gets no traffic),
    ``tags`` adds some, ``untag`` removes the tags of that revision.

    Raises:
        ValueError: the percentages do not add up to 100.
    """
    if sum(percents.values()) != 100:
        raise ValueError(f"traffic must add up to 100 %, not {dict(percents)}")
    tagged: dict[str, str] = {}
    for revision, _, tag in traffic_of(service):
        if tag and revision != untag:
            tagged[tag] = revision
    for revision, tag in (tags or {}).items():
        tagged[tag] = revision
    entries: list[run_v2.TrafficTarget] = []
    placed: set[str] = set()
    for revision, percent in percents.items():
        revision_tags = [t for t, r in tagged.items() if r == revision]
        entries.append(_target(revision, percent, revision_tags[0] if revision_tags else ""))
        placed.update(revision_tags[:1])
    entries += [_target(r, 0, t) for t, r in tagged.items() if t not in placed]
    updated = run_v2.Service(service)  # a copy
    del updated.traffic[:]
    updated.traffic.extend(entries)
    return updated


def _target(revision: str, percent: int, tag: str) -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION_TYPE, revision=revision, percent=percent, tag=tag)


def shares(service: run_v2.Service) -> dict[str, int]:
    """Revision -> percent of the service's traffic, those with none left out."""
    out: dict[str, int] = {}
    for revision, percent, _ in traffic_of(service):
        if percent:
            out[revision] = out.get(revision, 0) + percent
    return out


def start_service(
    service: run_v2.Service, revision: str, tag: str, image: str, env: Sequence[run_v2.EnvVar]
) -> run_v2.Service:
    """The service with a new ``template.revision`` running ``image`` with ``env`` (merged by
    name over the container's variables), the traffic unchanged, and a 0 % tag on it.

    A revision that has traffic but no tag gets one too: its tag URL is how it is probed next
    to the new one, and how it is told to drain once the new one serves."""
    service_id = short(service.name)
    tags = {r: tag_for(service_id, r) for r, _, t in traffic_of(service) if r and not t}
    tagged = {t for _, _, t in traffic_of(service) if t}
    tags = {r: t for r, t in tags.items() if t not in tagged and t != tag}
    updated = with_traffic(service, shares(service) or {}, tags={**tags, revision: tag})
    updated.template.revision = revision
    if not updated.template.containers:
        updated.template.containers.append(run_v2.Container())
    container = updated.template.containers[0]
    container.image = image
    ours = {var.name for var in env}
    kept = [var for var in container.env if var.name not in ours]
    del container.env[:]
    container.env.extend([*kept, *env])
    return updated


def secret_reference(reference: str, project: str) -> tuple[str, str]:
    """``jwt:latest`` -> (``projects/P/secrets/jwt``, ``latest``), ``--set-secrets`` style."""
    secret, _, version = reference.rpartition(":")
    if not secret.startswith("projects/"):
        secret = f"projects/{project}/secrets/{secret}"
    return secret, version


def container_env(
    literals: Mapping[str, str],
    secrets: Mapping[str, str],
    project: str,
    secret_names: Iterable[str] = (),
) -> list[run_v2.EnvVar]:
    """The container's variables: ``literals`` as values, ``secrets`` as Secret Manager
    references (never a value).

    Raises:
        TargetError: a variable that names a declared secret would be sent as a literal.
    """
    leaked = sorted((set(literals) & set(secret_names)) - set(secrets))
    if leaked:
        raise TargetError(
            f"{', '.join(leaked)} would be sent to Cloud Run as a literal value: secrets go "
            "only as Secret Manager references",
            hint=f'map it in [deploy.cloudrun] secrets, e.g. {leaked[0]} = "SECRET:latest"',
        )
    out = [run_v2.EnvVar(name=k, value=v) for k, v in sorted(literals.items()) if k not in secrets]
    for name, reference in sorted(secrets.items()):
        secret, version = secret_reference(reference, project)
        selector = run_v2.SecretKeySelector(secret=secret, version=version)
        out.append(
            run_v2.EnvVar(name=name, value_source=run_v2.EnvVarSource(secret_key_ref=selector))
        )
    return out


def _ready(revision: run_v2.Revision) -> run_v2.Condition | None:
    return next((c for c in revision.conditions if c.type_ == "Ready"), None)


def revision_status(revision: run_v2.Revision) -> RevisionStatus:
    ready = _ready(revision)
    if ready is None or ready.state in (_STATE.CONDITION_PENDING, _STATE.CONDITION_RECONCILING):
        return RevisionStatus.STARTING
    if ready.state == _STATE.CONDITION_FAILED:
        return RevisionStatus.FAILED
    return RevisionStatus.RUNNING


def start_failure(revision: run_v2.Revision, log_lines: Sequence[str] = ()) -> StartFailure:
    """Why ``revision`` did not become ready: its Ready condition, and the service's
    ``startup_failed`` line when its logs could be read."""
    ready = _ready(revision)
    reason = ""
    if ready is not None:
        for field in ("reason", "revision_reason"):
            value = getattr(ready, field)
            if value:
                reason = value.name
    message = (ready.message if ready is not None else "") or "the revision is not ready"
    hint = _REASON_HINTS.get(reason)
    if revision.log_uri:
        hint = f"{hint + '; ' if hint else ''}logs: {revision.log_uri}"
    error = f"{reason}: {message}" if reason else message
    event = startup_failed_event(log_lines)
    tail = tuple(log_lines[-20:])
    if event is not None:
        phase, given = event.get("phase"), event.get("hint")
        error = str(event.get("error") or error)
        return StartFailure(
            error, str(phase) if phase else None, str(given) if given else hint, None, tail
        )
    return StartFailure(error, None, hint, None, tail)


def read_state(
    target: str, service: run_v2.Service, revisions: Sequence[run_v2.Revision]
) -> TargetState:
    """Who serves (the revision with the largest share of traffic), each revision with its
    tag URL, and what is inconsistent (traffic to a revision that does not exist)."""
    known = {short(r.name): r for r in revisions}
    urls: dict[str, str] = {}
    share: dict[str, int] = {}
    problems: list[str] = []
    for status in service.traffic_statuses:
        name = short(status.revision) or short(service.latest_ready_revision)
        if status.uri and status.tag:
            urls.setdefault(name, status.uri)
        if status.percent:
            share[name] = share.get(name, 0) + int(status.percent)
        if name and name not in known:
            problems.append(
                f"traffic points to revision {name}, which does not exist: its "
                f"{status.percent} % fail; switch it to a ready revision"
            )
    serving = max(share, key=lambda n: share[n]) if share else None
    out = []
    for name, revision in known.items():
        ready = revision_status(revision)
        failure = start_failure(revision) if ready is RevisionStatus.FAILED else None
        out.append(
            Revision(
                id=name,
                url=urls.get(name, ""),
                status=ready,
                created=revision.create_time.timestamp() if revision.create_time else 0.0,
                traffic=share.get(name, 0) > 0,
                log_path=revision.log_uri or None,
                failure=failure,
            )
        )
    if serving in known and revision_status(known[serving]) is not RevisionStatus.RUNNING:
        problems.append(f"{serving} receives {share[serving]} % of the traffic but is not ready")
    return TargetState(target, tuple(out), serving, service.uri or None, tuple(problems))


def api_error(exc: Exception, action: str, place: Place, timeout: float) -> TargetError:
    """The API's refusal, in words: what failed where, and what to do."""
    detail = getattr(exc, "message", None) or str(exc)
    where = f"{action} {place}"
    if isinstance(exc, api.Forbidden | api.PermissionDenied | api.Unauthorized):
        return TargetError(f"permission denied to {where}: {detail}", hint=ROLES_HINT)
    if isinstance(exc, api.NotFound):
        return TargetError(
            f"not found while trying to {where}: {detail}",
            hint=f"check [deploy.cloudrun] project, region and service: a service in another "
            f"region is not found in {place.region} (`gcloud run services list --project "
            f"{place.project}` shows its region); the service must exist before safeship "
            "deploys revisions of it (create it once with `gcloud run deploy`)",
        )
    if isinstance(exc, api.Conflict | api.Aborted):
        return TargetError(
            f"conflict while trying to {where}: another change to the service ran at the "
            f"same time ({detail})",
            hint="wait for the other deploy or console change to finish, then deploy again",
        )
    if isinstance(exc, api.TooManyRequests | api.ResourceExhausted):
        return TargetError(
            f"Cloud Run quota exhausted while trying to {where}: {detail}",
            hint="wait a minute and retry; see the Cloud Run Admin API quotas of project "
            f"{place.project} (IAM & Admin > Quotas) and ask for more if deploys need it",
        )
    if isinstance(exc, api.FailedPrecondition | api.BadRequest | api.InvalidArgument):
        return TargetError(
            f"Cloud Run refused to {where}: {detail}",
            hint="see the message; an image that cannot be pulled needs its name checked and "
            "roles/artifactregistry.reader for the Cloud Run service agent",
        )
    if isinstance(exc, api.GoogleAPICallError):
        return TargetError(f"Cloud Run failed to {where}: {detail}", hint="retry the deploy")
    return TargetError(
        f"the Cloud Run Admin API did not answer in time ({timeout:g} s) to {where}: "
        f"{type(exc).__name__}",
        hint="check network access to run.googleapis.com and retry; [deploy.cloudrun] "
        "operation_timeout bounds long operations",
    )
