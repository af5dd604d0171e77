"""Where in a module a finding's name is evaluated, from the module's AST.

A finding is located by descending from the top-level statement that holds it (parsed once,
alone) to the innermost node at its position, collecting the facts ``core.triage`` decides on:
module level or function body, class body, decorator, default value, annotation (unquoted,
quoted, deferred by ``from __future__ import annotations``, or evaluated by FastAPI/pydantic),
``if TYPE_CHECKING:``, ``try``/``except ImportError``...
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ...core.triage import AnnotationKind, Facts, Where
from ..baseline import statement_rows, statement_starts
from .graph import name_origin

__all__ = ["FileContext"]

ROUTE_DECORATORS = frozenset(
    {"get", "post", "put", "delete", "patch", "head", "options", "trace", "websocket", "api_route"}
)
MODEL_BASES = frozenset({"BaseModel", "BaseSettings", "RootModel", "SQLModel"})
SQLALCHEMY_BASES = frozenset(
    {"DeclarativeBase", "DeclarativeBaseNoMeta", "Base", "MappedAsDataclass"}
)
IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


@dataclass
class _State:
    scope: tuple[str, ...] = ()
    scope_kind: str = "module"  # module | class | function
    where: Where = Where.MODULE
    in_function: bool = False
    function: str | None = None
    annotation: bool = False
    local_annotation: bool = False
    quoted: bool = False
    evaluated_by: str | None = None
    type_checking: bool = False
    guarded_import: bool = False
    compat_branch: bool = False
    main_guard: bool = False
    model_class: str | None = None
    """``pydantic`` or ``sqlalchemy`` in the body of a class whose field annotations that
    library evaluates when the class is created."""


# Module-wide facts are read from the text, so that only the statements holding findings are
# parsed. ``Depends(get_db)``, ``Security(dependency=auth)``: FastAPI reads these targets'
# signatures (one pattern per word: a literal prefix lets the regex engine skip ahead).
_DEPENDS = {
    word: re.compile(rf"{word}\(\s*(?:dependency\s*=\s*)?([A-Za-z_]\w*)")
    for word in ("Depends", "Security")
}
# ``get_type_hints(...)`` in a top-level statement: annotations are read at import.
_HINTS_AT_IMPORT = re.compile(r"^[^\s#][^\n]*\bget_type_hints\(", re.M)
_FUTURE = re.compile(r"^from[ \t]+__future__[ \t]+import[^\n]*\bannotations\b", re.M)
_MODULE_GETATTR = re.compile(r"^(?:async[ \t]+)?def[ \t]+__getattr__[ \t]*\(", re.M)
_GLOBALS_WRITE = re.compile(
    r"globals\(\)[ \t]*(?:\[[^\]\n]*\][ \t]*=(?!=)|\.(?:update|setdefault|__setitem__)\b)"
)
_PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)


@dataclass
class FileContext:
    """One module: its module-wide facts, and its AST, parsed lazily.

    ``locate`` parses only the top-level statement that holds the position (decorators
    included), once per statement; a statement that does not parse on its own -- a cut in the
    middle of a multi-line string -- falls back to the whole file, parsed once.
    """

    path: str
    lines: list[str]
    future_annotations: bool = False
    module_getattr: bool = False
    globals_write: bool = False
    depends_targets: frozenset[str] = frozenset()
    hints_at_import: bool = False
    parse_error: str | None = None
    _full: ast.Module | None = field(default=None, repr=False)
    _full_done: bool = field(default=False, repr=False)
    _segments: dict[tuple[int, ...], ast.Module | None] = field(default_factory=dict, repr=False)
    _starts: list[int] | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, path: str, source: str) -> FileContext:
        """Read the module-wide facts of ``source``; its AST is parsed on demand."""
        return cls(
            path=path,
            lines=source.splitlines(),
            future_annotations=_FUTURE.search(source) is not None,
            hints_at_import="get_type_hints(" in source
            and _HINTS_AT_IMPORT.search(source) is not None,
            module_getattr=_MODULE_GETATTR.search(source) is not None,
            globals_write="globals()" in source and _GLOBALS_WRITE.search(source) is not None,
            depends_targets=frozenset(
                name
                for word, pattern in _DEPENDS.items()
                if word + "(" in source
                for name in pattern.findall(source)
            ),
        )

    @property
    def tree(self) -> ast.Module | None:
        """The whole module's AST; None when it does not parse (see ``parse_error``)."""
        if not self._full_done:
            self._full_done = True
            try:
                self._full = ast.parse("\n".join(self.lines), filename=self.path)
            except _PARSE_ERRORS as exc:
                self.parse_error = str(exc) or type(exc).__name__
        return self._full

    def source_line(self, line: int) -> str | None:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else None

    def locate(self, line: int, column: int) -> Facts:
        """The facts for a name at ``line`` (1-based) and character ``column`` (1-based)."""
        tree, row = self._tree_for(line)
        if tree is None:
            return Facts()
        pos = (row, self._byte_col(line, column))
        try:
            return self._facts(self._descend(tree, pos, _State()))
        except RecursionError:  # absurdly nested code: fall back to "module level"
            return Facts()

    def owner_origin(self, line: int, column: int) -> str | None:
        """Where the root name of the attribute expression at the position comes from:
        ``pkg.mod.Color`` for ``Color.RED`` after ``from pkg.mod import Color``, ``"."`` for a
        class of this module, None when unknown."""
        tree = self.tree
        return name_origin(tree, (line, self._byte_col(line, column))) if tree else None

    def _tree_for(self, line: int) -> tuple[ast.Module | None, int]:
        """An AST holding ``line``, and the line of that AST where ``line`` is."""
        if self._full_done:
            return self._full, line
        if self._starts is None:  # rows that start a top-level statement, found once
            self._starts = statement_starts(self.lines)
        rows = statement_rows(self.lines, line, self._starts)
        if 2 * len(rows) > len(self.lines):  # most of the file: parse it whole
            return self.tree, line
        if rows not in self._segments:
            try:
                text = "\n".join(self.lines[i] for i in rows)
                self._segments[rows] = ast.parse(text, filename=self.path)
            except _PARSE_ERRORS:
                self._segments[rows] = None
        segment = self._segments[rows]
        return (segment, rows.index(line - 1) + 1) if segment is not None else (self.tree, line)

    def _byte_col(self, line: int, column: int) -> int:
        text = self.source_line(line) or ""
        return len(text[: max(column - 1, 0)].encode("utf-8"))

    # -- locating a position -------------------------------------------------------------

    def _facts(self, s: _State) -> Facts:
        kind: AnnotationKind | None = None
        if s.local_annotation:
            kind = AnnotationKind.LOCAL
        elif s.annotation and self.future_annotations:
            kind = AnnotationKind.FUTURE
        elif s.quoted:
            kind = AnnotationKind.STRING
        elif s.annotation:
            kind = AnnotationKind.EAGER
        return Facts(
            where=Where.ANNOTATION if s.annotation else s.where,
            in_function=s.in_function,
            function=s.function,
            annotation=kind,
            evaluated_by=(s.evaluated_by or ("typing" if self.hints_at_import else None))
            if s.annotation and not s.local_annotation
            else None,
            type_checking=s.type_checking,
            guarded_import=s.guarded_import,
            compat_branch=s.compat_branch,
            main_guard=s.main_guard,
            module_getattr=self.module_getattr,
            globals_write=self.globals_write,
        )

    def _descend(self, node: ast.AST, pos: tuple[int, int], s: _State) -> _State:
        """Walk down to the innermost node holding ``pos``; return the state found there.

        Only the one child that holds the position is entered, so a state is never shared
        between branches: handlers may copy it (``_enter``/``_with``) or update it in place.
        """
        handler = _HANDLERS.get(type(node))
        if handler is not None:
            state: _State = handler(self, node, pos, s)
            return state
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            s.quoted = s.where is not Where.ALL_EXPORT
            return s
        return self._descend_list(_children(node), pos, s) or s

    def _descend_list(self, nodes: list[Any], pos: tuple[int, int], s: _State) -> _State | None:
        """Descend into the node of ``nodes`` that holds ``pos``; None when none does."""
        for child in nodes:
            if child is not None and _contains(child, pos):
                return self._descend(child, pos, s)
        return None

    def _function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, pos: Any, s: _State
    ) -> _State:
        owner = s.scope[-1] if s.scope_kind == "class" else None
        framework = self._is_framework_signature(node, s.scope_kind, owner)
        s = _with(s, scope=(*s.scope, node.name))
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        annotated = _enter(
            s, Where.ANNOTATION, annotation=True, evaluated_by="fastapi" if framework else None
        )
        # FastAPI reads a route's return annotation (its response model), but only the
        # parameters of a dependency.
        route = _is_route(node.decorator_list)
        returns = _enter(
            s, Where.ANNOTATION, annotation=True, evaluated_by="fastapi" if route else None
        )
        found = (
            self._descend_list(node.decorator_list, pos, _enter(s, Where.DECORATOR))
            or self._descend_list(
                [*args.defaults, *args.kw_defaults], pos, _enter(s, Where.DEFAULT)
            )
            or self._descend_list([p.annotation for p in params if p is not None], pos, annotated)
            or self._descend_list([node.returns], pos, returns)
        )
        if found is not None:
            return found
        body = _with(
            s,
            scope_kind="function",
            where=Where.FUNCTION_BODY,
            in_function=True,
            function=".".join(s.scope),
            model_class=None,
        )
        return self._descend_list(node.body, pos, body) or body

    def _is_framework_signature(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope_kind: str, owner: str | None
    ) -> bool:
        """FastAPI reads the signature of routes and of ``Depends(...)`` targets at startup."""
        if _is_route(node.decorator_list):
            return True
        if scope_kind == "module" and node.name in self.depends_targets:
            return True
        # Depends(SomeClass) inspects SomeClass.__init__.
        return node.name == "__init__" and owner is not None and owner in self.depends_targets

    def _class(self, node: ast.ClassDef, pos: Any, s: _State) -> _State:
        s = _with(s, scope=(*s.scope, node.name))
        found = self._descend_list(
            node.decorator_list, pos, _enter(s, Where.DECORATOR)
        ) or self._descend_list([*node.bases, *node.keywords], pos, _enter(s, Where.CLASS_BASES))
        if found is not None:
            return found
        body = _with(
            s,
            scope_kind="class",
            where=s.where if s.in_function else Where.CLASS_BODY,
            model_class=_is_model_class(node),
        )
        return self._descend_list(node.body, pos, body) or body

    def _lambda(self, node: ast.Lambda, pos: Any, s: _State) -> _State:
        args = node.args
        defaults = [*args.defaults, *args.kw_defaults]
        found = self._descend_list(defaults, pos, _enter(s, Where.DEFAULT))
        function = ".".join((*s.scope, "<lambda>"))
        body = _with(s, in_function=True, where=Where.FUNCTION_BODY, function=function)
        return found or self._descend(node.body, pos, body)

    def _ann_assign(self, node: ast.AnnAssign, pos: Any, s: _State) -> _State:
        if _contains(node.annotation, pos):
            by = s.model_class if s.scope_kind == "class" and s.model_class else None
            inner = _enter(s, Where.ANNOTATION, annotation=True, evaluated_by=by)
            # The compiler never evaluates the annotation of a local variable.
            inner.local_annotation = s.scope_kind == "function"
            return self._descend(node.annotation, pos, inner)
        if _is_all_target(node.target) and s.scope_kind == "module":
            s = _with(s, where=Where.ALL_EXPORT)
        return self._descend_list([node.target, node.value], pos, s) or s

    def _assign(self, node: ast.Assign | ast.AugAssign, pos: Any, s: _State) -> _State:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if s.scope_kind == "module" and any(_is_all_target(t) for t in targets):
            s = _with(s, where=Where.ALL_EXPORT)
        return self._descend_list([*targets, node.value], pos, s) or s

    def _try(self, node: ast.Try, pos: Any, s: _State) -> _State:
        guarded = s.guarded_import or any(_catches_import_error(h.type) for h in node.handlers)
        found = self._descend_list(node.body, pos, _with(s, guarded_import=guarded))
        if found is not None:
            return found
        # The fallback of a failed import or attribute: another version's spelling.
        fallback = [h for h in node.handlers if _catches_import_error(h.type, compat=True)]
        found = self._descend_list(fallback, pos, _with(s, compat_branch=True))
        if found is not None:
            return found
        return self._descend_list([*node.handlers, *node.orelse, *node.finalbody], pos, s) or s


def _joined_str(ctx: FileContext, node: ast.JoinedStr, pos: Any, s: _State) -> _State:
    # Before 3.12 the literal parts of an f-string carry the span of the whole f-string, so
    # only the replacement fields are looked at: a name in an f-string is never "quoted".
    fields = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
    return ctx._descend_list(fields, pos, s) or s


def _if_body_state(node: ast.If, s: _State) -> _State:
    test = node.test
    if _call_name(test) == "TYPE_CHECKING":
        return _with(s, type_checking=True)
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    ):
        return _with(s, main_guard=True)
    return s


def _if_handler(ctx: FileContext, node: ast.If, pos: Any, s: _State) -> _State:
    if _is_feature_check(node.test):  # if find_spec("x") / hasattr(m, "y") / version tests
        s = _with(s, compat_branch=True)
    found = ctx._descend_list([node.test], pos, s) or ctx._descend_list(
        node.body, pos, _if_body_state(node, s)
    )
    return found or ctx._descend_list(node.orelse, pos, s) or s


_FEATURE_CHECKS = frozenset({"find_spec", "hasattr", "version", "parse_version", "Version"})


def _is_feature_check(test: ast.expr) -> bool:
    """A test of what the installed packages provide: ``find_spec``, ``hasattr``, or a
    comparison with a ``__version__``/``version(...)``."""
    for node in ast.walk(test):
        if isinstance(node, ast.Call) and _call_name(node) in _FEATURE_CHECKS:
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("__version__", "VERSION"):
            return True
    return False


_HANDLERS: dict[type, Any] = {
    ast.FunctionDef: FileContext._function,
    ast.AsyncFunctionDef: FileContext._function,
    ast.ClassDef: FileContext._class,
    ast.Lambda: FileContext._lambda,
    ast.AnnAssign: FileContext._ann_assign,
    ast.Assign: FileContext._assign,
    ast.AugAssign: FileContext._assign,
    ast.If: _if_handler,
    ast.JoinedStr: _joined_str,
    ast.Try: FileContext._try,
    ast.TryStar: FileContext._try,
}


def _with(s: _State, **changes: Any) -> _State:
    return replace(s, **changes)


def _enter(
    s: _State, where: Where, *, annotation: bool = False, evaluated_by: str | None = None
) -> _State:
    where_now = s.where if s.in_function else where
    return replace(
        s,
        where=where_now if not annotation else Where.ANNOTATION,
        annotation=s.annotation or annotation,
        evaluated_by=evaluated_by if annotation else s.evaluated_by,
    )


def _span(node: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Start and end of a node; a definition starts at its first decorator."""
    if not hasattr(node, "lineno"):
        return None
    start = (node.lineno, node.col_offset)
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        first = decorators[0]
        start = min(start, (first.lineno, first.col_offset))
    end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
    return start, end


def _contains(node: Any, pos: tuple[int, int]) -> bool:
    if not isinstance(node, ast.AST):
        return False
    span = _span(node)
    if span is None:  # arguments, comprehension, ...: look at the children
        return any(_contains(child, pos) for child in _children(node))
    return span[0] <= pos < span[1] or (span[0] == span[1] == pos)


def _children(node: ast.AST) -> list[ast.AST]:
    out: list[ast.AST] = []
    for _, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, ast.AST))
    return out


def _call_name(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_route(decorators: list[ast.expr]) -> bool:
    """``@router.get(...)``: the route decorators of FastAPI are methods of an app/router."""
    return any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Attribute)
        and d.func.attr in ROUTE_DECORATORS
        for d in decorators
    )


def _is_model_class(node: ast.ClassDef) -> str | None:
    """Which library builds the class from its annotations: pydantic models and settings
    (and SQLModel), SQLAlchemy declarative classes (a ``DeclarativeBase`` or ``Base`` base,
    or a ``__tablename__``)."""
    bases = {_call_name(b) for b in node.bases}
    if bases & MODEL_BASES:
        return "pydantic"
    if bases & SQLALCHEMY_BASES or any(
        isinstance(item, (ast.Assign, ast.AnnAssign))
        and any(
            isinstance(t, ast.Name) and t.id == "__tablename__"
            for t in (item.targets if isinstance(item, ast.Assign) else [item.target])
        )
        for item in node.body
    ):
        return "sqlalchemy"
    return None


def _catches_import_error(node: ast.expr | None, compat: bool = False) -> bool:
    """``except ImportError`` (``compat``: also ``AttributeError``, a renamed member)."""
    names = IMPORT_ERRORS | {"AttributeError"} if compat else IMPORT_ERRORS
    if isinstance(node, ast.Tuple):
        return any(_catches_import_error(e, compat) for e in node.elts)
    return _call_name(node) in names if node is not None else False


def _is_all_target(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "__all__"
