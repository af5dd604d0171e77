"""gates/model: fingerprints are unique per finding and stable across unrelated edits."""

from __future__ import annotations

from safeship.gates.model import Finding, Tier, number_duplicates


def _finding(
    line: int, column: int, symbol: str = "Gone", text: str = "x = (Gone, Gone)"
) -> Finding:
    return Finding(
        gate="static",
        rule="F821",
        message=f"Undefined name `{symbol}`",
        tier=Tier.BREAKS_STARTUP,
        path="app/main.py",
        line=line,
        column=column,
        source_line=text,
        symbol=symbol,
        scope=None,
    )


def test_two_findings_on_one_line_get_two_fingerprints() -> None:
    numbered = number_duplicates([_finding(3, 10), _finding(3, 5)])
    assert [(f.column, f.occurrence) for f in numbered] == [(5, 0), (10, 1)]
    assert len({f.fingerprint for f in numbered}) == 2


def test_the_same_text_on_two_lines_gets_two_fingerprints() -> None:
    numbered = number_duplicates(
        [_finding(9, 5, text="print(Gone)"), _finding(4, 5, text="print(Gone)")]
    )
    assert [(f.line, f.occurrence) for f in numbered] == [(4, 0), (9, 1)]
    assert len({f.fingerprint for f in numbered}) == 2


def test_fingerprints_ignore_line_numbers_and_keep_the_first_occurrence_unchanged() -> None:
    alone = _finding(3, 5, symbol="Other", text="y = Other")
    moved = _finding(30, 5, symbol="Other", text="y = Other")
    assert alone.fingerprint == moved.fingerprint
    # Numbering leaves a finding without a twin as it was (baselines keep matching).
    assert number_duplicates([alone])[0].fingerprint == alone.fingerprint
