"""The Cloud Run target's request bodies and readings, as pure functions (no sockets)."""

from __future__ import annotations

import pytest

pytest.importorskip("google.cloud.run_v2")

from google.api_core import exceptions as api
from google.cloud import run_v2

from safeship.deploy.targets.base import RevisionStatus
from safeship.deploy.targets.cloudrun_plan import (
    Place,
    api_error,
    container_env,
    next_revision,
    read_state,
    start_failure,
    start_service,
    tag_for,
    traffic_of,
    with_traffic,
)
from safeship.errors import TargetError

NAME = "projects/p/locations/europe-west1/services/api"
PLACE = Place("p", "europe-west1", "api")
T = run_v2.TrafficTargetAllocationType
S = run_v2.Condition.State


def service(*traffic: run_v2.TrafficTarget, latest: str = "api-r1") -> run_v2.Service:
    return run_v2.Service(
        name=NAME,
        uri="https://api-xyz.a.run.app",
        latest_ready_revision=f"{NAME}/revisions/{latest}",
        traffic=list(traffic),
        template=run_v2.RevisionTemplate(
            revision=latest,
            containers=[run_v2.Container(image="old", env=[run_v2.EnvVar(name="KEEP", value="1")])],
        ),
    )


def rev(revision: str, percent: int, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(
        type_=T.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=revision, percent=percent, tag=tag
    )


LATEST = run_v2.TrafficTarget(type_=T.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100)


def test_revision_names_follow_the_highest_number() -> None:
    assert next_revision("api", []) == ("api-r1", "r1")
    names = [f"{NAME}/revisions/api-r3", "api-r12", "api-00001-abc", "other-r99"]
    assert next_revision("api", names) == ("api-r13", "r13")


def test_a_start_pins_latest_traffic_and_adds_a_zero_percent_tag() -> None:
    env = [run_v2.EnvVar(name="SAFESHIP_ENV", value="staging")]
    body = start_service(service(LATEST), "api-r2", "r2", "img:2", env)
    # LATEST would move the traffic to the new template: it is pinned to api-r1 instead.
    # The serving revision gets a tag of its own: how it is probed and drained later.
    assert traffic_of(body) == [("api-r1", 100, "r1"), ("api-r2", 0, "r2")]
    assert body.template.revision == "api-r2"
    container = body.template.containers[0]
    assert container.image == "img:2"
    assert [(v.name, v.value) for v in container.env] == [
        ("KEEP", "1"),
        ("SAFESHIP_ENV", "staging"),
    ]


def test_tags_are_short_dns_labels() -> None:
    assert tag_for("api", "api-r7") == "r7"
    assert tag_for("api", "api-00001-abc") == "rev-00001-abc"
    assert tag_for("api", "Other_Rev") == "other-rev"


def test_switch_split_and_untag_keep_every_other_tag() -> None:
    current = service(rev("api-r1", 100, "r1"), rev("api-r2", 0, "r2"))
    assert traffic_of(with_traffic(current, {"api-r2": 100})) == [
        ("api-r2", 100, "r2"),
        ("api-r1", 0, "r1"),
    ]
    assert traffic_of(with_traffic(current, {"api-r2": 10, "api-r1": 90})) == [
        ("api-r2", 10, "r2"),
        ("api-r1", 90, "r1"),
    ]
    assert traffic_of(with_traffic(current, {"api-r1": 100}, untag="api-r2")) == [
        ("api-r1", 100, "r1")
    ]
    with pytest.raises(ValueError, match="add up to 100"):
        with_traffic(current, {"api-r2": 60})


def test_secrets_go_as_references_and_a_literal_secret_is_refused() -> None:
    env = container_env(
        {"SAFESHIP_ENV": "staging"},
        {"JWT_SECRET_STAGING": "jwt:latest", "DB": "projects/q/secrets/db:3"},
        "p",
        {"JWT_SECRET_STAGING", "JWT_SECRET"},
    )
    by_name = {v.name: v for v in env}
    assert by_name["SAFESHIP_ENV"].value == "staging"
    jwt = by_name["JWT_SECRET_STAGING"]
    assert not jwt.value
    assert jwt.value_source.secret_key_ref.secret == "projects/p/secrets/jwt"
    assert jwt.value_source.secret_key_ref.version == "latest"
    assert by_name["DB"].value_source.secret_key_ref.secret == "projects/q/secrets/db"
    with pytest.raises(TargetError, match="JWT_SECRET would be sent") as caught:
        container_env({"JWT_SECRET": "a-literal-value"}, {}, "p", {"JWT_SECRET"})
    assert "[deploy.cloudrun] secrets" in (caught.value.hint or "")
    assert "a-literal-value" not in caught.value.message


def ready(state: int, message: str = "", **reason: object) -> run_v2.Revision:
    condition = run_v2.Condition(type_="Ready", state=state, message=message, **reason)
    return run_v2.Revision(conditions=[condition])


def test_state_serves_the_largest_share_and_names_traffic_to_a_missing_revision() -> None:
    current = service(rev("api-r1", 90), rev("api-r2", 10, "r2"), rev("api-r0", 0, "r0"))
    current.traffic_statuses = [
        run_v2.TrafficTargetStatus(type_=t.type_, revision=t.revision, percent=t.percent, tag=t.tag,
                                   uri=f"https://{t.tag}---api-xyz.a.run.app" if t.tag else "")
        for t in current.traffic
    ]  # fmt: skip
    revisions = []
    for name in ("api-r1", "api-r2"):
        revision = ready(S.CONDITION_SUCCEEDED)
        revision.name = f"{NAME}/revisions/{name}"
        revisions.append(revision)
    state = read_state("cloudrun", current, revisions)
    assert state.serving == "api-r1"
    assert state.front_url == "https://api-xyz.a.run.app"
    second = state.revision("api-r2")
    assert second is not None and second.url == "https://r2---api-xyz.a.run.app"
    assert second.traffic and second.status is RevisionStatus.RUNNING
    assert [p for p in state.problems if "api-r0" in p and "does not exist" in p]


def test_a_failed_revision_says_why_from_its_condition_and_its_startup_line() -> None:
    reason = run_v2.Condition.CommonReason.CONTAINER_MISSING
    failed = ready(S.CONDITION_FAILED, "Image 'x' not found.", reason=reason)
    failure = start_failure(failed)
    assert failure.error == "CONTAINER_MISSING: Image 'x' not found."
    assert "cannot be pulled" in (failure.hint or "")
    crashed = ready(
        S.CONDITION_FAILED,
        "The user-provided container failed to start",
        revision_reason=run_v2.Condition.RevisionReason.HEALTH_CHECK_CONTAINER_ERROR,
    )
    crashed.log_uri = "https://console.cloud.google.com/logs/viewer?x"
    line = (
        '{"event": "startup_failed", "phase": "services", "error": "NameError: x", "hint": "fix"}'
    )
    failure = start_failure(crashed, ["booting", line])
    assert (failure.phase, failure.error, failure.hint) == ("services", "NameError: x", "fix")
    assert failure.log_tail == ("booting", line)
    # Without readable logs: the condition, and where the logs are.
    failure = start_failure(crashed)
    assert failure.error.startswith("HEALTH_CHECK_CONTAINER_ERROR: ")
    assert "logs: https://console.cloud.google.com" in (failure.hint or "")


@pytest.mark.parametrize(
    ("exc", "says", "hint"),
    [
        (api.Forbidden("denied"), "permission denied", "roles/run.developer"),
        (api.PermissionDenied("denied"), "permission denied", "iam.serviceAccountUser"),
        (api.NotFound("gone"), "not found", "region"),
        (api.Conflict("busy"), "conflict", "wait for the other deploy"),
        (api.TooManyRequests("slow down"), "quota", "Quotas"),
        (api.ResourceExhausted("quota"), "quota", "Quotas"),
        (api.FailedPrecondition("Image 'x' not found"), "refused", "artifactregistry.reader"),
        (TimeoutError(), "did not answer in time", "operation_timeout"),
    ],
)
def test_api_errors_name_the_service_and_what_to_do(exc: Exception, says: str, hint: str) -> None:
    error = api_error(exc, "switch traffic on", PLACE, 30)
    assert says in error.message
    assert "'api'" in error.message and "project p" in error.message
    assert "region europe-west1" in error.message
    assert hint in (error.hint or "")
