"""The baseline ratchet: today's findings, recorded by a fingerprint that survives line shifts.

The fingerprint's scope is read from the source text (indentation), never from an AST, so it
does not depend on whether a file was parsed; the other text-level readings of source structure
(which rows make up a statement) live here too.

A team with thousands of old findings writes a baseline once (``--write-baseline``); from then
on only findings that are not in it block. The file is plain, reviewable JSON::

    {"schema": "safeship.baseline/1",
     "fingerprints": {"<fp>": {"path": "pkg/mod.py", "rule": "F821", "symbol": "Name"}}}
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import GateError
from .model import Finding

__all__ = [
    "SCHEMA",
    "Baseline",
    "apply_baseline",
    "enclosing_blocks",
    "load_baseline",
    "statement_rows",
    "statement_starts",
    "text_scope",
    "write_baseline",
]

SCHEMA = "safeship.baseline/1"


@dataclass
class Baseline:
    fingerprints: dict[str, dict[str, str | None]] = field(default_factory=dict)
    path: Path | None = None

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self.fingerprints

    def __len__(self) -> int:
        return len(self.fingerprints)

    @classmethod
    def from_findings(cls, findings: Iterable[Finding], path: Path | None = None) -> Baseline:
        entries = {
            f.fingerprint: {"path": f.path, "rule": f.rule, "symbol": f.symbol} for f in findings
        }
        return cls(dict(sorted(entries.items())), path)

    def as_dict(self) -> dict[str, object]:
        return {"schema": SCHEMA, "fingerprints": self.fingerprints}


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file.

    Raises:
        GateError: the file is missing, unreadable, not JSON, or not a safeship baseline. The
            message names the file and what was expected.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GateError(
            f"baseline {path} does not exist",
            hint="create it with `safeship check --write-baseline --baseline FILE`",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GateError(f"cannot read baseline {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GateError(
            f"baseline {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
            hint="regenerate it with --write-baseline",
        ) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise GateError(
            f"baseline {path} is not a safeship baseline: expected schema {SCHEMA!r}, "
            f"found {found!r}",
            hint="regenerate it with --write-baseline",
        )
    entries = data.get("fingerprints")
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise GateError(
            f"baseline {path}: 'fingerprints' must be an object of "
            "{fingerprint: {path, rule, symbol}}",
            hint="regenerate it with --write-baseline",
        )
    return Baseline(dict(entries), Path(path))


def write_baseline(path: Path, findings: Iterable[Finding]) -> Baseline:
    """Write today's findings as the baseline, atomically (a reader never sees half a file).

    Raises:
        GateError: the file cannot be written.
    """
    path = Path(path)
    baseline = Baseline.from_findings(findings, path)
    text = json.dumps(baseline.as_dict(), indent=2, sort_keys=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise GateError(
            f"cannot write baseline {path}: {exc.strerror or exc}",
            hint="check that the directory exists and is writable",
        ) from None
    return baseline


def apply_baseline(findings: Iterable[Finding], baseline: Baseline) -> list[Finding]:
    """Mark the findings the baseline knows: ``in_baseline=True``, and they never block."""
    out = []
    for finding in findings:
        if finding.fingerprint in baseline:
            finding = replace(finding, in_baseline=True, blocking=False)
        out.append(finding)
    return out


_HEADER = re.compile(r"[ \t]*(async[ \t]+def|def|class)[ \t]+(\w+)")
_CLOSERS = (")", "]", "}")


def text_scope(lines: list[str], line: int) -> str | None:
    """The qualname of the ``def``/``class`` that ``line`` belongs to (its own header
    included), read from indentation only.

    Used for the baseline fingerprint, so it must not depend on whether the file was parsed
    (files that are never imported are not): the same text always gives the same scope.
    """
    return ".".join(name for _, name in enclosing_blocks(lines, line)) or None


def enclosing_blocks(lines: list[str], line: int) -> list[tuple[str, str]]:
    """The ``("def" | "class", name)`` blocks around ``line`` (1-based), outermost first.

    Read from indentation: each less indented ``def``/``class`` line above opens a block.
    """
    if not 0 < line <= len(lines):
        return []
    target = lines[line - 1]
    blocks = []
    own = _HEADER.match(target)
    if own:
        blocks.append(("class" if own.group(1) == "class" else "def", own.group(2)))
    limit = _indent(target) if target.strip() else 1 << 30
    if target.lstrip().startswith(_CLOSERS):
        limit += 1  # `) -> None:` closes the signature of the def at the same indentation
    for index in range(line - 2, -1, -1):
        text = lines[index]
        stripped = text.lstrip()
        if not stripped or stripped.startswith(("#", *_CLOSERS)):
            continue
        indent = len(text) - len(stripped)
        if indent < limit:
            match = _HEADER.match(text)
            if match:
                kind = "class" if match.group(1) == "class" else "def"
                blocks.append((kind, match.group(2)))
            limit = indent
            if indent == 0:
                break
    return blocks[::-1]


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


# A line that starts a statement at its indentation: not a comment, not a closing bracket,
# not the else/except/finally of the statement above.
_STATEMENT = re.compile(r"(?!(?:else|elif|except|finally)\b)[^\s#)\]}]")


def statement_starts(lines: list[str]) -> list[int]:
    """The 0-based rows that start a top-level statement."""
    return [row for row, text in enumerate(lines) if _STATEMENT.match(text)]


def statement_rows(lines: list[str], line: int, starts: list[int]) -> tuple[int, ...]:
    """The 0-based rows to parse for ``line``: its top-level statement, read from the text;
    for a line in a member of a top-level class, only the class header and that member.

    ``starts`` are the rows that start top-level statements (``statement_starts``)."""
    start, end = _rows_span(lines, line, starts, 0, len(lines))
    head = start
    while head < end - 1 and lines[head].startswith("@"):
        head += 1
    body = _header_end(lines, head, end) if lines[head].startswith("class ") else None
    if body is None or line - 1 < body:
        return tuple(range(start, end))
    sample = next((t for t in lines[body:end] if t.strip() and not t.lstrip().startswith("#")), "")
    indent = sample[: len(sample) - len(sample.lstrip())]
    if not indent:
        return tuple(range(start, end))
    width = len(indent)
    members = [
        row
        for row in range(body, end)
        if lines[row].startswith(indent) and _STATEMENT.match(lines[row], width)
    ]
    member, member_end = _rows_span(lines, line, members, body, end)
    return (*range(start, body), *range(member, member_end))


def _rows_span(lines: list[str], line: int, starts: list[int], lo: int, hi: int) -> tuple[int, int]:
    """``[start, end)`` of the statement holding ``line``, given the rows that start
    statements in ``[lo, hi)``; decorators belong to the statement they decorate."""
    first = last = bisect_right(starts, line - 1) - 1
    while first > 0 and lines[starts[first - 1]].lstrip().startswith("@"):
        first -= 1
    while 0 <= last < len(starts) - 1 and lines[starts[last]].lstrip().startswith("@"):
        last += 1
    start = starts[first] if first >= 0 else lo
    return start, starts[last + 1] if last + 1 < len(starts) else hi


def _header_end(lines: list[str], head: int, end: int) -> int | None:
    """The row after a class header (``class A(\n    Base,\n):`` spans three rows)."""
    depth = 0
    for row in range(head, end):
        text = lines[row].split("#", 1)[0].rstrip()
        depth += sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")
        if depth <= 0 and text.endswith(":"):
            return row + 1
    return None
