"""The ``safeship`` command (and ``python -m safeship``).

Standard library only: ``pip install safeship`` is the service library, without the command
line's packages, so this checks for them before importing the CLI and, when one is missing,
says which ``pip install`` adds them instead of failing with an ImportError.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

__all__ = ["main"]

# The import names of the `cli` extra in pyproject.toml.
CLI_PACKAGES = ("typer", "rich", "libcst", "httpx", "websockets", "uvicorn", "ruff", "ty")
INSTALL_HINT = "pip install 'safeship[cli]'"


def missing_cli_packages() -> list[str]:
    """The command line's packages that this interpreter cannot import."""
    return [name for name in CLI_PACKAGES if find_spec(name) is None]


def main() -> int:
    missing = missing_cli_packages()
    if missing:
        print(
            f"error: the safeship command line is not installed (missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        print(f"hint: run {INSTALL_HINT}", file=sys.stderr)
        return 2
    from .cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
