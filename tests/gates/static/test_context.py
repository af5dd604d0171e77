from __future__ import annotations

import textwrap

import pytest

from safeship.core.triage import AnnotationKind, Facts, Where
from safeship.gates.baseline import text_scope
from safeship.gates.static.context import FileContext


def locate(source: str, marker: str = "X") -> tuple[Facts, str | None]:
    """Facts and text scope for the first occurrence of the name ``marker`` in ``source``."""
    source = textwrap.dedent(source)
    lines = source.splitlines()
    for number, text in enumerate(lines, start=1):
        index = _find_name(text, marker)
        if index >= 0:
            facts = FileContext.parse("m.py", source).locate(number, index + 1)
            return facts, text_scope(lines, number)
    raise AssertionError(f"{marker} not in source")


def _find_name(text: str, name: str) -> int:
    start = 0
    while (index := text.find(name, start)) >= 0:
        before = text[index - 1] if index else " "
        after = text[index + len(name)] if index + len(name) < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return index
        start = index + 1
    return -1


def test_module_level_statement() -> None:
    facts, scope = locate("import os\nvalue = X + 1\n")
    assert facts.where is Where.MODULE and not facts.in_function and scope is None


def test_class_body_and_scope() -> None:
    facts, scope = locate("class A:\n    limit = X\n")
    assert facts.where is Where.CLASS_BODY and scope == "A"


def test_class_bases() -> None:
    facts, _ = locate("class A(X):\n    pass\n")
    assert facts.where is Where.CLASS_BASES


@pytest.mark.parametrize("decorator", ["@X", "@X()", "@X.route('/')"])
def test_decorator(decorator: str) -> None:
    facts, scope = locate(f"{decorator}\ndef f():\n    pass\n")
    assert facts.where is Where.DECORATOR and not facts.in_function and scope is None


def test_default_value() -> None:
    facts, _ = locate("def f(a, b=X, *, c=1):\n    pass\n")
    assert facts.where is Where.DEFAULT and not facts.in_function


def test_keyword_only_default() -> None:
    facts, _ = locate("def f(*, c=X):\n    pass\n")
    assert facts.where is Where.DEFAULT


def test_function_body() -> None:
    facts, scope = locate("class A:\n    def run(self):\n        return X\n")
    assert facts.where is Where.FUNCTION_BODY
    assert facts.in_function and facts.function == "A.run" and scope == "A.run"


def test_lambda_body_is_deferred_but_its_default_is_not() -> None:
    assert locate("f = lambda: X\n")[0].in_function
    facts, _ = locate("f = lambda a=X: a\n")
    assert facts.where is Where.DEFAULT and not facts.in_function


@pytest.mark.parametrize(
    "source",
    [
        "def f(a: X) -> None:\n    pass\n",
        "def f(a) -> X:\n    pass\n",
        "def f(*args: X):\n    pass\n",
        "class A:\n    def m(self, db: X) -> None:\n        pass\n",
        "value: X = 1\n",
        "class A:\n    field: X\n",
        "def f(a: list[X]):\n    pass\n",
    ],
)
def test_eager_annotations(source: str) -> None:
    facts, _ = locate(source)
    assert facts.where is Where.ANNOTATION and facts.annotation is AnnotationKind.EAGER
    assert not facts.in_function


def test_quoted_annotation() -> None:
    facts, _ = locate('def f(a: "X") -> None:\n    pass\n')
    assert facts.annotation is AnnotationKind.STRING and facts.evaluated_by is None


def test_quoted_inside_subscript() -> None:
    facts, _ = locate('def f(a: list["X"]) -> None:\n    pass\n')
    assert facts.annotation is AnnotationKind.STRING


def test_future_annotations() -> None:
    source = "from __future__ import annotations\n\ndef f(a: X) -> None:\n    pass\n"
    assert locate(source)[0].annotation is AnnotationKind.FUTURE


def test_local_variable_annotation_is_never_evaluated() -> None:
    facts, _ = locate("def f():\n    y: X = 1\n    return y\n")
    assert facts.annotation is AnnotationKind.LOCAL and facts.in_function


def test_annotation_of_a_class_inside_a_function_is_evaluated_when_it_runs() -> None:
    facts, _ = locate("def f():\n    class A:\n        y: X = 1\n")
    assert facts.annotation is AnnotationKind.EAGER and facts.in_function


def test_nested_function_signature_is_deferred() -> None:
    facts, _ = locate("def outer():\n    def inner(a: X = 1):\n        pass\n")
    assert facts.in_function and facts.function == "outer"


def test_fastapi_route_string_annotation() -> None:
    source = """
        from fastapi import APIRouter
        router = APIRouter()

        @router.get("/items")
        async def items(q: "X") -> list[str]:
            return []
    """
    facts, _ = locate(source)
    assert facts.annotation is AnnotationKind.STRING and facts.evaluated_by == "fastapi"


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch", "websocket", "api_route"])
def test_every_route_decorator(method: str) -> None:
    source = f'@app.{method}("/x")\ndef r(q: "X"):\n    pass\n'
    assert locate(source)[0].evaluated_by == "fastapi"


def test_future_annotation_of_a_route_return() -> None:
    source = """
        from __future__ import annotations

        @app.get("/x")
        def r() -> X:
            pass
    """
    facts, _ = locate(source)
    assert facts.annotation is AnnotationKind.FUTURE and facts.evaluated_by == "fastapi"


def test_depends_target_signature() -> None:
    source = """
        def get_db(settings: "X"):
            return settings

        @app.get("/x")
        def r(db=Depends(get_db)):
            pass
    """
    assert locate(source)[0].evaluated_by == "fastapi"


def test_depends_class_init() -> None:
    source = """
        class Pager:
            def __init__(self, size: "X") -> None:
                self.size = size

        def r(pager=Depends(Pager)):
            pass
    """
    assert locate(source)[0].evaluated_by == "fastapi"


def test_plain_function_is_not_a_route() -> None:
    source = '@functools.cache\ndef r(q: "X"):\n    pass\n'
    assert locate(source)[0].evaluated_by is None


def test_pydantic_field() -> None:
    source = """
        from __future__ import annotations
        from pydantic import BaseModel

        class Goal(BaseModel):
            owner: X
    """
    facts, scope = locate(source)
    assert facts.annotation is AnnotationKind.FUTURE and facts.evaluated_by == "pydantic"
    assert scope == "Goal"


def test_pydantic_method_annotation_is_not_a_field() -> None:
    source = """
        from pydantic import BaseModel

        class Goal(BaseModel):
            def describe(self, other: "X") -> str:
                return ""
    """
    assert locate(source)[0].evaluated_by is None


def test_plain_class_field_is_not_pydantic() -> None:
    assert locate('class Goal:\n    owner: "X"\n')[0].evaluated_by is None


def test_type_checking_block() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import X\n"
    assert locate(source)[0].type_checking
    source = "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    y = X\n"
    assert not locate(source)[0].type_checking


def test_guarded_import() -> None:
    source = "try:\n    from pkg.fast import X\nexcept ImportError:\n    X = None\n"
    assert locate(source)[0].guarded_import
    source = (
        "try:\n    from pkg.fast import X\nexcept (ValueError, ModuleNotFoundError):\n    pass\n"
    )
    assert locate(source)[0].guarded_import
    source = "try:\n    from pkg.fast import X\nexcept ValueError:\n    pass\n"
    assert not locate(source)[0].guarded_import


def test_main_guard() -> None:
    assert locate('if __name__ == "__main__":\n    X()\n')[0].main_guard


def test_module_getattr_and_all_export() -> None:
    source = '__all__ = ["X"]\n\ndef __getattr__(name):\n    return name\n'
    facts, _ = locate(source)
    assert facts.where is Where.ALL_EXPORT and facts.module_getattr
    assert facts.annotation is None


@pytest.mark.parametrize(
    "write",
    ['globals()["X"] = 1', "globals().update({'X': 1})", "globals().setdefault('X', 1)"],
)
def test_globals_write(write: str) -> None:
    facts, _ = locate(f"{write}\nuse = X\n".replace('"X"', '"Y"').replace("'X'", "'Y'"))
    assert facts.globals_write


def test_globals_read_is_not_a_write() -> None:
    assert not locate("g = globals()['Y']\nuse = X\n")[0].globals_write


def test_name_in_fstring_is_not_quoted() -> None:
    facts, _ = locate('message = f"value {X}"\n')
    assert facts.annotation is None and facts.where is Where.MODULE


def test_non_ascii_column() -> None:
    # ruff counts columns in characters, the AST in UTF-8 bytes.
    # Read as bytes, the column of X would point into the string before it.
    source = 'pair = ("ééééééé", X)\n'
    facts, _ = locate(source)
    assert facts.where is Where.MODULE and facts.annotation is None


def test_syntax_error_gives_a_context_without_tree() -> None:
    context = FileContext.parse("bad.py", "def f(:\n    pass\n")
    assert context.tree is None and context.parse_error
    assert context.locate(1, 1) == Facts()
    assert context.source_line(1) == "def f(:"
    assert context.source_line(99) is None


def test_owner_origin() -> None:
    source = textwrap.dedent(
        """
        import enum
        import pkg.models as models
        from pkg.db import Status
        from . import local

        class Color(enum.Enum):
            RED = 1

        a = Status.ARCHIVED
        b = models.Kind.X
        c = Color.BLUE
        d = enum.Enum.NOPE
        e = local.Thing.X
        f = unknown.X
        """
    )
    context = FileContext.parse("pkg/m.py", source)
    lines = source.splitlines()

    def origin(var: str) -> str | None:
        number = next(i for i, t in enumerate(lines, 1) if t.startswith(f"{var} = "))
        return context.owner_origin(number, 5)

    assert origin("a") == "pkg.db.Status"
    assert origin("b") == "pkg.models"
    assert origin("c") == "."
    assert origin("d") == "enum"
    assert origin("e") == ".local"
    assert origin("f") is None


def test_absurd_nesting_falls_back_to_module_level() -> None:
    source = "value = " + " + ".join(["a"] * 50_000) + " + X\n"
    context = FileContext.parse("deep.py", source)
    assert context.locate(1, len(source) - 1) == Facts()


def test_only_the_statement_is_parsed() -> None:
    # The file as a whole does not parse; the statement holding the finding does.
    source = "def ok():\n    return X\n\n\ndef broken(:\n    pass\n" + "A = 1\n" * 10
    context = FileContext.parse("m.py", source)
    facts = context.locate(2, 12)
    assert facts.in_function and facts.function == "ok"


def test_statement_cut_inside_a_string_falls_back_to_the_whole_file() -> None:
    source = textwrap.dedent(
        '''
        def f():
            text = """
        def inner():
            pass
        """
            return X
        '''
    )
    facts, _ = locate(source)
    assert facts.in_function and facts.function == "f"


def test_decorators_belong_to_the_statement() -> None:
    source = '\n\n@router.get("/a")\n@cached\nasync def r(q: "X"):\n    pass\n\nVALUE = 1\n'
    assert locate(source)[0].evaluated_by == "fastapi"


def test_module_facts_are_read_from_the_text() -> None:
    source = (
        '"""Doc."""\nfrom __future__ import annotations\n\n'
        "def __getattr__(name):\n    return name\n\n"
        "globals()['A'] = 1\n"
        "def r(db=Depends(get_db), user=Security(dependency=current_user)):\n    pass\n"
    )
    context = FileContext.parse("m.py", source)
    assert context.future_annotations and context.module_getattr and context.globals_write
    assert context.depends_targets == {"get_db", "current_user"}
    plain = FileContext.parse("m.py", "x = globals()['A']\ny = globals()['B'] == 1\n")
    assert not (plain.future_annotations or plain.module_getattr or plain.globals_write)


PADDING = "".join(f"CONSTANT_{i} = {i}\n" for i in range(30))


def test_only_the_class_header_and_the_member_are_parsed() -> None:
    source = (
        "@decorate\nclass Big(\n    BaseModel,  # a comment (with parens\n):\n"
        '    """Doc."""\n\n'
        "    owner: 'X'\n\n"
        "    @property\n    def ok(self):\n        return Y\n\n"
        "    def broken(self:\n        pass\n" + PADDING
    )
    context = FileContext.parse("m.py", source)
    field = context.locate(7, 13)
    assert field.evaluated_by == "pydantic" and field.annotation is AnnotationKind.STRING
    method = context.locate(11, 16)
    assert method.in_function and method.function == "Big.ok"
    assert context.parse_error is None  # the broken member was never parsed


def test_route_method_in_a_large_class() -> None:
    source = "class Routes:\n    @router.get('/a')\n    def a(self, q: 'X'):\n        pass\n"
    context = FileContext.parse("m.py", source + PADDING)
    assert context.locate(3, 21).evaluated_by == "fastapi"


@pytest.mark.parametrize("indent", ["", "    "])
def test_multi_line_decorators_belong_to_the_statement(indent: str) -> None:
    body = '@router.get(\n    "/a",\n)\n@X\ndef r(q: "Y"):\n    pass\n'
    source = "".join(indent + line + "\n" for line in body.splitlines())
    if indent:
        source = "class Routes:\n" + source
    context = FileContext.parse("m.py", source + PADDING)
    rows = source.splitlines()
    decorator = next(i for i, t in enumerate(rows, 1) if t.strip() == "@X")
    annotation = next(i for i, t in enumerate(rows, 1) if "def r" in t)
    assert context.locate(decorator, len(indent) + 2).where is Where.DECORATOR
    facts = context.locate(annotation, rows[annotation - 1].index("Y") + 1)
    assert facts.evaluated_by == "fastapi" and facts.annotation is AnnotationKind.STRING
