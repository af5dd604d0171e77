from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from safeship.gates.static import engines
from safeship.gates.static.engines import EngineSpec, find_binary, parse_graph, parse_ruff, parse_ty

FIXTURE = Path(__file__).parents[2] / "fixtures" / "static" / "project"
ROOT = Path("/project")

RUFF_OUTPUT = [
    {
        "code": "F821",
        "filename": "/project/pkg/main.py",
        "location": {"column": 5, "row": 12},
        "message": "Undefined name `Undef1`",
    },
    {
        "code": "TID251",
        "filename": "/project/pkg/main.py",
        "location": {"column": 20, "row": 4},
        "message": "`pkg.db.DatabaseSessionManager` is banned: use pkg.db.SessionManager",
    },
    {
        "code": "invalid-syntax",
        "filename": "/project/pkg/bad.py",
        "location": {"column": 7, "row": 2},
        "message": "Expected a parameter or the end of the parameter list",
    },
    {
        "code": None,
        "filename": "/project/pkg/bad.py",
        "location": {"column": 1, "row": 3},
        "message": "unexpected EOF while parsing",
    },
    {
        "code": "F822",
        "filename": "/elsewhere/x.py",
        "location": {"column": 12, "row": 3},
        "message": "Undefined name `Heavy` in `__all__`",
    },
]


def _ty_item(rule: str, message: str, path: str, line: int, column: int) -> dict[str, object]:
    return {
        "check_name": rule,
        "description": f"{rule}: {message}",
        "severity": "major",
        "fingerprint": "0",
        "location": {
            "path": path,
            "positions": {"begin": {"line": line, "column": column}, "end": {"line": line}},
        },
    }


TY_OUTPUT = [
    _ty_item("import-not-found", "Module `pkg.db` has no member `Missing`", "pkg/main.py", 3, 20),
    _ty_item("import-not-found", "Cannot resolve imported module `requests`", "pkg/main.py", 5, 8),
    _ty_item("missing-attribute", "Module `pkg.util` has no member `nope`", "pkg/main.py", 10, 12),
    _ty_item("missing-attribute", "Class `Color` has no attribute `PURPLE`", "pkg/a.py", 10, 23),
    _ty_item("missing-attribute", "Object of type `Foo` has no attribute `bar`", "pkg/a.py", 11, 1),
    _ty_item("invalid-syntax", "unexpected EOF while parsing", "pkg/bad.py", 3, 1),
]


def test_parse_ruff() -> None:
    diags = parse_ruff(json.dumps(RUFF_OUTPUT), ROOT)
    assert [(d.rule, d.path, d.line, d.column, d.symbol) for d in diags] == [
        ("F821", "pkg/main.py", 12, 5, "Undef1"),
        ("TID251", "pkg/main.py", 4, 20, "pkg.db.DatabaseSessionManager"),
        # One syntax error per file: the first is the one to fix.
        ("invalid-syntax", "pkg/bad.py", 2, 7, None),
        ("F822", "/elsewhere/x.py", 3, 12, "Heavy"),
    ]
    assert parse_ruff("", ROOT) == []


def test_parse_ty() -> None:
    diags = parse_ty(json.dumps(TY_OUTPUT), ROOT)
    assert [(d.rule, d.symbol, d.owner, d.owner_kind) for d in diags] == [
        ("ty:import-not-found", "Missing", "pkg.db", "module"),
        ("ty:import-not-found", "requests", "requests", "import"),
        ("ty:missing-attribute", "nope", "pkg.util", "module"),
        ("ty:missing-attribute", "PURPLE", "Color", "class"),
        ("ty:missing-attribute", "bar", "Foo", "object"),
    ]
    assert diags[0].message == "Module `pkg.db` has no member `Missing`"
    assert (diags[3].path, diags[3].line, diags[3].column) == ("pkg/a.py", 10, 23)


def test_parse_graph() -> None:
    out = parse_graph(json.dumps({"/project/a.py": ["/project/b.py"], "b.py": []}), ROOT)
    assert out == {"a.py": ["b.py"], "b.py": []}


@pytest.mark.parametrize(
    ("parse", "text"),
    [(parse_ruff, "not json"), (parse_ruff, "{}"), (parse_ty, "[1]"), (parse_graph, "[]")],
)
def test_parsers_reject_unexpected_output(parse: object, text: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        parse(text, ROOT)  # type: ignore[operator]


def test_commands() -> None:
    ruff = engines.ruff_command(["."], {"pkg.Old": "pkg.New"}, ["archive/*"])
    assert ruff[:2] == ("check", "--isolated")
    assert "F821,F822,F823,TID251" in ruff
    assert 'lint.flake8-tidy-imports.banned-api."pkg.Old".msg = "use pkg.New"' in ruff
    assert ruff[-2:] == ("--", ".")
    assert "F821,F822,F823" in engines.ruff_command(["."], {})
    version = ruff[ruff.index("--target-version") + 1]
    assert version == f"py3{sys.version_info.minor}"
    ty = engines.ty_command(["."], ["/p/src", "/p"])
    assert ty[ty.index("--output-format") + 1] == "gitlab"
    assert 'environment.root = ["/p/src", "/p"]' in ty
    assert ty[ty.index("--python") + 1] == sys.prefix
    assert "--python" not in engines.ty_command(["."], ["/p"], python=None)
    graph = engines.graph_command(["."], ["/p"])
    assert "--detect-string-imports" in graph and "--no-type-checking-imports" in graph


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_find_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _script(tmp_path, "ruff", "print('ruff 9.9.9')")
    assert find_binary("ruff", fake) == fake
    assert find_binary("ruff", tmp_path / "missing") is None
    monkeypatch.setenv("SAFESHIP_TY", str(tmp_path / "nope"))
    assert find_binary("ty") is None
    monkeypatch.delenv("SAFESHIP_TY")
    assert find_binary("ty") is not None  # the venv's


def test_failures_come_back_as_data(tmp_path: Path) -> None:
    crash = _script(tmp_path, "crash", "sys.stderr.write('panicked at parser\\n'); sys.exit(2)")
    hang = _script(tmp_path, "hang", "time.sleep(60)")
    garbage = _script(tmp_path, "garbage", "print('<html>')")
    good = _script(tmp_path, "good", "print('[]' if '--version' not in sys.argv else 'good 1.2.3')")
    specs = [
        EngineSpec("missing", "ruff", None, (), parse_ruff),
        EngineSpec("crash", "ruff", crash, (), parse_ruff),
        EngineSpec("hang", "ruff", hang, (), parse_ruff),
        EngineSpec("garbage", "ruff", garbage, (), parse_ruff),
        EngineSpec("good", "ruff", good, (), parse_ruff),
    ]
    runs = engines.run_engines(specs, tmp_path, timeout=1.0)
    assert runs["missing"].status == "missing" and "pip install ruff" in (
        runs["missing"].error or ""
    )
    assert runs["crash"].status == "crashed" and "panicked at parser" in (runs["crash"].error or "")
    assert "code 2" in (runs["crash"].error or "")
    assert runs["hang"].status == "timeout" and "SAFESHIP_STATIC_TIMEOUT" in (
        runs["hang"].error or ""
    )
    assert runs["garbage"].status == "bad-output"
    assert runs["good"].ok and runs["good"].version == "1.2.3" and runs["good"].diagnostics == []
    assert runs["good"].as_dict()["status"] == "ok"


def _real_specs() -> list[EngineSpec]:
    roots = [str(FIXTURE)]
    legacy = {"agentsvc.db.DatabaseSessionManager": "agentsvc.db.SessionManager"}
    ruff, ty = find_binary("ruff"), find_binary("ty")
    return [
        EngineSpec("ruff", "ruff", ruff, engines.ruff_command(["."], legacy), parse_ruff),
        EngineSpec("ty", "ty", ty, engines.ty_command(["."], roots), parse_ty),
        EngineSpec("graph", "ruff", ruff, engines.graph_command(["."], roots), parse_graph),
    ]


def test_real_engines_on_the_fixture() -> None:
    runs = engines.run_engines(_real_specs(), FIXTURE, timeout=60)
    assert all(run.ok for run in runs.values()), {n: r.error for n, r in runs.items()}
    assert runs["ruff"].version and runs["ty"].version == "0.0.104"
    ruff = {(d.rule, d.path, d.symbol) for d in runs["ruff"].diagnostics}
    assert ("F821", "agentsvc/agents/goals_triage_sub_agent.py", "DatabaseSessionManager") in ruff
    assert ("invalid-syntax", "agentsvc/plugins/broken_plugin.py", None) in ruff
    assert ("TID251", "agentsvc/reports.py", "agentsvc.db.DatabaseSessionManager") in ruff
    assert ("F823", "agentsvc/settings.py", "counter") in ruff
    ty = {(d.rule, d.path, d.symbol) for d in runs["ty"].diagnostics}
    assert ("ty:import-not-found", "agentsvc/reports.py", "DatabaseSessionManager") in ty
    assert ("ty:missing-attribute", "agentsvc/reports.py", "ARCHIVED") in ty
    assert ("ty:missing-attribute", "agentsvc/reports.py", "SESSION_TIMEOUT") in ty
    # ty understands module __getattr__ itself: importing LazyThing is not a finding.
    assert not any(d.symbol == "LazyThing" for d in runs["ty"].diagnostics)
    graph = runs["graph"].graph
    # Imports inside functions are edges too, TYPE_CHECKING imports are not.
    assert (
        "agentsvc/agents/goals_triage_sub_agent.py"
        in graph["agentsvc/agent_class_initialization.py"]
    )
    assert "agentsvc/unused_jobs.py" not in {t for ts in graph.values() for t in ts}


def test_engines_run_concurrently(tmp_path: Path) -> None:
    # Two engines that each wait for the other to have started: they finish only if they
    # run at the same time (sequentially, the first would time out).
    body = (
        "import pathlib\n"
        "me, other = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
        "me.touch()\n"
        "deadline = time.monotonic() + 20\n"
        "while not other.exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print('[]' if other.exists() else 'late')\n"
    )
    script = _script(tmp_path, "engine", body)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    specs = [
        EngineSpec("one", "ruff", script, (a, b), parse_ruff),
        EngineSpec("two", "ruff", script, (b, a), parse_ruff),
    ]
    runs = engines.run_engines(specs, tmp_path, timeout=30)
    assert runs["one"].ok and runs["two"].ok, {n: r.error for n, r in runs.items()}


def test_environment_override_is_executable_check(tmp_path: Path) -> None:
    plain = tmp_path / "ruff"
    plain.write_text("not executable")
    os.chmod(plain, 0o644)
    assert find_binary("ruff", plain) is None
