"""What each module runs, read from its AST: the edges of the startup call graph.

A *unit* is a module (its body, class bodies, decorators and default values: what runs when
it is imported) or a function (``shop.factory.create_app``, ``shop.models.User.__init__``).
For each unit this module lists what running it makes run (``core.triage.Edge``):

- ``import``: the modules it imports (``importlib.import_module("x")`` with a constant too);
- ``call``: the project functions and classes it calls, by dotted name; names bound by an
  import are resolved later, through ``aliases``;
- ``hook``: what the framework runs when the app starts: ``lifespan=``, ``on_startup=[...]``,
  ``@app.on_event("startup")``, ``add_event_handler("startup", f)``, safeship phases
  (``@ship.phase(...)``, ``Phase(name, fn)``).

Route handlers, dependencies and middleware are only *referenced* at startup; they run per
request, so referencing is no edge. What cannot be resolved statically -- a method called on
an object of unknown type, ``getattr(...)()``, ``import_module(name)`` -- is kept per unit as
``Dynamic`` sites, so a finding that may still run at startup can say why.
``core.triage.startup_reach`` walks the result.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from ...core.triage import Edge

__all__ = ["Dynamic", "ModuleUnits", "read_units", "skeleton"]

_HOOK_KEYWORDS = frozenset({"lifespan", "on_startup"})
_HOOK_DECORATORS = frozenset({"on_event", "phase"})
_IMPORT_FUNCTIONS = frozenset({"import_module", "__import__"})
_PROPERTY_DECORATORS = frozenset({"property", "cached_property"})


@dataclass(frozen=True)
class Dynamic:
    """A call site whose target is not known statically."""

    attribute: str | None
    """The method name of ``obj.name(...)``; None for ``getattr``/``import_module`` with a
    computed name, which may run anything."""
    line: int
    text: str


@dataclass
class ModuleUnits:
    module: str
    edges: dict[str, list[Edge]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    dynamic: dict[str, list[Dynamic]] = field(default_factory=dict)
    functions: dict[str, int] = field(default_factory=dict)
    """Function unit -> the line of its ``def``."""
    properties: set[str] = field(default_factory=set)
    """Function units that run on attribute access (``@property``, ``@cached_property``)."""
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    """(first line, last line, function unit) of each function body, outermost first."""
    pending: dict[str, Any] = field(default_factory=dict, repr=False)
    """Function bodies not read yet: a body is read when the walk reaches its function (or
    a finding sits in it), so the many functions that never run at startup cost nothing."""

    def edges_of(self, unit: str) -> list[Edge] | None:
        """The edges of ``unit``, reading its body first if needed; None when unknown."""
        if unit in self.pending:
            self.pending.pop(unit)()
        return self.edges.get(unit)

    def function_at(self, line: int) -> str | None:
        """The innermost function whose body holds ``line``."""
        while True:
            found = None
            for start, end, unit in self.spans:
                if start <= line <= end:
                    found = unit
            if found is None or found not in self.pending:
                return found
            self.pending.pop(found)()  # its nested functions become known


def read_units(
    module: str,
    is_package: bool,
    tree: ast.Module,
    lines: list[str],
    ends: dict[int, int] | None = None,
) -> ModuleUnits:
    """The units of one module and their edges.

    No AST is kept: a function body is read again from its source when the walk reaches it
    (thousands of live ASTs would make every garbage collection slower).
    """
    out = ModuleUnits(module)
    package = module if is_package else module.rpartition(".")[0]
    reader = _Reader(out, package, lines)
    reader.ends = ends or {}
    reader.module(tree)
    reader.lines = []  # kept as one string until a body is read
    return out


@dataclass
class _Scope:
    unit: str
    qualname: str
    """The dotted prefix of definitions made here: the module, ``mod.Class``, ``mod.f``."""
    names: dict[str, str]
    """Local bindings: name -> dotted target."""
    cls: str | None = None
    """For a method: the dotted name of its class (``self.x()`` -> ``Class.x``)."""


class _Reader:
    def __init__(self, out: ModuleUnits, package: str, lines: list[str]) -> None:
        self.out = out
        self.package = package
        self.lines = lines
        self.text = "\n".join(lines)
        self.module_names: dict[str, str] = {}
        self.split: list[str] = []
        """The module's lines, once a function body has been read."""
        self.ends: dict[int, int] = {}
        """``def`` line -> last body line, when ``tree`` is a skeleton (bodies elided)."""

    # -- scopes -------------------------------------------------------------------------

    def module(self, tree: ast.Module) -> None:
        unit = self.out.module
        self.out.edges[unit] = []
        # Top-level definitions and imports bind names for every scope: functions run
        # after the module body, so a name bound anywhere at top level is visible there.
        self._bind_all(tree.body, unit, self.module_names, top=True)
        scope = _Scope(unit, unit, self.module_names)
        self._bind_instances(tree.body, scope)
        self._body(tree.body, scope)

    def _bind_instances(self, body: list[ast.stmt], scope: _Scope) -> None:
        """``settings = Settings()`` at top level: ``settings.oauth`` and ``settings.load()``
        are looked up on ``Settings`` (what calling it returns, for a factory)."""
        for node in body:
            if (
                isinstance(node, (ast.Assign, ast.AnnAssign))
                and isinstance(node.value, ast.Call)
                and len(targets := node.targets if isinstance(node, ast.Assign) else [node.target])
                == 1
                and isinstance(targets[0], ast.Name)
                and targets[0].id not in scope.names
            ):
                made = self._resolve(node.value.func, scope)
                if made is not None:
                    scope.names[targets[0].id] = made
                    self.out.aliases[f"{self.out.module}.{targets[0].id}"] = made

    def _bind_all(
        self, body: list[ast.stmt], qualname: str, names: dict[str, str], top: bool
    ) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names[node.name] = f"{qualname}.{node.name}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for local, target in self._import_bindings(node):
                    names[local] = target
                    if top:
                        self.out.aliases[f"{self.out.module}.{local}"] = target
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                nested = [*node.body, *getattr(node, "orelse", [])]
                for handler in getattr(node, "handlers", []):
                    nested += handler.body
                self._bind_all(nested, qualname, names, top)

    def _body(self, body: list[ast.stmt], scope: _Scope) -> None:
        for node in body:
            self._statement(node, scope)

    def _statement(self, node: ast.stmt, scope: _Scope) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._function(node, scope)
        elif isinstance(node, ast.ClassDef):
            self._class(node, scope)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in self._imported_modules(node):
                self._edge(scope, Edge(target, "import", node.lineno, self._text(node)))
        elif isinstance(node, ast.If) and _never_runs(node.test):
            self._body(node.orelse, scope)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._statement(child, scope)
                elif isinstance(child, ast.expr):
                    self._expression(child, scope, node)
                else:  # excepthandler, match_case, withitem...
                    self._generic(child, scope, node)

    def _generic(self, node: ast.AST, scope: _Scope, statement: ast.stmt) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self._statement(child, scope)
            elif isinstance(child, ast.expr):
                self._expression(child, scope, statement)
            else:
                self._generic(child, scope, statement)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: _Scope) -> None:
        unit = f"{scope.qualname}.{node.name}"
        # Decorators and default values run where the function is defined.
        for decorator in node.decorator_list:
            self._decorator(decorator, unit, scope, node)
        for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
            self._expression(default, scope, node)
        self.out.edges.setdefault(unit, [])
        self.out.functions[unit] = node.lineno
        if any(_call_name(d) in _PROPERTY_DECORATORS for d in node.decorator_list):
            self.out.properties.add(unit)
        end = self.ends.get(node.lineno) or node.end_lineno or node.lineno
        self.out.spans.append((node.body[0].lineno if node.body else node.lineno, end, unit))
        start, name = node.lineno, node.name
        self.out.pending[unit] = lambda: self._read_body(start, end, name, scope, unit)

    def _read_body(self, start: int, end: int, name: str, scope: _Scope, unit: str) -> None:
        """Parse the function's own lines again (dedented), else the whole module."""
        if not self.split:
            self.split = self.text.splitlines()
        lines = self.split
        node: ast.FunctionDef | ast.AsyncFunctionDef | None = None
        try:
            # Blank lines in front keep the line numbers (cheaper than renumbering).
            code = "\n" * (start - 1) + textwrap.dedent("\n".join(lines[start - 1 : end]))
            segment = ast.parse(code)
            first = segment.body[0] if segment.body else None
            if isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef)) and first.name == name:
                node = first
        except (SyntaxError, ValueError, RecursionError):
            node = None
        if node is None:  # a string whose lines sit left of the def: parse the module
            try:
                whole = ast.parse(self.text)
            except (SyntaxError, ValueError, RecursionError):
                return
            node = next(
                (
                    n
                    for n in ast.walk(whole)
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.lineno == start
                    and n.name == name
                ),
                None,
            )
            if node is None:
                return
        self.lines = lines
        try:
            self._function_body(node, scope, unit)
        finally:
            self.lines = []

    def _function_body(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: _Scope, unit: str
    ) -> None:
        names = dict(scope.names)
        self._bind_all(node.body, unit, names, top=False)
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            names.pop(arg.arg, None)  # a parameter shadows a global of the same name
        cls = scope.qualname if scope.cls == "<class>" else None
        self._body(node.body, _Scope(unit, unit, names, cls))

    def _class(self, node: ast.ClassDef, scope: _Scope) -> None:
        for decorator in node.decorator_list:
            self._expression(decorator, scope, node)
        for base in [*node.bases, *(k.value for k in node.keywords)]:
            self._expression(base, scope, node)
        qualname = f"{scope.qualname}.{node.name}"
        names = dict(scope.names)
        # The class body runs in the unit that defines the class; its methods are units.
        self._body(node.body, _Scope(scope.unit, qualname, names, "<class>"))

    def _decorator(self, decorator: ast.expr, function: str, scope: _Scope, node: ast.stmt) -> None:
        call = decorator if isinstance(decorator, ast.Call) else None
        func = call.func if call else decorator
        attr = func.attr if isinstance(func, ast.Attribute) else None
        if attr in _HOOK_DECORATORS and call is not None and _startup_event(call, attr):
            self._edge(scope, Edge(function, "hook", decorator.lineno, self._text(node)))
        self._expression(decorator, scope, node)
        if call is None:  # @decorate: the decorator itself is called with the function
            target = self._resolve(decorator, scope)
            if target is not None:
                self._edge(scope, Edge(target, "call", decorator.lineno, self._text(node)))

    # -- expressions ----------------------------------------------------------------------

    def _expression(self, node: ast.expr, scope: _Scope, statement: ast.stmt) -> None:
        """Record the calls an expression makes; lambdas and comprehensions' own scopes
        are entered (a lambda's body runs only when called: skipped)."""
        stack: list[ast.AST] = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, ast.Lambda):
                stack.extend(d for d in current.args.defaults if d)
                continue
            if isinstance(current, ast.Call):
                self._call(current, scope, statement)
                stack.extend(ast.iter_child_nodes(current.func))  # not itself an attribute load
                stack.extend([*current.args, *(k.value for k in current.keywords)])
                continue
            if isinstance(current, ast.Attribute) and isinstance(current.ctx, ast.Load):
                # ``settings.oauth``: runs a property, when that is what it names.
                target = self._resolve(current, scope)
                if target is not None:
                    self._edge(
                        scope, Edge(target, "attribute", current.lineno, self._text(statement))
                    )
            stack.extend(ast.iter_child_nodes(current))

    def _call(self, call: ast.Call, scope: _Scope, statement: ast.stmt) -> None:
        line, text = call.lineno, self._text(statement)
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        for keyword in call.keywords:
            if keyword.arg in _HOOK_KEYWORDS:
                values = (
                    keyword.value.elts
                    if isinstance(keyword.value, (ast.List, ast.Tuple))
                    else [keyword.value]
                )
                for value in values:
                    self._hook(value, scope, line, text)
        if name == "add_event_handler" and _first_string(call) == "startup" and len(call.args) > 1:
            self._hook(call.args[1], scope, line, text)
        if name == "Phase":
            fn = call.args[1] if len(call.args) > 1 else _keyword(call, "fn")
            if fn is not None:
                self._hook(fn, scope, line, text)
        if name in _IMPORT_FUNCTIONS:
            module = _first_string(call)
            if module is not None and not module.startswith("."):
                self._edge(scope, Edge(module, "import", line, text))
            else:
                self._dynamic(scope, Dynamic(None, line, text))
            return
        if name == "getattr" and isinstance(func, ast.Name):
            return  # the attribute is fetched, not called: see the Call around it
        if isinstance(func, ast.Call) and getattr(func.func, "id", None) == "getattr":
            self._dynamic(scope, Dynamic(_string(func.args[1:2]), line, text))
            return
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Call)
            and getattr(func.value.func, "id", None) == "super"
        ):
            return  # super().__init__(): a base class's method, not followed
        target = self._resolve(func, scope)
        if target is not None:
            self._edge(scope, Edge(target, "call", line, text))
        elif isinstance(func, ast.Attribute):
            self._dynamic(scope, Dynamic(func.attr, line, text))

    def _hook(self, value: ast.expr, scope: _Scope, line: int, text: str) -> None:
        target = self._resolve(value, scope)
        if target is not None:
            self._edge(scope, Edge(target, "hook", line, text))
        elif isinstance(value, ast.Call):
            # lifespan=make_lifespan(settings): the factory runs now, its result at startup.
            inner = self._resolve(value.func, scope)
            if inner is not None:
                self._edge(scope, Edge(inner, "call", line, text))

    def _resolve(self, node: ast.expr, scope: _Scope) -> str | None:
        """The dotted name of a called expression, or None when it is not a project name
        we can follow (a builtin, a local variable, a call result)."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.reverse()
        root = node.id
        if root in ("self", "cls") and scope.cls not in (None, "<class>") and parts:
            return f"{scope.cls}.{'.'.join(parts)}"
        base = scope.names.get(root)
        if base is None:
            return None
        return ".".join([base, *parts])

    # -- imports --------------------------------------------------------------------------

    def _absolute(self, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        parts = self.package.split(".") if self.package else []
        if node.level - 1 > len(parts):
            return None
        base = parts[: len(parts) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])]) or None

    def _import_bindings(self, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str]]:
        out = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out.append((alias.asname, alias.name))
                else:
                    top = alias.name.split(".")[0]
                    out.append((top, top))
            return out
        base = self._absolute(node)
        if base is None or base == "__future__":
            return []
        for alias in node.names:
            if alias.name != "*":
                out.append((alias.asname or alias.name, f"{base}.{alias.name}"))
        return out

    def _imported_modules(self, node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = self._absolute(node)
        if base is None or base == "__future__":
            return []
        # ``from pkg import mod`` imports pkg.mod when it is a module (the reach filters).
        return [base, *(f"{base}.{a.name}" for a in node.names if a.name != "*")]

    # -- recording -----------------------------------------------------------------------

    def _edge(self, scope: _Scope, edge: Edge) -> None:
        self.out.edges.setdefault(scope.unit, []).append(edge)

    def _dynamic(self, scope: _Scope, site: Dynamic) -> None:
        self.out.dynamic.setdefault(scope.unit, []).append(site)

    def _text(self, node: ast.AST) -> str:
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return text if len(text) <= 80 else text[:77] + "..."


def _never_runs(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` and ``if __name__ == "__main__":`` bodies never run on import."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _startup_event(call: ast.Call, attr: str | None) -> bool:
    """``on_event("startup")`` (not "shutdown"); every safeship ``phase(...)``."""
    return attr == "phase" or _first_string(call) == "startup"


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _first_string(call: ast.Call) -> str | None:
    return _string(call.args[:1])


def _string(nodes: list[ast.expr]) -> str | None:
    if nodes and isinstance(nodes[0], ast.Constant) and isinstance(nodes[0].value, str):
        return nodes[0].value
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]")


def skeleton(text: str) -> tuple[str, dict[int, int]] | None:
    """``text`` with every function body elided (``...`` on its first line, the rest blank,
    so line numbers hold), and each ``def`` line's last body line.

    Parsing the skeleton costs a fraction of the whole module, and the walk reads a body
    only when it reaches the function. Read from indentation, not tokens: anything unusual
    (a string in a ``def`` header, a body line left of its ``def``) returns None, or makes
    the skeleton fail to parse, and the caller parses the whole text instead.
    """
    lines = text.split("\n")
    out = list(lines)
    ends: dict[int, int] = {}
    i, n = 0, len(lines)
    while i < n:
        match = _DEF.match(lines[i])
        if match is None:
            i += 1
            continue
        indent = len(match.group(1))
        header = _header_end(lines, i)
        if header is None:
            return None
        row, col = header
        if lines[row][col + 1 :].split("#", 1)[0].strip():  # def f(): return x
            i = row + 1
            continue
        last, k = row, row + 1
        while k < n:
            line = lines[k]
            body = line.lstrip(" \t")
            if body and body[0] != "#":
                if len(line) - len(body) <= indent:
                    break
                last = k
            k += 1
        if last == row:
            return None  # a def without a body: not Python we can elide
        out[row + 1] = " " * (indent + 4) + "..."
        for t in range(row + 2, last + 1):
            out[t] = ""
        ends[i + 1] = last + 1
        i = last + 1
    return "\n".join(out), ends


def _header_end(lines: list[str], start: int) -> tuple[int, int] | None:
    """(row, column) of the colon that ends the ``def`` header starting at ``start``."""
    first = lines[start].rstrip()
    # Most headers are one plain line: ``def f(x: int) -> str:``.
    if (
        first.endswith(":")
        and "#" not in first
        and "'" not in first
        and '"' not in first
        and first.count("(") == first.count(")")
        and first.count("[") == first.count("]")
        and first.count("{") == first.count("}")
    ):
        return start, len(first) - 1
    depth = 0
    for row in range(start, min(start + 60, len(lines))):
        line = lines[row]
        col = 0
        while col < len(line):
            char = line[col]
            if char == "#":
                break
            if char in "\"'":
                if line.startswith(char * 3, col):
                    return None
                close = line.find(char, col + 1)
                while close > 0 and line[close - 1] == "\\":
                    close = line.find(char, close + 1)
                if close < 0:
                    return None
                col = close + 1
                continue
            if char in "([{":
                depth += 1
            elif char in ")]}":
                depth -= 1
            elif char == ":" and depth == 0:
                return row, col
            col += 1
    return None
