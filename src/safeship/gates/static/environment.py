"""The project's third-party imports against its environment and its declared dependencies.

An import that does not resolve in the project's environment is either an environment
problem (the distribution is declared but not installed there: install the dependencies) or
a code problem (nothing declares it: the deploy will not install it either). Declared
distributions are read from ``pyproject.toml`` (PEP 621, dependency groups, poetry),
``requirements*.txt`` (and ``requirements/*.txt``), and ``setup.cfg``.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Declared", "declared_distributions", "distribution_of", "normalize", "resolves_in"]

# Import names that differ from their distribution's name (the common ones; anything else is
# matched by its normalized name).
_KNOWN = {
    "yaml": "pyyaml",
    "jwt": "pyjwt",
    "dotenv": "python-dotenv",
    "jose": "python-jose",
    "multipart": "python-multipart",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "attr": "attrs",
    "socketio": "python-socketio",
    "engineio": "python-engineio",
    "slugify": "python-slugify",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyopenssl",
    "magic": "python-magic",
    "jinja2": "jinja2",
    "psycopg2": "psycopg2-binary",
    "google": "google-api-core",
    "git": "gitpython",
    "lxml": "lxml",
    "ldap": "python-ldap",
    "snappy": "python-snappy",
    "telegram": "python-telegram-bot",
    "discord": "discord-py",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "cv2": "opencv-python",
    "zmq": "pyzmq",
    "serial": "pyserial",
    "usb": "pyusb",
    "win32api": "pywin32",
    "gi": "pygobject",
    "Levenshtein": "python-levenshtein",
    "ruamel": "ruamel-yaml",
    "pkg_resources": "setuptools",
    "setuptools": "setuptools",
    "nacl": "pynacl",
    "markdown": "markdown",
    "grpc": "grpcio",
    "opentelemetry": "opentelemetry-api",
    "sentry_sdk": "sentry-sdk",
    "email_validator": "email-validator",
    "aiohttp_cors": "aiohttp-cors",
    "kafka": "kafka-python",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "websocket": "websocket-client",
    "mpl_toolkits": "matplotlib",
    "typing_extensions": "typing-extensions",
}


def normalize(name: str) -> str:
    """PEP 503: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-") or "://" in line.split("@")[0]:
        return None
    match = _REQUIREMENT_NAME.match(line)
    return normalize(match.group(1)) if match else None


@dataclass(frozen=True)
class Declared:
    """Normalized distribution names the project declares, and where they were read."""

    names: frozenset[str]
    sources: tuple[str, ...]

    def declares(self, distribution: str) -> bool:
        return normalize(distribution) in self.names


def declared_distributions(root: Path) -> Declared:
    """Every distribution the project at ``root`` declares it depends on."""
    names: set[str] = set()
    sources: list[str] = []
    pyproject = _toml(root / "pyproject.toml")
    if pyproject:
        found = _pyproject_names(pyproject)
        if found:
            names |= found
            sources.append("pyproject.toml")
    files = sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt"))
    for path in files:
        found = {n for line in _lines(path) if (n := _requirement_name(line))}
        if found:
            names |= found
            sources.append(path.relative_to(root).as_posix())
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            parser = configparser.ConfigParser()
        values = [parser.get("options", "install_requires", fallback="")]
        if parser.has_section("options.extras_require"):
            values += [v for _, v in parser.items("options.extras_require")]
        found = {
            n for value in values for line in value.splitlines() if (n := _requirement_name(line))
        }
        if found:
            names |= found
            sources.append("setup.cfg")
    # An sdist's PKG-INFO (a wheel's METADATA) lists the dependencies of a built project.
    metadata = [root / "PKG-INFO", *sorted(root.glob("*.dist-info/METADATA"))]
    for meta in (*metadata, *sorted(root.glob("*.egg-info/requires.txt"))):
        if meta.is_file():
            prefix = "Requires-Dist:" if meta.name in ("PKG-INFO", "METADATA") else ""
            found = {
                n
                for line in _lines(meta)
                if line.startswith(prefix) and not line.startswith("[")
                if (n := _requirement_name(line.removeprefix(prefix)))
            }
            if found:
                names |= found
                sources.append(meta.relative_to(root).as_posix())
    return Declared(frozenset(names), tuple(sources))


def _pyproject_names(data: dict[str, Any]) -> set[str]:
    project = data.get("project", {})
    requirements: list[Any] = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += list(extra)
    for group in data.get("dependency-groups", {}).values():
        requirements += [r for r in group if isinstance(r, str)]
    names = {n for r in requirements if isinstance(r, str) and (n := _requirement_name(r))}
    poetry = data.get("tool", {}).get("poetry", {})
    tables = [poetry.get("dependencies", {}), poetry.get("dev-dependencies", {})]
    tables += [g.get("dependencies", {}) for g in poetry.get("group", {}).values()]
    for table in tables:
        names |= {normalize(n) for n in table if n.lower() != "python"}
    return names


def distribution_of(module: str, declared: Declared) -> str:
    """The distribution that provides the top-level import ``module``: the declared one when
    a declared name matches it, else its usual name."""
    top = module.split(".")[0]
    for candidate in (normalize(top), _KNOWN.get(top), _KNOWN.get(top.lower())):
        if candidate and candidate in declared.names:
            return candidate
    prefixed = [n for n in declared.names if n.startswith(normalize(top) + "-")]
    if len(prefixed) == 1:  # google.cloud.storage -> google-cloud-storage
        return prefixed[0]
    dotted = normalize(".".join(module.split(".")[:3]))
    for name in sorted(declared.names, key=len, reverse=True):
        if dotted.startswith(name):
            return name
    return _KNOWN.get(top) or normalize(top)


def resolves_in(module: str, directories: Sequence[Path]) -> bool:
    """Whether ``module`` is importable from ``directories`` as the import system merges
    them: a package whose ``__init__`` uses ``pkgutil.extend_path``, or a namespace package
    (PEP 420), is one package across all the directories holding a portion of it."""
    parts = module.split(".")
    for directory in directories:
        base = directory.joinpath(*parts[:-1]) if len(parts) > 1 else directory
        if not base.is_dir():
            continue
        leaf = parts[-1]
        if (base / leaf).is_dir() or (base / f"{leaf}.py").is_file():
            return True
        if any(base.glob(f"{leaf}.*.so")) or any(base.glob(f"{leaf}.*.pyd")):
            return True
    return False


def _lines(path: Path) -> Iterable[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
