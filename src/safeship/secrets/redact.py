"""Redaction of secrets and tokens from text and from every log record.

``redact`` is cheap enough to run on each log record: registered values are found with
plain substring tests, and every token shape is matched by one compiled alternation.
``install_redaction`` wraps logging's record factory, so it covers every logger, including
uvicorn's and the ones configured after it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from typing import Any

__all__ = ["RedactingFilter", "install_redaction", "redact", "register_secret"]

REDACTED = "[redacted]"

# Values shorter than this would redact ordinary words everywhere; no real secret is this short.
_MIN_REGISTERED_CHARS = 4

# The fingerprint in "[redacted:<fp>]" only has to tell registered secrets apart within one
# process, so a per-process salt is enough (and keeps it useless outside the process).
_PROCESS_SALT = secrets.token_bytes(16)

_lock = threading.Lock()
# Replaced wholesale under the lock, read without it: a tuple is safe to iterate while another
# thread registers a new value.
_registered: tuple[tuple[str, str], ...] = ()

# Branches start with (nearly) literal text and avoid leading lookbehinds: the alternation is
# tried at every position, so a cheap first step keeps redact() fast.
_PATTERN = re.compile(
    # Authorization header values, in HTTP, dict/JSON and ASGI (b'authorization', b'...') forms.
    # The scheme word is kept so the line still says what kind of credential was there.
    r"(?P<auth>(?i:(?:proxy-)?authorization)[\"']?\s*[:=,]\s*b?[\"']?\s*"
    r"(?:[A-Za-z][\w-]*\s+)?)[^\s\"',;)\]}]+"
    # Cookie headers: the configured auth cookie may hold the token.
    r"|(?P<cookie>(?i:(?:set-)?cookie)[\"']?\s*[:=,]\s*b?[\"']?\s*)[^\"'\r\n]+"
    # Parameters named like credentials (/ws?ticket=..., b'access_token=...', client_secret=):
    # the name's own prefix stays outside the match.
    r"|(?P<param>(?i:token|ticket|secret|passw(?:or)?d|api[_-]?key|jwt)=)[^&\s\"'#;]+"
    # The password of a URL with credentials (DATABASE_URL, REDIS_URL).
    r"|(?P<dsn>://[^\s/:@]*:)[^\s/@]+(?=@)"
    # The "jwt.<base64url(jwt)>" subprotocol. Requiring a digit or '-' in the run keeps
    # Python names such as jwt.InvalidSignatureError readable in tracebacks.
    r"|(?P<proto>\bjwt\.)(?=[A-Za-z_]*[0-9-])[A-Za-z0-9_-]{16,}=*"
    # A bare "Bearer <token>" outside an Authorization header; auth-params such as
    # error="invalid_token" (WWW-Authenticate) are not credentials and stay readable.
    r"|(?P<bearer>\b(?i:bearer)\s+)(?![\w-]+=\")[A-Za-z0-9._~+/-]{8,}=*"
    # Anything shaped like a compact JWT (header and payload are JSON objects: "eyJ").
    r"|eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
)
_KEEP_GROUPS = ("auth", "cookie", "param", "dsn", "proto", "bearer")
# Every branch above needs one of these (lower-cased) substrings; most log lines have none,
# and a few substring tests are much cheaper than running the alternation at every position.
_TRIGGERS = (
    "authoriz", "cookie", "token", "ticket", "secret", "passw", "key=", "jwt", "bearer",
    "eyj", "://",
)  # fmt: skip


def _fingerprint(value: str) -> str:
    return hmac.new(_PROCESS_SALT, value.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def register_secret(value: str | bytes) -> None:
    """Add a secret value to the process-wide set that ``redact`` replaces everywhere.

    Values shorter than 4 characters are ignored: redacting them would mangle ordinary text.
    """
    global _registered
    text = _as_text(value)
    if len(text) < _MIN_REGISTERED_CHARS:
        return
    with _lock:
        if any(known == text for known, _ in _registered):
            return
        entries = (*_registered, (text, f"[redacted:{_fingerprint(text)}]"))
        # Longest first, so a secret that contains another one is replaced whole.
        _registered = tuple(sorted(entries, key=lambda item: -len(item[0])))


def _as_text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return value


def _replace(match: re.Match[str]) -> str:
    for group in _KEEP_GROUPS:
        kept = match.group(group)
        if kept is not None:
            return kept + REDACTED
    return REDACTED


def redact(text: str) -> str:
    """``text`` with registered secrets and anything token-shaped replaced.

    Registered secrets become ``[redacted:<fingerprint>]``. These become ``[redacted]``:
    Authorization and Cookie header values, ``Bearer <token>``, the values of parameters
    named like credentials (``ticket=``, ``token=``, ``access_token=``, ``jwt=``,
    ``client_secret=``, ``password=``, ``api_key=``), URL passwords (``scheme://user:PW@``),
    ``jwt.<base64url>`` subprotocols and anything shaped like a compact JWT.
    """
    for value, tag in _registered:
        if value in text:
            text = text.replace(value, tag)
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    return _PATTERN.sub(_replace, text)


# Only these argument types keep their identity when redacted one by one (see _redact_args).
_PLAIN = (str, int, float, bool, type(None))


def _redact_args(record: logging.LogRecord, message: str) -> bool:
    """Keep ``record.args`` (redacted one by one) when that yields the same text as redacting
    the whole message, so formatters that read the args (uvicorn's AccessFormatter unpacks
    them) still work. Returns False when the args must be dropped instead."""
    args = record.args
    if not isinstance(args, tuple) or not all(isinstance(a, _PLAIN) for a in args):
        return False
    redacted = tuple(redact(a) if isinstance(a, str) else a for a in args)
    try:
        if str(record.msg) % redacted != message:
            return False
    except (TypeError, ValueError):
        return False
    record.args = redacted
    return True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        original = record.getMessage()
    except Exception:
        # A message that cannot be formatted would later be printed by handleError together
        # with its raw args; drop the args now so that report cannot leak either.
        original = f"{record.msg!s} [log arguments could not be formatted]"
        record.args = ()
    message = redact(original)
    if not (record.args and _redact_args(record, message)):
        record.msg = message
        record.args = ()
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(text)
        if record.exc_text != text:
            # Formatters that render exc_info themselves would bring the secret back.
            record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """A filter that rewrites each record it sees into its redacted form (never drops one).

    Attach it to a handler when ``install_redaction`` is not wanted process-wide.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        if record.args == () and "color_message" in record.__dict__:
            # uvicorn's coloured variant of the message would be formatted without its args.
            del record.__dict__["color_message"]
        return True


_MARKER = "_safeship_redacting"


def install_redaction() -> None:
    """Redact every log record of the process at creation. Idempotent.

    Wrapping the record factory (rather than adding filters to handlers) also covers loggers
    and handlers configured later, e.g. by uvicorn's ``dictConfig``.
    """
    with _lock:
        current = logging.getLogRecordFactory()
        if getattr(current, _MARKER, False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = current(*args, **kwargs)
            try:
                _redact_record(record)
            except Exception:
                # Logging must not fail, and an unredacted record must not get out either.
                record.msg, record.args = "[log record dropped: redaction failed]", ()
                record.exc_info = record.exc_text = record.stack_info = None
            return record

        setattr(factory, _MARKER, True)
        logging.setLogRecordFactory(factory)
