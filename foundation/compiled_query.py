"""A hot ORM lookup compiled to SQL once per database, then run with a new parameter.

The verifier runs one indexed query per request and per websocket connect. Django compiles a
queryset anew on every evaluation, and for ``select_related`` that compilation (joins, the
select list, quoting) costs more CPU than PostgreSQL or SQLite spend answering the query:
py-spy put ``SQLCompiler`` at a third of a gunicorn worker's time on ``/me``
(docs/benchmarks.md). Here the ORM still writes the SQL and says how to read the row (which
columns belong to which model, which converters apply); only the repetition is skipped.
"""

import threading
from dataclasses import dataclass

from django.db import connections

_MARK = "\x00compiled-query-parameter\x00"


@dataclass(frozen=True)
class _Plan:
    sql: str
    order: tuple  # for each SQL parameter, which of first()'s values it is
    converters: dict  # column index -> (converter functions, expression), as the ORM has them
    models: tuple  # (model, attnames, column indexes, relation name or None), outermost first
    annotations: tuple  # (name, column index): set on the outermost instance, as the ORM does


class CompiledLookup:
    """``build(*marks)`` → a queryset of at most one row that uses each mark once as a query
    parameter (``select_related`` of single-valued relations and ``annotate`` allowed, the
    annotations' own parameters being marks too, or none); ``first(*values)`` → the
    instance for those values, or None. A mark must be a value of the field's type that no
    caller would pass (the default is one string, for a text column)."""

    def __init__(self, build, marks: tuple = (_MARK,)):
        self._build, self._marks = build, tuple(marks)
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()

    def first(self, *values, using: str = "default", prefix: str = "", prefix_params=()):
        """``prefix``: SQL placed before the query in the same statement (a ``WITH`` clause the
        query's own filters may name), with its parameters."""
        plan = self._plans.get(using) or self._compile(using)
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(prefix + plan.sql, [*prefix_params, *(values[i] for i in plan.order)])
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for index, (functions, expression) in plan.converters.items():
            for convert in functions:
                row[index] = convert(row[index], expression, connection)
        root = None
        for model, attnames, columns, relation in plan.models:
            instance = model.from_db(using, attnames, [row[i] for i in columns])
            if root is None:
                root = instance
            else:
                setattr(root, relation, instance)
        for name, index in plan.annotations:
            setattr(root, name, row[index])
        return root

    def _compile(self, using: str) -> _Plan:
        with self._lock:
            if using in self._plans:
                return self._plans[using]
            compiler = self._build(*self._marks).query.get_compiler(using)
            sql, params = compiler.as_sql()
            if sorted(map(repr, params)) != sorted(map(repr, self._marks)):
                raise ValueError(f"the query's parameters must be its marks, each once: got {params!r}")
            order = tuple(self._marks.index(param) for param in params)
            select, info = compiler.select, compiler.klass_info
            models = [(info["model"], *_columns(select, info["select_fields"]), None)]
            for related in info.get("related_klass_infos", ()):
                if related.get("related_klass_infos") or not related["field"].many_to_one:
                    raise ValueError("only one level of many-to-one select_related is supported")
                models.append(
                    (related["model"], *_columns(select, related["select_fields"]), related["field"].name)
                )
            converters = compiler.get_converters([column for column, _, _ in select])
            annotations = tuple(compiler.annotation_col_map.items())
            plan = self._plans[using] = _Plan(sql, order, converters, tuple(models), annotations)
            return plan


def _columns(select, indexes) -> tuple[list[str], list[int]]:
    return [select[i][0].target.attname for i in indexes], list(indexes)
