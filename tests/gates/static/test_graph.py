from __future__ import annotations

import textwrap

from safeship.gates.static.graph import ImportGraph, ModuleMap, Reach, import_sites, render_chain


def test_module_map_names_and_candidates() -> None:
    modules = ModuleMap(("src", ""))
    assert modules.module_of("src/pkg/a.py") == "pkg.a"
    assert modules.module_of("src/pkg/__init__.py") == "pkg"
    assert modules.module_of("scripts/tool.py") == "scripts.tool"
    assert modules.module_of("README.md") is None
    # A package wins over a module of the same name, as on import.
    assert modules.candidates("pkg.a") == [
        "src/pkg/a/__init__.py",
        "src/pkg/a.py",
        "pkg/a/__init__.py",
        "pkg/a.py",
    ]
    assert modules.top_level_names(["src/pkg/a.py", "scripts/tool.py", "x.txt"]) == {
        "pkg",
        "scripts",
    }


def _graph(edges: dict[str, list[str]]) -> ImportGraph:
    return ImportGraph(edges, ModuleMap(("",)))


def test_package_inits_are_implicit_dependencies() -> None:
    graph = _graph(
        {
            "pkg/__init__.py": [],
            "pkg/main.py": ["pkg/sub/leaf.py"],
            "pkg/sub/__init__.py": [],
            "pkg/sub/leaf.py": [],
            "pkg/ns/mod.py": [],  # namespace package: no pkg/ns/__init__.py
        }
    )
    assert "pkg/sub/__init__.py" in graph.edges["pkg/sub/leaf.py"]
    assert "pkg/__init__.py" in graph.edges["pkg/sub/__init__.py"]
    assert "pkg/__init__.py" in graph.edges["pkg/ns/mod.py"]
    assert graph.edges["pkg/__init__.py"] == []
    reach = graph.reach(["pkg/main.py"])
    assert set(reach.parents) == {
        "pkg/main.py",
        "pkg/__init__.py",
        "pkg/sub/leaf.py",
        "pkg/sub/__init__.py",
    }


def test_bfs_keeps_one_shortest_chain_and_handles_cycles() -> None:
    graph = _graph(
        {
            "main.py": ["a.py", "b.py"],
            "a.py": ["c.py"],
            "b.py": ["a.py", "d.py"],
            "c.py": ["d.py", "main.py"],
            "d.py": [],
            "island.py": ["d.py"],
        }
    )
    reach = graph.reach(["main.py"])
    assert reach.chain("d.py") == ["main.py", "b.py", "d.py"]
    assert reach.chain("c.py") == ["main.py", "a.py", "c.py"]
    assert reach.chain("main.py") == ["main.py"]
    assert reach.chain("island.py") == []
    assert not reach.is_reachable("island.py")
    assert reach.is_reachable("c.py")


def test_resolve_entries() -> None:
    graph = ImportGraph({"src/app/main.py": [], "src/app/__init__.py": []}, ModuleMap(("src", "")))
    assert graph.resolve_entries(["app.main", "app", "app.nope"]) == (
        ["src/app/main.py", "src/app/__init__.py"],
        ["app.nope"],
    )


def test_unknown_reachability_counts_everything() -> None:
    reach = Reach(complete=False)
    assert reach.is_reachable("anything.py")
    assert reach.chain("anything.py") == []


def test_import_sites_marks_lazy_imports() -> None:
    source = textwrap.dedent(
        """
        import importlib
        import pkg.eager
        from pkg import both
        from . import sibling
        from .sub import leaf

        def _register():
            from pkg.agents import goals
            from pkg import both
            importlib.import_module("pkg.plugins.x")

        class Loader:
            import pkg.in_class_body

            def load(self):
                import pkg.late

        try:
            import pkg.optional as opt, pkg.other  # a comment
        except ImportError:
            opt = None

        def deferred():
            from pkg.many import (
                first,
                second as two,
            )
        """
    )
    sites = import_sites(source, "pkg.main", is_package=False)
    assert sites["pkg.eager"] is None
    assert sites["pkg.both"] is None  # top level wins
    assert sites["pkg.sibling"] is None
    assert sites["pkg.sub.leaf"] is None
    assert sites["pkg.agents.goals"] == "_register"
    assert sites["pkg.plugins.x"] == "_register"
    assert sites["pkg.late"] == "Loader.load"
    assert sites["pkg.in_class_body"] is None  # a class body runs at import
    assert sites["pkg.optional"] is None and sites["pkg.other"] is None
    assert sites["pkg.many.first"] == "deferred" and sites["pkg.many.second"] == "deferred"


def test_import_sites_relative_in_package_and_bad_source() -> None:
    sites = import_sites("from . import a\nfrom .. import up\n", "pkg.sub", is_package=True)
    assert sites["pkg.sub.a"] is None
    assert sites["pkg.up"] is None
    assert import_sites("def f(:\n", "m", is_package=False) == {}


def test_render_chain_with_lazy_edge() -> None:
    modules = ModuleMap(("",))
    sources = {
        "app/main.py": "from app import agent_class_initialization\n",
        "app/agent_class_initialization.py": (
            "def _register_auxiliary_agents():\n    from app.agents import goals_triage_sub_agent\n"
        ),
    }

    def sites_of(path: str) -> dict[str, str | None]:
        module = modules.module_of(path) or ""
        return import_sites(sources[path], module, path.endswith("__init__.py"))

    chain = render_chain(
        [
            "app/main.py",
            "app/agent_class_initialization.py",
            "app/agents/goals_triage_sub_agent.py",
        ],
        modules,
        sites_of,
        119,
    )
    assert " → ".join(chain) == (
        "app.main → app.agent_class_initialization (inside _register_auxiliary_agents)"
        " → app.agents.goals_triage_sub_agent:119"
    )
    assert render_chain(["app/main.py"], modules, sites_of, 3) == ("app.main:3",)
