"""What the imports gate removes from exception text before anything is shown.

An import fails with whatever the project put in its exception: a settings class that
echoes its input, a connection error that names its URL. Before a message, a source line or
a note leaves the gate it goes through, in this order:

1. the values of the declared secrets (``[secrets]`` and the JWT secret, under every
   candidate name, from the environment's variables and from each ``file:``/``dir:``
   consumer) and of the environment variables the imports ran with, longest first, each
   replaced by ``[redacted:$NAME]``;
2. the value of every pydantic ``input_value=...`` (up to the line's last
   ``, input_type=``, or its end);
3. ``safeship.secrets.redact``: tokens, credentials in URLs, Authorization headers.

Environment values that cannot be secrets and would only make messages unreadable are
kept: shorter than 8 characters, numbers, booleans, filesystem paths and path lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress

from ..runner import CheckContext

__all__ = ["Redactor", "redact_input_values", "redactor_for"]

_MIN_ENV_CHARS = 8
_INPUT = "input_value="
_INPUT_END = ", input_type="
_PLAIN = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null"})


def redact_input_values(text: str) -> str:
    """Every pydantic ``input_value=...`` replaced by ``input_value=[redacted]`` (linear:
    plain substring searches)."""
    if _INPUT not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(_INPUT, pos)
        if start < 0:
            out.append(text[pos:])
            break
        value = start + len(_INPUT)
        out.append(text[pos:value])
        out.append("[redacted]")
        # pydantic prints one error per line: the value ends at the line's last marker (a
        # value may hold the marker itself), or with the line.
        line_end = text.find("\n", value)
        if line_end < 0:
            line_end = len(text)
        end = text.rfind(_INPUT_END, value, line_end)
        pos = end if end >= 0 else line_end
    return "".join(out)


def _worth_redacting(value: str) -> bool:
    if len(value) < _MIN_ENV_CHARS or value.lower() in _PLAIN:
        return False
    with suppress(ValueError):
        float(value)
        return False
    parts = [p for p in value.split(os.pathsep) if p]
    return not (parts and all(os.path.isabs(p) for p in parts))


class Redactor:
    """``redactor(text)``: ``text`` with the values it was given removed (see the module)."""

    def __init__(
        self,
        secrets: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        values: dict[str, str] = {}
        for name, value in (environ or {}).items():
            if value and _worth_redacting(value):
                values.setdefault(value, name)
        for name, value in (secrets or {}).items():
            if value and len(value) >= 4:
                values[value] = name  # a secret's own name wins over a variable's
        self._values = sorted(values.items(), key=lambda item: -len(item[0]))
        self._redact = redact

    def __call__(self, text: str) -> str:
        for value, name in self._values:
            if value in text:
                text = text.replace(value, f"[redacted:${name}]")
        text = redact_input_values(text)
        return self._redact(text) if self._redact else text

    def many(self, texts: Iterable[str]) -> list[str]:
        return [self(t) for t in texts]


def _declared_secret_values(ctx: CheckContext) -> dict[str, str]:
    """The values of the declared secrets, by variable name, from the environment's
    variables and from each ``file:``/``dir:`` consumer (never a remote one)."""
    from ...errors import SecretError
    from ...secrets import candidate_names, source_from_spec
    from ..secrets_gate import declared_secrets

    values: dict[str, str] = {}
    for base, config in declared_secrets(ctx).items():
        names = candidate_names(base, ctx.env, config.per_environment)
        for name in names:
            if ctx.environ.get(name):
                values[name] = ctx.environ[name]
        for spec in config.consumers:
            if spec.split(":", 1)[0] not in ("file", "dir"):
                continue
            try:
                source = source_from_spec(spec, root=ctx.manifest.root, environ=ctx.environ)
                for name in names:
                    value = source.get(name)
                    if value:
                        values.setdefault(name, value)
            except (SecretError, OSError):
                continue
    return values


# Variables every process has, which hold no secret, and whose values (an environment's
# name, a path, a host name) would only make messages unreadable if redacted.
_PUBLIC_VARIABLES = frozenset(
    {"SAFESHIP_ENV", "PATH", "HOME", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "LANG",
     "TERM", "HOSTNAME", "TZ", "TMPDIR", "VIRTUAL_ENV", "SHLVL", "_"}
)  # fmt: skip


def redactor_for(ctx: CheckContext) -> Redactor:
    """The redactor of a check: its declared secrets, and the variables its imports get."""
    redact: Callable[[str], str] | None
    try:
        from ...secrets import redact
    except ImportError:  # pragma: no cover - part of every build
        redact = None
    try:
        secrets = _declared_secret_values(ctx)
    except Exception:  # a broken consumer is the secrets gate's to report
        secrets = {name: value for name, value in ctx.environ.items() if "SECRET" in name}
    try:
        public = dict(ctx.manifest.environment(ctx.env).env)  # committed in the manifest
    except Exception:
        public = {}
    environ = {
        name: value
        for name, value in ctx.environ.items()
        if name not in _PUBLIC_VARIABLES
        and not name.startswith(("LC_", "PYTHON", "XDG_"))
        and public.get(name) != value
    }
    return Redactor(secrets, environ, redact)
