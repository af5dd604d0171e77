"""The gate framework: the context every gate reads, the registry, and ``run_check``.

A gate is any object with a ``name`` and ``run(ctx) -> GateResult``. Gates are registered
by lazy ``"module:Class"`` strings so a missing or broken gate module turns into an ``error``
result for that gate, never a crash of the whole check.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..config import Manifest
from ..errors import AuditError, ConfigError, GateError
from .model import Finding, GateResult, GateStatus, Report, Tier

if TYPE_CHECKING:
    from ..core.policy import GatePlan
    from ..deploy.audit import AuditLog
    from .project_env import ProjectEnv

__all__ = [
    "GATES",
    "CheckContext",
    "Gate",
    "build_context",
    "entry_modules",
    "is_test_path",
    "iter_python_files",
    "load_gate",
    "python_files",
    "result_from_findings",
    "run_check",
    "run_planned",
    "target_environ",
]

# Run order of a full check. Adding a gate touches this dict and its own module.
GATES: dict[str, str] = {
    "static": "safeship.gates.static:StaticGate",
    "legacy": "safeship.gates.legacy:LegacyGate",
    "secrets": "safeship.gates.secrets_gate:SecretsGate",
    "imports": "safeship.gates.imports:ImportsGate",
    "boot": "safeship.gates.boot:BootGate",
    "deploy-config": "safeship.gates.deploy_config:DeployConfigGate",
}


@dataclass
class CheckContext:
    """Everything a gate may read. Gates never look at ``os.environ`` or the CLI directly."""

    root: Path
    """The project being checked (PATH, else the manifest's directory, else cwd)."""
    manifest: Manifest
    env: str
    critical: bool
    entries: tuple[str, ...]
    """Entry modules: the module of ``service.app``, ``service.entry_points`` and ``--entry``."""
    environ: dict[str, str]
    """The target environment's variables (os.environ + the env's env_file + its ``env`` table)."""
    block_tiers: frozenset[Tier]
    baseline_path: Path | None = None
    write_baseline: bool = False
    notes: list[str] = field(default_factory=list)
    """Things the user should know about the check itself (e.g. no entry modules)."""
    entry_specs: tuple[str, ...] = ()
    """The entries as given (``module:attr`` keeps its attribute: an app factory that
    ``uvicorn --factory`` calls at startup)."""
    project_env: ProjectEnv | None = None
    """The project's interpreter, environment and target Python version
    (``gates.project_env``); None: resolved by the gate that needs it."""
    imports_strict: bool = False
    """``--imports-strict``: the imports gate imports every module from a pristine
    interpreter instead of into the started app."""


class Gate(Protocol):
    name: str

    def run(self, ctx: CheckContext) -> GateResult: ...


def result_from_findings(
    gate: str, findings: list[Finding], summary: dict[str, object] | None = None
) -> GateResult:
    """A ``GateResult`` whose status follows its findings: ``failed`` when one blocks."""
    blocking = any(f.blocking and not f.in_baseline for f in findings)
    return GateResult(
        gate=gate,
        status=GateStatus.FAILED if blocking else GateStatus.PASSED,
        findings=findings,
        summary=dict(summary or {}),
    )


def load_gate(name: str, registry: Mapping[str, str] | None = None) -> Gate:
    """Instantiate the gate registered under ``name``.

    Raises:
        GateError: the name is unknown, its module is not part of this build, or it fails to load.
    """
    table = GATES if registry is None else registry
    target = table.get(name)
    if target is None:
        raise GateError(f"unknown gate {name!r}", hint=f"gates are: {', '.join(table)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise GateError(
                f"gate {name!r} is not available in this build (module {module_name} is missing)"
            ) from None
        raise GateError(f"gate {name!r} could not be loaded: {exc}") from exc
    except Exception as exc:
        raise GateError(f"gate {name!r} could not be loaded: {type(exc).__name__}: {exc}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise GateError(f"gate {name!r}: {module_name} has no {attr}") from None
    gate: Gate = factory()
    return gate


def _run_one(name: str, ctx: CheckContext, registry: Mapping[str, str] | None) -> GateResult:
    started = time.perf_counter()
    try:
        gate = load_gate(name, registry)
        result = gate.run(ctx)
        if not isinstance(result, GateResult):
            raise TypeError(f"run() returned {type(result).__name__}, expected GateResult")
    except GateError as exc:
        result = GateResult(gate=name, status=GateStatus.ERROR, error=exc.message)
    except Exception as exc:  # a crashing gate is an inconclusive result, not a crashed check
        result = GateResult(
            gate=name,
            status=GateStatus.ERROR,
            error=f"{name} crashed: {type(exc).__name__}: {exc}",
        )
    result.gate = name
    if not result.duration:
        result.duration = time.perf_counter() - started
    return result


def run_check(
    ctx: CheckContext,
    gates: Sequence[str],
    *,
    parallel: bool = True,
    registry: Mapping[str, str] | None = None,
) -> Report:
    """Run ``gates`` against ``ctx`` and collect one report, in the order given.

    Gates are independent (each reads ``ctx`` only), so they run in threads; the heavy work
    of each happens in subprocesses, so the GIL is not the bottleneck. Never raises for a
    gate's failure: an unknown, missing or crashing gate is an ``error`` result.
    """
    names = list(dict.fromkeys(gates))
    report = Report(root=str(ctx.root), env=ctx.env, critical=ctx.critical)
    if parallel and len(names) > 1:
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="gate") as pool:
            futures = [pool.submit(_run_one, n, ctx, registry) for n in names]
            report.results = [f.result() for f in futures]
    else:
        report.results = [_run_one(n, ctx, registry) for n in names]
    return report


def entry_modules(manifest: Manifest, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The module of ``service.app``, then ``service.entry_points``, then ``extra``; no duplicates.

    ``extra`` entries may be given as ``module:attr`` too; only the module counts.
    """
    found: list[str] = []
    if manifest.service.app_module:
        found.append(manifest.service.app_module)
    found.extend(manifest.service.entry_points)
    found.extend(extra)
    cleaned = (e.split(":", 1)[0].strip() for e in found)
    return tuple(dict.fromkeys(e for e in cleaned if e))


def target_environ(
    manifest: Manifest, env: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables a process of ``env`` would see: ``base`` (default ``os.environ``),
    overlaid by the environment's ``env_file``, then its ``env`` table; the caller's own
    values of declared secrets go on top of both (secrets are meant to come from the caller,
    not from files in the tree); ``SAFESHIP_ENV`` is set to ``env``.

    Raises:
        ConfigError: the environment is unknown, or its ``env_file`` is missing or unreadable.
    """
    from dotenv import dotenv_values

    config = manifest.environment(env)
    environ = dict(os.environ if base is None else base)
    if config.env_file:
        path = manifest.resolve(config.env_file)
        key = f"environments.{env}.env_file"
        if not path.is_file():
            raise ConfigError(
                f"env file {config.env_file!r} does not exist ({path})",
                file=manifest.display_path,
                key=key,
                hint=f"run `safeship secrets init --env {env}` to create it with the "
                "environment's secrets, or remove env_file from the environment",
            )
        try:
            values = dotenv_values(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read env file {config.env_file!r}: {exc}",
                file=manifest.display_path,
                key=key,
            ) from None
        environ.update({k: v for k, v in values.items() if v is not None})
    environ.update(config.env)
    caller = os.environ if base is None else base
    for name in _secret_names(manifest, env):
        if caller.get(name):
            environ[name] = caller[name]
    environ["SAFESHIP_ENV"] = env
    return environ


def _secret_names(manifest: Manifest, env: str) -> list[str]:
    from ..secrets import candidate_names

    bases = dict.fromkeys([manifest.auth.secret, *manifest.secrets])
    return [
        name
        for base in bases
        for name in candidate_names(base, env, manifest.secret_config(base).per_environment)
    ]


def build_context(
    root: Path,
    manifest: Manifest,
    env: str,
    *,
    entries: Iterable[str] = (),
    baseline_path: Path | None = None,
    write_baseline: bool = False,
    base_environ: Mapping[str, str] | None = None,
    python: str | os.PathLike[str] | None = None,
    python_version: str | None = None,
) -> CheckContext:
    """Assemble a ``CheckContext`` for ``env`` from the manifest and the command line.

    ``python`` and ``python_version`` are ``--python`` and ``--python-version``; the
    project's environment is auto-detected without them (``gates.project_env``).

    Raises:
        ConfigError: unknown environment, missing env file, unusable manifest ``python``.
        UsageError: unusable ``python`` or ``python_version``.
    """
    from ..core.policy import block_tiers  # late: core.policy imports this package's model
    from .project_env import resolve_project_env

    all_entries = entry_modules(manifest, entries)
    notes = []
    if not all_entries:
        notes.append(
            "no entry modules: the manifest has no service.app and no --entry was given, "
            "so reachability cannot be computed; pass --entry MODULE (e.g. --entry myapp.main)"
        )
    if baseline_path is None and manifest.gates.baseline:
        baseline_path = manifest.resolve(manifest.gates.baseline)
    return CheckContext(
        root=Path(root).resolve(),
        manifest=manifest,
        env=env,
        critical=manifest.is_critical(env),
        entries=all_entries,
        environ=target_environ(manifest, env, base_environ),
        block_tiers=block_tiers(manifest, env),
        baseline_path=baseline_path,
        write_baseline=write_baseline,
        notes=notes,
        entry_specs=tuple(entries),
        project_env=resolve_project_env(
            Path(root),
            python=python,
            python_version=python_version,
            manifest_python=manifest.python,
            manifest_python_version=manifest.python_version,
            manifest_root=manifest.root,
            environ=os.environ if base_environ is None else base_environ,
        ),
    )


# Directories that are never part of a project's own code.
_SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        ".tox",
        ".nox",
        "node_modules",
        "build",
        "dist",
        "site-packages",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".safeship",
    }
)


def is_test_path(rel: str) -> bool:
    """Whether a POSIX path relative to the project is test code (tests/, test_*.py,
    *_test.py, conftest.py)."""
    parts = rel.split("/")
    name = parts[-1]
    if name == "conftest.py" or name.startswith("test_") or name.endswith("_test.py"):
        return True
    return any(p in ("tests", "test") for p in parts[:-1])


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.strip().rstrip("/")
        if pattern and (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern + "/*")):
            return True
    return False


def iter_python_files(
    directory: Path,
    *,
    root: Path | None = None,
    exclude: Sequence[str] = (),
    include_tests: bool = True,
) -> Iterator[Path]:
    """Every ``.py`` file under ``directory``, in sorted order, skipping virtualenvs, caches,
    hidden directories and the ``exclude`` globs (matched against the path relative to
    ``root``, default ``directory``)."""
    base = Path(root or directory)
    if directory.is_file():
        if directory.suffix == ".py":
            yield directory
        return
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP_DIRS
            and not d.startswith(".")
            and not (Path(current, d) / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = Path(current, name)
            try:
                rel = path.relative_to(base).as_posix()
            except ValueError:
                rel = path.as_posix()
            if _excluded(rel, exclude) or (not include_tests and is_test_path(rel)):
                continue
            yield path


def python_files(
    directory: Path,
    *,
    root: Path | None = None,
    exclude: Sequence[str] = (),
    include_tests: bool = True,
) -> list[Path]:
    """``iter_python_files`` as a list."""
    return list(
        iter_python_files(directory, root=root, exclude=exclude, include_tests=include_tests)
    )


def run_planned(
    ctx: CheckContext,
    plan: GatePlan,
    *,
    audit: AuditLog | None = None,
    parallel: bool = True,
) -> Report:
    """Carry out a plan from ``core.policy.plan_gates``: write its audit records first (so a
    skip is on record even if the run then crashes), run its gates, and report each skipped
    gate as ``skipped`` with its reason, in the registry's order.

    Raises:
        AuditError: the plan requires an audit record and ``audit`` is None or unwritable.
    """
    records = plan.audit_records()
    if records:
        if audit is None:
            raise AuditError(
                "skipping gates in a critical environment must be audited, but no audit log "
                "was given"
            )
        for event, what, why in records:
            audit.append(event, what, why)
    report = run_check(ctx, plan.run, parallel=parallel)
    by_gate = {r.gate: r for r in report.results}
    for gate in plan.skipped:
        by_gate[gate] = GateResult(
            gate=gate, status=GateStatus.SKIPPED, skipped_reason=plan.skip_reason(gate)
        )
    order = [*GATES, *(g for g in by_gate if g not in GATES)]
    report.results = [by_gate[g] for g in order if g in by_gate]
    return report
