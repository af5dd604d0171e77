"""The project's Python: the interpreter and environment its code runs in, and the version
its code is written for.

The gates analyse the project as it will run, not as safeship runs:

- the *environment* (``--python PATH``, an interpreter or a venv) is where third-party imports
  resolve and where the imports gate imports modules. Found in this order: ``--python``, the
  manifest's ``python`` (``[tool.safeship] python``), ``.venv/`` in the project,
  ``VIRTUAL_ENV``, then a uv-managed (``UV_PROJECT_ENVIRONMENT``, a workspace's ``.venv``) or
  poetry-managed environment. With none, safeship's own interpreter runs the project and no
  third-party package counts as installed.
- the *target version* decides which syntax is valid and how annotations behave. Found in this
  order: ``--python-version``, the manifest's ``python_version``, ``requires-python`` (its
  lowest allowed version), ``[tool.ruff] target-version``, ``.python-version``, then the
  environment's interpreter.

A venv is read from its ``pyvenv.cfg`` and directory layout; any other interpreter is asked
once (a subprocess with a deadline).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError

__all__ = [
    "KNOWN_VERSIONS",
    "ProjectEnv",
    "parse_version",
    "requires_python_floor",
    "resolve_project_env",
]

KNOWN_VERSIONS = tuple((3, minor) for minor in range(7, 15))
"""Target versions both engines understand (ruff ``py37``..``py314``)."""

_PROBE = (
    "import json, site, sys; print(json.dumps({'version': list(sys.version_info[:2]), "
    "'prefix': sys.prefix, 'executable': sys.executable, "
    "'site': [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]}))"
)
_PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class ProjectEnv:
    """The Python a project is analysed and run with.

    Attributes:
        interpreter: the executable that runs the project's code (imports gate, boot).
        interpreter_version: its ``(major, minor)``.
        interpreter_source: where it came from, e.g. ``--python``, ``.venv``, ``VIRTUAL_ENV``.
        prefix: the environment directory (``sys.prefix``), what ty's ``--python`` takes.
        target_version: the ``(major, minor)`` the code is written for.
        target_source: where that came from, e.g. ``requires-python >=3.12``.
        site_packages: where the environment's third-party packages are installed.
        isolated: True when no project environment was found: the interpreter is safeship's
            own, and its packages must not count as the project's.
    """

    interpreter: Path
    interpreter_version: tuple[int, int]
    interpreter_source: str
    prefix: Path
    target_version: tuple[int, int]
    target_source: str
    site_packages: tuple[Path, ...] = ()
    isolated: bool = False

    @property
    def target(self) -> str:
        """``3.12``: ty's ``--python-version``."""
        return f"{self.target_version[0]}.{self.target_version[1]}"

    @property
    def ruff_target(self) -> str:
        """``py312``: ruff's ``--target-version``."""
        return f"py{self.target_version[0]}{self.target_version[1]}"

    def describe(self) -> str:
        """One line for a report's header."""
        major, minor = self.interpreter_version
        where = (
            f"none found, safeship's interpreter {self.interpreter} ({major}.{minor}); "
            "third-party packages count as not installed"
            if self.isolated
            else f"{self.interpreter} ({major}.{minor}, from {self.interpreter_source})"
        )
        return f"Python {self.target} (from {self.target_source}); environment: {where}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "interpreter": str(self.interpreter),
            "interpreter_version": "{}.{}".format(*self.interpreter_version),
            "interpreter_source": self.interpreter_source,
            "prefix": str(self.prefix),
            "target_version": self.target,
            "target_source": self.target_source,
            "site_packages": [str(p) for p in self.site_packages],
            "isolated": self.isolated,
        }


def parse_version(text: str) -> tuple[int, int] | None:
    """``3.12``, ``3.12.1``, ``py312``, ``cpython-3.12`` -> ``(3, 12)``; None otherwise."""
    text = text.strip()
    match = re.fullmatch(r"py(\d)(\d{1,2})", text)
    if match is None:
        match = re.search(r"(?<![\d.])(\d+)\.(\d+)(?:\.\d+)?", text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


_CLAUSE = re.compile(r"^\s*(~=|==|>=|<=|!=|>|<|===)?\s*v?(\d+)(?:\.(\d+|\*))?[\w.*+!-]*\s*$")


def requires_python_floor(spec: str) -> tuple[int, int] | None:
    """The lowest ``major.minor`` a ``requires-python`` specifier allows (``>=3.10,<4`` ->
    3.10, ``~=3.11`` -> 3.11, ``==3.12.*`` -> 3.12, ``>3.11`` -> 3.11); None without a
    lower bound."""
    floor: tuple[int, int] | None = None
    for clause in spec.split(","):
        if not clause.strip():
            continue
        match = _CLAUSE.match(clause)
        if match is None:
            return None
        op = match.group(1) or "=="
        if op in ("<", "<=", "!="):
            continue
        minor = match.group(3)
        bound = (int(match.group(2)), int(minor) if minor and minor != "*" else 0)
        floor = bound if floor is None else max(floor, bound)
    return floor


def resolve_project_env(
    root: Path,
    *,
    python: str | os.PathLike[str] | None = None,
    python_version: str | None = None,
    manifest_python: str | None = None,
    manifest_python_version: str | None = None,
    manifest_root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProjectEnv:
    """Find the project's environment and target version (see the module docstring).

    Args:
        root: the project's directory.
        python: ``--python``: an interpreter or a venv directory.
        python_version: ``--python-version``, e.g. ``3.12``.
        manifest_python, manifest_python_version: the manifest's ``python``/``python_version``,
            relative to ``manifest_root`` (default ``root``).
        environ: the variables to read ``VIRTUAL_ENV`` and uv's/poetry's settings from
            (default ``os.environ``).

    Raises:
        UsageError: ``--python`` or ``--python-version`` is not usable.
        ConfigError: the manifest's ``python`` or ``python_version`` is not usable.
    """
    env = os.environ if environ is None else environ
    root = Path(root).resolve()
    found = _find_environment(root, python, manifest_python, manifest_root or root, env)
    if found is None:
        interpreter = _Interpreter(
            Path(sys.executable), (sys.version_info[0], sys.version_info[1]), Path(sys.prefix), ()
        )
        source, isolated = "safeship's interpreter", True
    else:
        interpreter, source = found
        isolated = False
    target, target_source = _target_version(
        root, python_version, manifest_python_version, interpreter.version
    )
    return ProjectEnv(
        interpreter=interpreter.executable,
        interpreter_version=interpreter.version,
        interpreter_source=source,
        prefix=interpreter.prefix,
        target_version=target,
        target_source=target_source,
        site_packages=interpreter.site_packages,
        isolated=isolated,
    )


# -- the environment ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Interpreter:
    executable: Path
    version: tuple[int, int]
    prefix: Path
    site_packages: tuple[Path, ...]


def _find_environment(
    root: Path,
    explicit: str | os.PathLike[str] | None,
    configured: str | None,
    manifest_root: Path,
    env: Mapping[str, str],
) -> tuple[_Interpreter, str] | None:
    if explicit is not None:
        path = Path(explicit).expanduser()
        found = _inspect(path if path.is_absolute() else Path.cwd() / path)
        if isinstance(found, str):
            raise UsageError(
                f"--python {explicit}: {found}",
                hint="pass the project's interpreter (.venv/bin/python) or its venv directory",
            )
        return found, "--python"
    if configured:
        path = Path(configured).expanduser()
        found = _inspect(path if path.is_absolute() else manifest_root / path)
        if isinstance(found, str):
            raise ConfigError(
                f"python = {configured!r}: {found}",
                key="python",
                hint="point it at the project's interpreter or venv, or remove it",
            )
        return found, "[tool.safeship] python"
    candidates: list[tuple[Path, str]] = [(root / ".venv", ".venv")]
    if env.get("VIRTUAL_ENV"):
        candidates.append((Path(env["VIRTUAL_ENV"]), "VIRTUAL_ENV"))
    candidates += _uv_environments(root, env) + _poetry_environments(root, env)
    for path, source in candidates:
        if path.exists():
            found = _inspect(path)
            if not isinstance(found, str):
                return found, source
    return None


def _uv_environments(root: Path, env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """``UV_PROJECT_ENVIRONMENT``, else the ``.venv`` of the uv workspace holding ``root``."""
    out: list[tuple[Path, str]] = []
    if env.get("UV_PROJECT_ENVIRONMENT"):
        path = Path(env["UV_PROJECT_ENVIRONMENT"]).expanduser()
        out.append((path if path.is_absolute() else root / path, "uv (UV_PROJECT_ENVIRONMENT)"))
    for parent in root.parents:
        if (parent / "uv.lock").is_file():
            out.append((parent / ".venv", f"uv workspace ({parent})"))
            break
    return out


def _poetry_environments(root: Path, env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """poetry's ``{virtualenvs.path}/{name}-{hash of the project path}-py{X.Y}``."""
    data = _toml(root / "pyproject.toml")
    poetry = data.get("tool", {}).get("poetry", {})
    name = poetry.get("name") or data.get("project", {}).get("name")
    if not isinstance(name, str) or not name or not ((root / "poetry.lock").is_file() or poetry):
        return []
    if env.get("POETRY_VIRTUALENVS_PATH"):
        base = Path(env["POETRY_VIRTUALENVS_PATH"]).expanduser()
    else:
        cache = env.get("POETRY_CACHE_DIR") or str(
            Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pypoetry"
        )
        base = Path(cache).expanduser() / "virtualenvs"
    sanitized = re.sub(r'[ $`!*@"\\\r\n\t]', "_", name.lower())[:42]
    digest = hashlib.sha256(os.path.normcase(os.path.realpath(root)).encode()).digest()
    prefix = f"{sanitized}-{base64.urlsafe_b64encode(digest).decode()[:8]}-py"
    try:
        matches = sorted(p for p in base.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []
    return [(path, "poetry") for path in reversed(matches)]


def _inspect(path: Path) -> _Interpreter | str:
    """The interpreter at ``path`` (an executable or an environment directory), or why not."""
    if path.is_dir():
        venv = _read_venv(path)
        if venv is not None:
            return venv
        for name in ("bin/python3", "bin/python", "Scripts/python.exe"):
            if (path / name).is_file():
                return _inspect(path / name)
        return f"{path} holds no Python interpreter (no bin/python, no pyvenv.cfg)"
    if not path.exists():
        return f"{path} does not exist"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    home = path.parent.parent
    if (home / "pyvenv.cfg").is_file():
        venv = _read_venv(home, path)
        if venv is not None:
            return venv
    return _probe(path)


def _read_venv(directory: Path, executable: Path | None = None) -> _Interpreter | None:
    """A venv read from ``pyvenv.cfg`` and its layout, without starting it; None when it
    is not a plain venv (no config, no version, system site-packages)."""
    config = _pyvenv_cfg(directory / "pyvenv.cfg")
    if config is None:
        return None
    version = parse_version(config.get("version_info") or config.get("version") or "")
    if version is None or config.get("include-system-site-packages", "false") == "true":
        return None
    if executable is None:
        executable = next(
            (
                directory / name
                for name in ("bin/python3", "bin/python", "Scripts/python.exe")
                if (directory / name).exists()
            ),
            None,
        )
        if executable is None:
            return None
    major, minor = version
    sites = [
        directory / f"lib/python{major}.{minor}/site-packages",
        directory / f"lib/python{major}.{minor}t/site-packages",
        directory / "Lib/site-packages",
    ]
    return _Interpreter(
        executable.absolute(), version, directory.absolute(), tuple(p for p in sites if p.is_dir())
    )


def _pyvenv_cfg(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def _probe(executable: Path) -> _Interpreter | str:
    try:
        done = subprocess.run(
            [str(executable), "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{executable} did not answer within {_PROBE_TIMEOUT:.0f}s"
    except OSError as exc:
        return f"cannot run {executable}: {exc.strerror or exc}"
    try:
        data = json.loads(done.stdout)
        version = (int(data["version"][0]), int(data["version"][1]))
        return _Interpreter(
            executable.absolute(),
            version,
            Path(data["prefix"]),
            tuple(Path(p) for p in data["site"] if Path(p).is_dir()),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
        return f"{executable} is not a working Python interpreter ({tail})"


# -- the target version ---------------------------------------------------------------------


def _target_version(
    root: Path,
    explicit: str | None,
    configured: str | None,
    interpreter: tuple[int, int],
) -> tuple[tuple[int, int], str]:
    if explicit is not None:
        version = _known(explicit)
        if version is None:
            raise UsageError(
                f"--python-version {explicit!r}: expected a version from 3.7 to 3.14, e.g. 3.12"
            )
        return version, "--python-version"
    if configured is not None:
        version = _known(configured)
        if version is None:
            raise ConfigError(
                f"python_version = {configured!r}: expected a version from 3.7 to 3.14, e.g. 3.12",
                key="python_version",
            )
        return version, "[tool.safeship] python_version"
    pyproject = _toml(root / "pyproject.toml")
    requires = pyproject.get("project", {}).get("requires-python")
    if isinstance(requires, str):
        floor = requires_python_floor(requires)
        if floor is not None:
            return _clamp(floor), f"requires-python {requires.strip()}"
    for name, table in (
        ("pyproject.toml [tool.ruff]", pyproject.get("tool", {}).get("ruff", {})),
        ("ruff.toml", _toml(root / "ruff.toml")),
        (".ruff.toml", _toml(root / ".ruff.toml")),
    ):
        value = table.get("target-version") if isinstance(table, dict) else None
        version = _known(value) if isinstance(value, str) else None
        if version is not None:
            return version, f"{name} target-version {value}"
    try:
        pinned = (root / ".python-version").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        pinned = []
    for line in pinned:
        version = _known(line) if line.strip() and not line.startswith("#") else None
        if version is not None:
            return version, f".python-version {line.strip()}"
    return _clamp(interpreter), "the interpreter"


def _known(text: str) -> tuple[int, int] | None:
    version = parse_version(text)
    return version if version in KNOWN_VERSIONS else None


def _clamp(version: tuple[int, int]) -> tuple[int, int]:
    return min(max(version, KNOWN_VERSIONS[0]), KNOWN_VERSIONS[-1])


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
