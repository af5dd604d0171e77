from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from safeship.errors import GateError
from safeship.gates.baseline import (
    SCHEMA,
    Baseline,
    apply_baseline,
    load_baseline,
    statement_rows,
    statement_starts,
    text_scope,
    write_baseline,
)
from safeship.gates.model import Finding, Tier


def _finding(line: int, symbol: str = "Name", source: str = "x = Name") -> Finding:
    return Finding(
        gate="static",
        rule="F821",
        message=f"Undefined name `{symbol}`",
        tier=Tier.BREAKS_STARTUP,
        path="pkg/mod.py",
        line=line,
        source_line=source,
        symbol=symbol,
        scope="Runner.run",
        blocking=True,
    )


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "baseline.json"
    written = write_baseline(path, [_finding(3), _finding(9, "Other", "y = Other")])
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert data["fingerprints"][_finding(3).fingerprint] == {
        "path": "pkg/mod.py",
        "rule": "F821",
        "symbol": "Name",
    }
    loaded = load_baseline(path)
    assert loaded.fingerprints == written.fingerprints and len(loaded) == 2
    assert not list(tmp_path.glob("nested/.baseline.json.*"))  # no temporary file left


def test_apply_survives_line_shifts_and_flags_new_findings() -> None:
    baseline = Baseline.from_findings([_finding(3)])
    marked = apply_baseline([_finding(40), _finding(41, "Fresh", "z = Fresh")], baseline)
    assert marked[0].in_baseline and not marked[0].blocking
    assert not marked[1].in_baseline and marked[1].blocking


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GateError, match="does not exist") as info:
        load_baseline(tmp_path / "none.json")
    assert "--write-baseline" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"schema": "other/1", "fingerprints": {}}', "expected schema 'safeship.baseline/1'"),
        ("[]", "not a safeship baseline"),
        ('{"schema": "safeship.baseline/1", "fingerprints": []}', "'fingerprints' must be"),
        ('{"schema": "safeship.baseline/1", "fingerprints": {"ab": 1}}', "'fingerprints' must be"),
    ],
)
def test_invalid_files_name_the_file(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(GateError) as info:
        load_baseline(path)
    assert str(path) in info.value.message and words in info.value.message


def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GateError, match="cannot write baseline"):
        write_baseline(blocker / "baseline.json", [_finding(1)])


def test_text_scope() -> None:
    lines = textwrap.dedent(
        """
        class Runner:
            limit = 3

            def run(
                self,
                db: X,
            ) -> None:
                value = 1
        # a comment at column 0 does not end the method

                async def inner():
                    return X

        def top():
            return X
        """
    ).splitlines()

    def at(text: str) -> str | None:
        return text_scope(lines, next(i for i, t in enumerate(lines, 1) if t.strip() == text))

    assert at("limit = 3") == "Runner"
    assert at("db: X,") == "Runner.run"
    assert at(") -> None:") == "Runner.run"
    assert at("value = 1") == "Runner.run"
    assert at("return X") == "Runner.run.inner"
    assert at("def top():") == "top"
    assert at("class Runner:") == "Runner"
    assert text_scope(lines, 0) is None and text_scope(lines, 999) is None


def test_statement_rows() -> None:
    lines = textwrap.dedent(
        """
        import os
        @decorate
        class Big(Base):
            field: int = 1

            @property
            def value(self):
                return 1
        if True:
            x = 1
        else:
            x = 2
        """
    ).splitlines()
    starts = statement_starts(lines)
    assert [lines[r] for r in starts] == ["import os", "@decorate", "class Big(Base):", "if True:"]
    row = {text.strip(): i + 1 for i, text in enumerate(lines) if text.strip()}
    assert statement_rows(lines, row["import os"], starts) == (1,)
    # A member of a top-level class: the class header (with its decorator) and that member.
    assert statement_rows(lines, row["return 1"], starts) == (2, 3, 6, 7, 8)
    assert statement_rows(lines, row["field: int = 1"], starts) == (2, 3, 4, 5)
    # else belongs to the if above it.
    assert statement_rows(lines, row["x = 2"], starts) == (9, 10, 11, 12)
