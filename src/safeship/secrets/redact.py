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


def _nocase(word: str) -> str:
    """``word`` as per-character classes (``[Tt][Oo]...``): unlike ``(?i:...)`` this keeps a
    first-character set the regex engine can skip ahead with."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _words(*words: str) -> str:
    """Any of ``words`` (case-insensitive): one first-character class (the engine skips ahead
    to it in C), then a trie of the rests, each leaf checked against its whole word by a
    lookbehind. Every alternative starts with a character class, which the engine rejects
    in one step."""
    firsts = "".join(sorted({c for w in words for c in (w[0].upper(), w[0].lower())}))
    return f"[{firsts}]{_trie({w[1:]: w for w in words})}"


def _trie(rests: dict[str, str]) -> str:
    groups: dict[str, dict[str, str]] = {}
    leaves = []
    for rest, word in rests.items():
        if rest:
            groups.setdefault(rest[0].lower(), {})[rest[1:]] = word
        else:
            leaves.append(f"(?<={_nocase(word)})")
    branches = [_nocase(c) + _trie(sub) for c, sub in groups.items()] + leaves
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


_QUOTE = "[\"']?"
_SEP = f"{_QUOTE}\\s*+[:=,]\\s*+b?{_QUOTE}\\s*+"

# Each pass runs in linear time on any input (tests/security checks every one with an
# analyzer): unbounded runs are possessive, and no attempt can start inside the run of an
# earlier attempt, so a failed attempt is never rescanned from the next position. Each starts
# with a fixed character set, which lets the engine skip ahead in C, and runs only when its
# trigger (lower-cased) is in the text: most log lines have none.
_PASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Authorization header values, in HTTP, dict/JSON and ASGI (b'authorization', b'...') forms.
    # The scheme word is kept so the line still says what kind of credential was there.
    ("authoriz", re.compile(
        f"(?P<keep>{_nocase('authorization')}{_SEP}(?:[A-Za-z][\\w-]{{0,30}}\\s++)?)"
        "(?P<secret>[^\\s\"',;)\\]}]++)"
    )),
    # Cookie headers: the configured auth cookie may hold the token.
    ("cookie", re.compile(f"(?P<keep>{_nocase('cookie')}{_SEP})(?P<secret>[^\"'\\r\\n]++)")),
    # Parameters named like credentials (/ws?ticket=..., b'access_token=...', client_secret=):
    # the name's own prefix stays outside the match.
    ("=", re.compile(
        "(?P<keep>" + _words(
            "token", "ticket", "secret", "password", "passwd", "pwd", "api_key", "api-key",
            "apikey", "jwt", "auth", "session", "sig", "credential",
        ) + "=)(?P<secret>[^&\\s\"'#;]++)"
    )),
    # A query parameter whose name is percent-encoded (?tic%6bet=...): what it decodes to
    # cannot be told by looking, so its value is treated as a credential.
    ("%", re.compile(
        "(?P<keep>[?&;][^=&?;%\\s\"'#]*+%[^=&?;\\s\"'#]*+=)(?P<secret>[^&\\s\"'#;]++)"
    )),
    # The password of a URL with credentials (DATABASE_URL, REDIS_URL), also with one slash
    # (a typo such as scheme:/user:PW@host), up to the last '@' (a password may hold '@').
    (":/", re.compile("(?P<keep>:/{1,3}[^\\s/:@]*+:)(?P<secret>[^\\s/]*)(?=@)")),
    # The "jwt.<base64url(jwt)>" subprotocol. Requiring a digit or '-' in the run keeps
    # Python names such as jwt.InvalidSignatureError readable in tracebacks.
    ("jwt.", re.compile(
        f"(?P<keep>{_nocase('jwt.')})(?=[A-Za-z_]*[0-9-])(?P<secret>[A-Za-z0-9_-]{{16,}}+=*+)"
    )),
    # A bare "Bearer <token>" outside an Authorization header; auth-params such as
    # error="invalid_token" (WWW-Authenticate) are not credentials and stay readable.
    ("bearer", re.compile(
        f"(?P<keep>{_nocase('bearer')}\\s++)(?![\\w-]{{1,64}}=\")"
        "(?P<secret>[A-Za-z0-9._~+/-]{8,}+=*+)"
    )),
    # Anything shaped like a compact JWT (the payload is a JSON object: ".eyJ"), from the
    # character before its run of base64url characters (kept), so no attempt starts inside
    # another's run. redact() puts a newline in front, for a token at the very start.
    (".eyj", re.compile(
        "(?P<keep>[^A-Za-z0-9_-])(?P<secret>[A-Za-z0-9_-]*+\\.eyJ[A-Za-z0-9_-]*+\\.[A-Za-z0-9_-]*+)"
    )),
)  # fmt: skip
_JWT = _PASSES[-1][1]


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


MAX_EXAMINED_CHARS = 64 * 1024
"""``redact`` examines at most this many characters; the rest of a longer text is replaced by a
note of how much was left out (a log line that long is an attack or a mistake)."""


def redact(text: str) -> str:
    """``text`` with registered secrets and anything token-shaped replaced.

    Registered secrets become ``[redacted:<fingerprint>]``. These become ``[redacted]``:
    Authorization and Cookie header values, ``Bearer <token>``, the values of parameters
    named like credentials (``ticket=``, ``token=``, ``access_token=``, ``jwt=``,
    ``client_secret=``, ``password=``, ``api_key=``, ``auth=``, ``session=``, ``sig=``) or
    with a percent-encoded name, URL passwords (``scheme://user:PW@``, also ``scheme:/``),
    ``jwt.<base64url>`` subprotocols and anything shaped like a compact JWT.

    Runs in time linear in ``len(text)``, and looks at no more than ``MAX_EXAMINED_CHARS``.
    """
    if len(text) > MAX_EXAMINED_CHARS:
        hidden = len(text) - MAX_EXAMINED_CHARS
        text = f"{text[:MAX_EXAMINED_CHARS]}[... {hidden} more characters not shown]"
    for value, tag in _registered:
        if value in text:
            text = text.replace(value, tag)
    lowered = text.lower()
    for trigger, pattern in _PASSES:
        if trigger in lowered:
            text = _cut(pattern, "\n" + text)[1:] if pattern is _JWT else _cut(pattern, text)
    return text


def _cut(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with each match's ``secret`` group replaced, its ``keep`` group kept.

    ``split`` on a pattern of two groups gives ``[before, keep, secret, between, keep, ...]``,
    all built in C; ``sub`` with a ``\\g<keep>`` template would call into Python for every
    match (Python 3.11), which input made of nothing but credential shapes turns into the
    main cost."""
    pieces = pattern.split(text)
    if len(pieces) == 1:
        return text
    pieces[2::3] = [REDACTED] * (len(pieces) // 3)
    return "".join(pieces)


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
