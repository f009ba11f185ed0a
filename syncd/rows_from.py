"""``ROWS FROM``, which SQLAlchemy has no construct for: several set-returning functions
zipped row by row (the n-th row of each makes the n-th output row; a shorter one pads with
NULLs). :mod:`syncd.bulk` zips a ``json_to_recordset`` document with one newline-joined text
per JSON column.

Both constructs carry their parts as clause elements, so SQLAlchemy's statement cache keys
them (two tables' statements never share a compiled form)::

    rows = rows_from(
        defined(func.json_to_recordset(doc), column("id", String), column("n", Integer)),
        func.unnest(texts),
    ).table_valued(column("id"), column("n"), column("data")).render_derived(name="r")
    # ROWS FROM (json_to_recordset(...) AS (id VARCHAR, n INTEGER), unnest(...)) AS r(id, n, data)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal


class defined(ColumnElement[Any]):  # lower case, as SQLAlchemy names its SQL constructs
    """``<function> AS (<name> <type>, ...)``: a record-returning function with its column
    definitions, as ``ROWS FROM`` wants them (``WITH ORDINALITY`` or not)."""

    inherit_cache = True
    _traverse_internals = [
        ("function", InternalTraversal.dp_clauseelement),
        ("columns", InternalTraversal.dp_clauseelement_tuple),
    ]

    def __init__(self, function: FunctionElement[Any], *columns: ColumnClause[Any]) -> None:
        self.function = function
        self.columns = columns


class rows_from(FunctionElement[Any]):
    """``ROWS FROM (<function>, ...)``; alias it with ``.table_valued(...)``."""

    name = "rows_from"
    inherit_cache = True


@compiles(defined)
def _compile_defined(element: defined, compiler: SQLCompiler, **kw: Any) -> str:
    types = compiler.dialect.type_compiler_instance
    columns = ", ".join(
        compiler.preparer.quote(c.name) + " " + types.process(c.type) for c in element.columns
    )
    return compiler.process(element.function, **kw) + " AS (" + columns + ")"


@compiles(rows_from)
def _compile_rows_from(element: rows_from, compiler: SQLCompiler, **kw: Any) -> str:
    return "ROWS FROM (" + ", ".join(compiler.process(c, **kw) for c in element.clauses) + ")"
