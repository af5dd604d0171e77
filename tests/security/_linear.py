"""A small static analyzer over the regex parser's tree: does a pattern run in linear time?

Two ways a backtracking engine goes superlinear:

- *Inside one attempt*: a quantifier whose characters can also be taken by what follows it (or
  a quantifier inside a quantifier) lets the engine try every split of the same text. Rule A:
  every unbounded repeat is possessive, or is a single-character class followed only by
  fixed-width elements up to the end of its branch (backtracking is then one step per
  character it gave back).
- *Across start positions*: ``search``/``sub`` retry at every position, and an attempt that
  scans a long run and then fails is repeated from each position inside that run (the
  ``eyJ...`` quadratic). Rule B, for patterns used to search: each top-level branch starts with
  either a negative lookbehind ``(?<![C])`` whose class holds every unbounded run of the branch
  (no attempt can start inside one of its runs), or a fixed prefix such that every unbounded
  run excludes some character of that prefix (a run cannot contain a later start). A run that
  ends its branch is exempt when it needs at most one character: such an attempt never fails
  after scanning it.

Anchored patterns (used only with ``match``/``fullmatch``) start once, so only rule A applies.
This is a sufficient condition, not an exact one: a pattern it rejects may still be linear,
and must then be rewritten until it is accepted.
"""

from __future__ import annotations

import re
import re._constants as C
import re._parser as P
from collections.abc import Iterable

# Every Latin, Greek, Cyrillic and general-punctuation code point, and the spaces past them:
# enough to tell classes apart where it matters.
_UNIVERSE = (*range(0x2100), 0x3000, 0xFEFF, 0xFF10, 0xD800, 0xDFFF, 0x10000)
_ANY = frozenset(_UNIVERSE)
_CATEGORY = {
    C.CATEGORY_DIGIT: r"\d",
    C.CATEGORY_NOT_DIGIT: r"\D",
    C.CATEGORY_SPACE: r"\s",
    C.CATEGORY_NOT_SPACE: r"\S",
    C.CATEGORY_WORD: r"\w",
    C.CATEGORY_NOT_WORD: r"\W",
}


def _category(cat: object) -> frozenset[int]:
    rx = re.compile(_CATEGORY[cat])
    return frozenset(c for c in _UNIVERSE if rx.fullmatch(chr(c)))


def _fold(chars: Iterable[int]) -> frozenset[int]:
    out: set[int] = set()
    for c in chars:
        out.add(c)
        ch = chr(c)
        for variant in (ch.lower(), ch.upper()):
            if len(variant) == 1:
                out.add(ord(variant))
    return frozenset(out)


def _charset(op: object, av: object, icase: bool) -> frozenset[int] | None:
    """The characters one element takes, or None when it is not a single-character element."""
    if op is C.LITERAL:
        chars = frozenset({av})
    elif op is C.NOT_LITERAL:
        chars = _ANY - {av}
    elif op is C.ANY:
        chars = _ANY - {10}
    elif op is C.IN:
        chars_set: set[int] = set()
        negate = False
        for item_op, item_av in av:  # type: ignore[attr-defined]
            if item_op is C.NEGATE:
                negate = True
            elif item_op is C.LITERAL:
                chars_set.add(item_av)
            elif item_op is C.RANGE:
                lo, hi = item_av
                chars_set.update(c for c in _UNIVERSE if lo <= c <= hi)
            elif item_op is C.CATEGORY:
                chars_set.update(_category(item_av))
            else:
                raise ValueError(f"unsupported class item {item_op}")
        chars = frozenset(chars_set)
        if icase:
            chars = _fold(chars)
        return _ANY - chars if negate else chars
    else:
        return None
    return _fold(chars) if icase else chars


def _width(items: list, icase: bool) -> tuple[int, int | None]:
    """Minimum and maximum width of a sequence (None: unbounded)."""
    lo, hi = 0, 0
    for op, av in items:
        a, b = _element_width(op, av, icase)
        lo += a
        hi = None if hi is None or b is None else hi + b
    return lo, hi


def _element_width(op: object, av: object, icase: bool) -> tuple[int, int | None]:
    if _charset(op, av, icase) is not None:
        return 1, 1
    if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
        return 0, 0
    if op is C.SUBPATTERN:
        return _width(av[3], icase)  # type: ignore[index]
    if op is C.ATOMIC_GROUP:
        return _width(av, icase)  # type: ignore[arg-type]
    if op is C.BRANCH:
        widths = [_width(b, icase) for b in av[1]]  # type: ignore[index]
        his = [h for _, h in widths]
        return min(lo for lo, _ in widths), None if None in his else max(his)  # type: ignore[type-var]
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        lo, hi, body = av  # type: ignore[misc]
        blo, bhi = _width(body, icase)
        if hi is C.MAXREPEAT or bhi is None:
            return lo * blo, None
        return lo * blo, hi * bhi
    raise ValueError(f"unsupported element {op}")


class _Run:
    """An unbounded repeat found in a branch."""

    def __init__(self, chars: frozenset[int] | None, minimum: int, trailing: bool) -> None:
        self.chars = chars  # None: not a single-character class
        self.minimum = minimum
        self.trailing = trailing


def _walk(items: list, icase: bool, problems: list[str], runs: list[_Run], trailing: bool) -> None:
    for index, (op, av) in enumerate(items):
        last = trailing and index == len(items) - 1
        if op is C.SUBPATTERN:
            add, delete = av[1], av[2]
            inner = (icase or bool(add & re.IGNORECASE)) and not (delete & re.IGNORECASE)
            _walk(av[3], inner, problems, runs, last)
        elif op is C.ATOMIC_GROUP:
            _walk(av, icase, problems, runs, last)
        elif op is C.BRANCH:
            for branch in av[1]:
                _walk(branch, icase, problems, runs, last)
        elif op in (C.ASSERT, C.ASSERT_NOT):
            _walk(av[1], icase, problems, runs, False)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, body = av
            if (hi is C.MAXREPEAT or hi > 1) and any(
                e_op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
                and (e_av[1] is C.MAXREPEAT or e_av[1] > 1)
                for e_op, e_av in _flatten(body)
            ):
                problems.append("nested quantifier")
            chars = _charset(*body[0], icase) if len(body) == 1 else None
            if hi is C.MAXREPEAT:
                runs.append(_Run(chars, lo, last))
                if op is not C.POSSESSIVE_REPEAT:
                    rest = items[index + 1 :]
                    if chars is None or _width(rest, icase)[1] is None:
                        problems.append(
                            "an unbounded repeat that is not possessive gives text back to "
                            "something unbounded after it"
                        )
            else:
                _walk(body, icase, problems, runs, False)
        elif op in (C.GROUPREF, C.GROUPREF_EXISTS):
            problems.append("backreference")


def _flatten(items: list) -> Iterable[tuple[object, object]]:
    for op, av in items:
        yield op, av
        if op is C.SUBPATTERN:
            yield from _flatten(av[3])
        elif op is C.ATOMIC_GROUP:
            yield from _flatten(av)
        elif op is C.BRANCH:
            for branch in av[1]:
                yield from _flatten(branch)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            yield from _flatten(av[2])
        elif op in (C.ASSERT, C.ASSERT_NOT):
            yield from _flatten(av[1])


def _prefix(items: list, icase: bool) -> list[frozenset[int]]:
    """The character sets every match of the branch starts with, in order."""
    out: list[frozenset[int]] = []
    for op, av in items:
        chars = _charset(op, av, icase)
        if chars is not None:
            out.append(chars)
        elif op is C.AT:
            continue
        elif op is C.SUBPATTERN:
            add, delete = av[1], av[2]
            inner = (icase or bool(add & re.IGNORECASE)) and not (delete & re.IGNORECASE)
            sub = _prefix(av[3], inner)
            out.extend(sub)
            if _width(av[3], inner) != (len(sub), len(sub)):
                return out
        elif op is C.BRANCH:
            firsts = [_prefix(b, icase) for b in av[1]]
            if all(firsts):
                out.append(frozenset().union(*(f[0] for f in firsts)))
            return out
        elif op in (C.MAX_REPEAT, C.POSSESSIVE_REPEAT) and av[0] >= 1 and len(av[2]) == 1:
            first = _charset(*av[2][0], icase)
            if first is not None:
                out.append(first)
            return out
        else:
            return out
    return out


def problems(pattern: re.Pattern[str], *, anchored: bool) -> list[str]:
    """Why ``pattern`` may not run in linear time; empty when it is accepted."""
    icase = bool(pattern.flags & re.IGNORECASE)
    tree = P.parse(pattern.pattern, pattern.flags)
    items = list(tree)
    branches = items[0][1][1] if len(items) == 1 and items[0][0] is C.BRANCH else [items]
    found: list[str] = []
    for number, branch in enumerate(branches, 1):
        branch_problems: list[str] = []
        runs: list[_Run] = []
        _walk(branch, icase, branch_problems, runs, True)
        if not anchored:
            branch_problems.extend(_start_problems(branch, icase, runs))
        found.extend(f"branch {number}: {p}" for p in dict.fromkeys(branch_problems))
    return found


def _start_problems(branch: list, icase: bool, runs: list[_Run]) -> list[str]:
    checked = [r for r in runs if not (r.trailing and r.minimum <= 1)]
    if not checked:
        return []
    if any(r.chars is None for r in checked):
        return ["an unbounded repeat of more than one character"]
    first_op, first_av = branch[0]
    if first_op is C.ASSERT_NOT and first_av[0] == -1 and len(first_av[1]) == 1:
        blocked = _charset(*first_av[1][0], icase)
        if blocked is not None and all(r.chars <= blocked for r in checked):  # type: ignore[operator]
            return []
        return ["a run holds characters its start lookbehind lets an attempt start after"]
    prefix = _prefix(branch, icase)
    if not prefix:
        return ["no fixed start: an attempt at every position may rescan the same run"]
    for run in checked:
        if all(run.chars & chars for chars in prefix):  # type: ignore[operator]
            return ["a run can hold the branch's own start, so a failed attempt is rescanned"]
    return []
