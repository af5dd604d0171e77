"""The manifest: ``safeship.toml``, or ``[tool.safeship]`` in ``pyproject.toml``.

Every table forbids unknown keys, so a typo is an error that names the file and the key
instead of a setting silently ignored.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .core.handshake import normalize_origin
from .errors import ConfigError

__all__ = [
    "CRITICAL_BY_DEFAULT",
    "AuthConfig",
    "CloudRunConfig",
    "DeployConfig",
    "EnvironmentConfig",
    "GatesConfig",
    "KubernetesConfig",
    "Manifest",
    "MonitorConfig",
    "NotifyConfig",
    "SecretConfig",
    "ServiceConfig",
    "current_env",
    "find_manifest",
    "load_manifest",
]

CRITICAL_BY_DEFAULT = frozenset({"staging", "production"})
BUILTIN_ENVIRONMENTS = ("development", "test", "staging", "production")
Tier = Literal["breaks-startup", "breaks-on-call", "unreachable", "noise"]
_BLOCK_DEFAULT: tuple[Tier, ...] = ("breaks-startup",)
_BLOCK_CRITICAL_DEFAULT: tuple[Tier, ...] = ("breaks-startup", "breaks-on-call")


class _Model(BaseModel):
    # allow_inf_nan=False: every float here is a duration, a rate or a ratio; inf would turn a
    # deadline into a hang (or a token leeway into no expiry at all).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ServiceConfig(_Model):
    name: str = "service"
    app: str | None = None
    """ASGI import string, ``module:attribute``."""
    app_dir: str = "."
    code: str | None = None
    """Directory the gates check; defaults to the app's package under ``app_dir``."""
    entry_points: list[str] = Field(default_factory=list)
    """Extra entry modules for reachability, besides the module of ``app``."""
    command: list[str] | None = None
    """Boot the service with this argv instead of uvicorn; ``{port}`` is replaced."""
    ws_path: str = "/ws"
    health_prefix: str = "/health"
    fingerprint_salt: str | None = None
    drain_path: str | None = None
    """Serve the drain endpoint here (e.g. ``/_safeship/drain``); off when unset."""
    longest_session_seconds: float = Field(default=3600.0, gt=0)
    """The longest a WebSocket session is expected to last; a platform request timeout below
    it cuts sessions (the deploy-config gate)."""
    needs_session_affinity: bool = False
    """Tickets or resume state live in one instance's memory, so a client must come back to
    the same instance (the deploy-config gate then requires session affinity)."""

    @field_validator("app")
    @classmethod
    def _app_is_import_string(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError(f"expected 'module:attribute', e.g. 'myapp.main:app', got {value!r}")
        return value

    @field_validator("drain_path")
    @classmethod
    def _drain_path_is_a_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(
                f"expected a path starting with '/', e.g. '/_safeship/drain', got {value!r}"
            )
        return value

    @property
    def app_module(self) -> str | None:
        return self.app.split(":")[0] if self.app else None

    @property
    def salt(self) -> str:
        return self.fingerprint_salt or f"safeship/{self.name}"


class AuthConfig(_Model):
    secret: str = "JWT_SECRET"
    """Base name of the signing secret; resolved as ``<secret>_<ENV>``, then ``<secret>``."""
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: float = Field(default=30.0, ge=0)
    cookie: str | None = None
    allowed_origins: list[str] | None = None
    """Origins (``https://app.example.com``) whose pages may open a WebSocket that
    authenticates with the cookie or a ticket; any other Origin is refused with 403/4403
    (cross-site WebSocket hijacking). Required with ``cookie`` in critical environments."""
    max_token_bytes: int = Field(default=8192, gt=0)
    expiry_grace_seconds: float | None = Field(default=None, ge=0)
    """How long past ``exp`` a connection may stay open; defaults to the leeway."""

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for origin in value:
            if origin == "*" or ("://" not in origin and origin != "null"):
                raise ValueError(
                    "each allowed origin is scheme://host[:port], e.g. 'https://app.example.com'"
                )
        return [normalize_origin(o) for o in value]

    @field_validator("algorithms")
    @classmethod
    def _no_none(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one algorithm, e.g. ['HS256']")
        if any(a.lower() == "none" for a in value):
            raise ValueError("'none' is never an acceptable JWT algorithm")
        return value


class EnvironmentConfig(_Model):
    critical: bool | None = None
    """Defaults to true for staging and production, false otherwise."""
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_file: str | None = None
    block: list[Tier] | None = None
    """Finding tiers that block in this environment; overrides ``[gates]``."""


class SecretConfig(_Model):
    per_environment: bool = True
    min_bytes: int = Field(default=32, ge=1)
    consumers: list[str] = Field(default_factory=lambda: ["env"])
    """Where the secret must be present, and identical: ``env``, ``file:PATH``,
    ``dir:PATH``, ``gcp:projects/P/secrets/S`` or ``k8s:[CONTEXT/]NAMESPACE/SECRET``."""
    required: bool = True

    @field_validator("consumers")
    @classmethod
    def _known_consumers(cls, value: list[str]) -> list[str]:
        for item in value:
            kind = item.split(":", 1)[0]
            if kind not in {"env", "file", "dir", "gcp", "k8s"}:
                raise ValueError(
                    f"unknown consumer {item!r}: expected 'env', 'file:PATH', 'dir:PATH', "
                    "'gcp:projects/P/secrets/S' or 'k8s:NAMESPACE/SECRET'"
                )
        return value


def _json_object(value: str | None) -> str | None:
    """A message to send must be a JSON object, so a request id can be added to it."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError(f'expected a JSON object, e.g. \'{{"type": "ping"}}\' ({exc})') from None
    if not isinstance(parsed, dict):
        raise ValueError(
            f'expected a JSON object, e.g. \'{{"type": "ping"}}\', not a {type(parsed).__name__}'
        )
    return value


class BootConfig(_Model):
    ready_timeout: float = Field(default=30.0, gt=0)
    send: str | None = None
    """JSON message sent after connecting; ``expect`` entries must then match a reply."""
    expect: dict[str, Any] = Field(default_factory=dict)
    step_timeout: float = Field(default=5.0, gt=0)

    @field_validator("send")
    @classmethod
    def _send_is_object(cls, value: str | None) -> str | None:
        return _json_object(value)


class GatesConfig(_Model):
    block: list[Tier] = Field(default_factory=lambda: list(_BLOCK_DEFAULT))
    block_critical: list[Tier] = Field(default_factory=lambda: list(_BLOCK_CRITICAL_DEFAULT))
    exclude: list[str] = Field(default_factory=list)
    import_timeout: float = Field(default=20.0, gt=0)
    import_jobs: int | None = Field(default=None, ge=1)
    baseline: str | None = None
    boot: BootConfig = Field(default_factory=BootConfig)


class KubernetesConfig(_Model):
    """``[deploy.kubernetes]``: where and how the Kubernetes target runs revisions."""

    namespace: str = "default"
    context: str | None = None
    """The kubeconfig context; ignored when running in a pod (in-cluster config)."""
    kubeconfig: str | None = None
    """A kubeconfig file; default ``$KUBECONFIG``, then ``~/.kube/config``."""
    in_cluster: bool | None = None
    """Use the pod's service account; default: when ``KUBERNETES_SERVICE_HOST`` is set."""
    image: str | None = None
    """The image revisions run when ``--image`` is not given."""
    port: int = Field(default=8000, ge=1, le=65535)
    replicas: int = Field(default=1, ge=1)
    secret: str | None = None
    """The Secret whose keys become the container's environment (``envFrom``)."""
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    url_template: str = "http://{name}.{namespace}.svc:{port}"
    """How a Service is reached: ``{name}``, ``{namespace}``, ``{port}``, ``{node_port}``."""
    front_url: str | None = None
    """The stable URL users connect to; default: the stable Service through ``url_template``."""
    gateway_route: str | None = None
    """An HTTPRoute whose backendRefs weights carry canary steps."""
    pre_stop_seconds: int = Field(default=5, ge=0)
    manifests: list[str] = Field(default_factory=list)
    """YAML files the deploy-config gate checks (Deployments, Services, PDBs)."""
    request_timeout: float = Field(default=10.0, gt=0)
    poll_interval: float = Field(default=0.1, gt=0)


class CloudRunConfig(_Model):
    """``[deploy.cloudrun]``: the Cloud Run service the cloudrun target deploys to."""

    project: str | None = None
    region: str | None = None
    service: str | None = None
    """The Cloud Run service; it must exist (the first revision is deployed by hand)."""
    image: str | None = None
    """The image revisions run when ``--image`` is not given."""
    env: dict[str, str] = Field(default_factory=dict)
    """Literal, non-secret variables of the container."""
    secrets: dict[str, str] = Field(default_factory=dict)
    """Variable -> Secret Manager reference, ``SECRET:VERSION`` or
    ``projects/P/secrets/SECRET:VERSION`` (``--set-secrets`` style); never a value."""
    private: bool = True
    """Probes send a Google ID token in ``X-Serverless-Authorization``."""
    audience: str | None = None
    """Audience of that ID token; default: the service's URL."""
    operation_timeout: float = Field(default=300.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=0.25, gt=0)
    endpoint: str | None = None
    """The Admin API's address, for an emulator or a private endpoint (``http://`` uses no
    credentials)."""
    service_yaml: str | None = None
    """The service's YAML (``gcloud run services replace``), checked by the deploy-config gate."""

    @field_validator("secrets")
    @classmethod
    def _references(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            secret, sep, version = ref.rpartition(":")
            if not sep or not secret or not version or "/" in version:
                raise ValueError(
                    f"{name} = {ref!r}: expected a Secret Manager reference 'SECRET:VERSION' "
                    "(e.g. 'jwt-staging:latest'), never the secret's value"
                )
        return value


class DeployConfig(_Model):
    target: str = "local"
    port: int = Field(default=8700, ge=1, le=65535)
    host: str = "127.0.0.1"
    state_dir: str = ".safeship"
    ready_timeout: float = Field(default=30.0, gt=0)
    verify_probes: int = Field(default=5, ge=1)
    verify_interval: float = Field(default=0.2, gt=0)
    watch_seconds: float = Field(default=30.0, ge=0)
    watch_interval: float = Field(default=0.5, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    drain_seconds: float = Field(default=10.0, ge=0)
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    """How long a revision may take to finish its shutdown after the drain window (in-flight
    work, shutdown hooks) before it is killed."""
    probe_timeout: float = Field(default=3.0, gt=0)
    probe_secret: str = "env"
    """Where verification and watch probes take the secret they mint tokens from: a consumer
    spec (``env``, ``file:PATH``, ``dir:PATH``). Point it at the clients' configuration, so a
    revision whose secret differs from what clients sign with fails verification."""
    probe_send: str | None = None
    """JSON message each probe sends after connecting, e.g. ``{"type": "ping"}``."""
    probe_expect: dict[str, Any] = Field(default_factory=dict)
    """``PATH = VALUE`` checks on the reply to ``probe_send``, e.g. ``{type = "pong"}``."""
    steps: list[int] = Field(default_factory=lambda: [100])
    """Canary steps: percent of NEW connections on the new revision, each watched for
    ``watch_seconds``; e.g. ``[10, 50, 100]``. ``[100]`` switches all at once."""
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    cloudrun: CloudRunConfig = Field(default_factory=CloudRunConfig)

    @field_validator("probe_send")
    @classmethod
    def _send_is_object(cls, value: str | None) -> str | None:
        return _json_object(value)

    @field_validator("steps")
    @classmethod
    def _steps_are_a_canary(cls, value: list[int]) -> list[int]:
        from .core.rollout import steps_problem

        problem = steps_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class MonitorConfig(_Model):
    environments: list[str] = Field(default_factory=list)
    """Environments ``safeship monitor`` probes without ``--env``; default: every declared
    environment with a ``url``, plus the one the deploy target serves."""
    interval: float = Field(default=10.0, ge=1.0)
    timeout: float = Field(default=2.0, gt=0)
    revisions: bool = True
    """Also probe each running revision's own URL, where the target gives one."""
    window: int = Field(default=5, ge=1)
    failures: int = Field(default=3, ge=1)
    """Failed probes among the last ``window`` that open an incident."""
    successes: int = Field(default=2, ge=1)
    """Successful probes in a row that resolve it."""
    latency_threshold_ms: float = Field(default=1000.0, gt=0)
    latency_samples: int = Field(default=20, ge=1)
    objective: float = Field(default=0.999, gt=0, lt=1)
    fast_windows: list[float] = Field(default_factory=lambda: [3600.0, 300.0])
    fast_burn: float = Field(default=14.4, gt=0)
    slow_windows: list[float] = Field(default_factory=lambda: [21600.0, 1800.0])
    slow_burn: float = Field(default=6.0, gt=0)
    listen: str = "127.0.0.1:9464"
    """``HOST:PORT`` of ``/metrics`` and ``/analysis/<env>``; empty for none."""
    history_hours: float = Field(default=168.0, gt=0)

    @field_validator("fast_windows", "slow_windows")
    @classmethod
    def _long_then_short(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not 0 < value[1] <= value[0]:
            raise ValueError("expected [long, short] in seconds, e.g. [3600, 300]")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value and (not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535):
            raise ValueError("expected HOST:PORT, e.g. '127.0.0.1:9464', or '' for none")
        return value


class NotifyConfig(_Model):
    urls_env: str = "SAFESHIP_NOTIFY_URLS"
    """The environment variable holding the apprise URLs (comma or space separated)."""
    events: list[str] = Field(default_factory=list)
    """Event kinds to send; empty for all."""
    dedupe_seconds: float = Field(default=300.0, ge=0)
    max_messages: int = Field(default=20, ge=1)
    per_seconds: float = Field(default=60.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)


class Manifest(_Model):
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    environments: dict[str, EnvironmentConfig] = Field(default_factory=dict)
    secrets: dict[str, SecretConfig] = Field(default_factory=dict)
    legacy: dict[str, str] = Field(default_factory=dict)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    python: str | None = None
    """The project's interpreter or venv, relative to the manifest (``check --python``)."""
    python_version: str | None = None
    """The Python version the code is written for, e.g. ``3.12`` (``check --python-version``)."""

    # Where the manifest came from; not part of the file.
    path: Path | None = Field(default=None, exclude=True)
    root: Path = Field(default_factory=Path.cwd, exclude=True)

    def environment(self, name: str) -> EnvironmentConfig:
        """The named environment, with defaults for the built-in names.

        Raises:
            ConfigError: the name is neither built in nor declared in the manifest.
        """
        if name in self.environments:
            return self.environments[name]
        if name in BUILTIN_ENVIRONMENTS:
            return EnvironmentConfig()
        known = sorted(set(BUILTIN_ENVIRONMENTS) | set(self.environments))
        raise ConfigError(
            f"unknown environment {name!r}",
            file=self.display_path,
            key="environments",
            hint=f"use one of {', '.join(known)}, or add [environments.{name}] to the manifest",
        )

    def is_critical(self, name: str) -> bool:
        explicit = self.environment(name).critical
        return explicit if explicit is not None else name in CRITICAL_BY_DEFAULT

    def secret_config(self, base: str) -> SecretConfig:
        return self.secrets.get(base, SecretConfig())

    def resolve(self, relative: str | os.PathLike[str]) -> Path:
        """A path from the manifest, relative to the manifest's directory."""
        return (self.root / relative).resolve()

    @property
    def display_path(self) -> str:
        if self.path is None:
            return "<defaults>"
        try:
            return str(self.path.relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)

    @property
    def code_dir(self) -> Path:
        """The directory the gates check."""
        if self.service.code:
            return self.resolve(self.service.code)
        module = self.service.app_module
        base = self.resolve(self.service.app_dir)
        if module:
            return base / module.split(".")[0]
        return base


def current_env(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """``SAFESHIP_ENV``, defaulting to ``development``."""
    source = os.environ if environ is None else environ
    return source.get("SAFESHIP_ENV", "").strip() or "development"


def find_manifest(start: Path | None = None) -> Path | None:
    """The nearest ``safeship.toml``, or ``pyproject.toml`` with ``[tool.safeship]``,
    searching ``start`` and its parents."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "safeship.toml"
        if candidate.is_file():
            return candidate
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    return None


def _has_tool_table(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return "safeship" in data.get("tool", {})


def load_manifest(path: Path | str | None = None, *, start: Path | None = None) -> Manifest:
    """Load and validate the manifest.

    Args:
        path: an explicit ``safeship.toml`` or ``pyproject.toml``; otherwise it is searched
            for from ``start`` (default: the current directory) upwards.

    Returns:
        The manifest. With no manifest found and no ``path`` given, the defaults, rooted at
        ``start``.

    Raises:
        ConfigError: the file is unreadable, not TOML, or fails validation. The message names
            the file and the key.
    """
    if path is None:
        found = find_manifest(start)
        if found is None:
            return Manifest(root=(start or Path.cwd()).resolve())
        path = found
    path = Path(path).resolve()
    display = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "manifest not found", file=display, hint="create safeship.toml (see README)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read manifest: {exc}", file=display) from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=display) from None
    prefix = ""
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("safeship", {})
        prefix = "tool.safeship."
    if not isinstance(data, dict):
        raise ConfigError("expected a table", file=display, key=prefix.rstrip(".") or None)
    try:
        return Manifest.model_validate({**data, "path": path, "root": path.parent})
    except ValidationError as exc:
        raise _config_error(exc, display, prefix) from None


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _config_error(exc: ValidationError, display: str, prefix: str) -> ConfigError:
    problems = []
    first_key = None
    for err in exc.errors():
        key = prefix + ".".join(str(p) for p in err["loc"])
        first_key = first_key or key
        if err["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg} (got {_short(err.get('input'))})")
    hint = "check the spelling against the manifest reference in docs/manifest.md"
    message = "invalid manifest: " + "; ".join(problems)
    error = ConfigError(message, file=display, hint=hint)
    error.key = first_key
    return error


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
