"""History's hot reads as plain tuples, with the SQL of their columns compiled once.

A history page runs a few small statements (each branch's keyset batch, the requests of the
rows), each a handful of milliseconds of SQL. Through the ORM, every one of them also pays for
Django compiling its column list, joins and ordering, and for its row iterator: as much again
as the SQL itself. ``values_rows`` keeps the ORM for what varies (the queryset's WHERE, compiled
by Django from the same Q objects, with its parameters) and compiles the constant part once
per model and columns: ``SELECT <columns> FROM <table> [LEFT JOIN ...]`` and the columns'
converters (what the ORM applies to each value, e.g. a JSON field's decoding, SQLite's
datetimes). The rows are those ``qs.order_by(*order).values_list(*fields)[:limit]`` reads, in
the same order, as tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import QuerySet


@dataclass(frozen=True)
class _Template:
    """``SELECT <columns> FROM <tables>`` of one model and field list, compiled once."""

    select_from: str
    params: tuple[Any, ...]
    # field name -> its SQL in the select list (for ORDER BY)
    columns: dict[str, str]
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    base_table: str


_TEMPLATES: dict[tuple[str, type[Any], tuple[str, ...]], _Template] = {}


def _template(qs: QuerySet[Any, Any], fields: tuple[str, ...]) -> _Template:
    key = (qs.db, qs.model, fields)
    found = _TEMPLATES.get(key)
    if found is not None:
        return found
    bare = qs.model._base_manager.db_manager(qs.db).order_by().values_list(*fields)
    compiler = bare.query.get_compiler(using=qs.db)
    sql, params = compiler.as_sql()
    if " WHERE " in sql or " ORDER BY " in sql:  # pragma: no cover - a manager with filters
        raise ValueError(f"{qs.model.__name__}'s base manager filters its rows")
    columns = {
        field: col_sql
        for field, (_expr, (col_sql, _params), _alias) in zip(fields, compiler.select, strict=True)
    }
    converters = tuple(
        (pos, tuple(convs), expr)
        for pos, (convs, expr) in compiler.get_converters(
            [expr for expr, _sql, _alias in compiler.select]
        ).items()
    )
    found = _Template(
        select_from=sql,
        params=tuple(params),
        columns=columns,
        converters=converters,
        base_table=bare.query.get_meta().db_table,
    )
    _TEMPLATES[key] = found
    return found


def _plain(qs: QuerySet[Any, Any]) -> bool:
    """Whether ``qs`` is a filter of its table only (no join, annotation, distinct, slice,
    extra): its WHERE can follow the template's FROM as it is."""
    query = qs.query
    # A join Django set up and then trimmed (a foreign key compared to a subquery) has no
    # reference left and is not in the FROM clause (SQLCompiler.get_from_clause).
    tables = [alias for alias in query.alias_map if query.alias_refcount.get(alias)]
    return (
        len(tables) <= 1
        and not query.annotations
        and not query.distinct
        and not query.extra
        and query.low_mark == 0
        and query.high_mark is None
        and not query.combinator
    )


class Deferred:
    """A column's value as the database sent it, converted (as the ORM would) only when
    ``value()`` is called: a JSON column of rows a page reads but may never show or inspect
    (``values_rows(..., deferred=...)``). ``raw`` is the database's value (for a JSON column
    on PostgreSQL and SQLite, its text)."""

    __slots__ = ("_convert", "raw")

    def __init__(self, raw: Any, convert: Callable[[Any], Any]) -> None:
        self.raw = raw
        self._convert = convert

    def value(self) -> Any:
        return self._convert(self.raw)


def loaded(value: Any) -> Any:
    """``value``, converted if it is a ``Deferred``."""
    return value.value() if type(value) is Deferred else value


def _converter(
    convs: tuple[Callable[..., Any], ...], expr: Any, connection: Any
) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        for conv in convs:
            value = conv(value, expr, connection)
        return value

    return convert


def values_rows(
    qs: QuerySet[Any, Any],
    fields: tuple[str, ...],
    *,
    order: Sequence[str] = (),
    limit: int | None = None,
    deferred: frozenset[str] = frozenset(),
) -> list[tuple[Any, ...]]:
    """``list(qs.order_by(*order).values_list(*fields)[:limit])``, read with the template of
    ``fields`` (module docstring). ``order``: field names of ``fields`` (``-`` for
    descending). The values of the ``deferred`` fields that need converting come as a
    :class:`Deferred` (read them with :func:`loaded`); a queryset the template cannot serve is
    read through the ORM, with every value converted."""
    if not _plain(qs) or any(name.lstrip("-") not in fields for name in order):
        sliced = qs.order_by(*order).values_list(*fields)
        return list(sliced[:limit] if limit is not None else sliced)
    template = _template(qs, fields)
    connection = connections[qs.db]
    compiler = qs.query.get_compiler(using=qs.db)
    if qs.query.alias_map and not qs.query.alias_refcount.get(template.base_table):
        sliced = qs.order_by(*order).values_list(*fields)  # pragma: no cover - an aliased table
        return list(sliced[:limit] if limit is not None else sliced)
    try:
        where, where_params = compiler.compile(qs.query.where)
    except EmptyResultSet:
        return []
    except FullResultSet:
        where, where_params = "", []
    parts = [template.select_from]
    if where:
        parts.append(f"WHERE {where}")
    if order:
        terms = [
            f"{template.columns[name.lstrip('-')]} {'DESC' if name.startswith('-') else 'ASC'}"
            for name in order
        ]
        parts.append("ORDER BY " + ", ".join(terms))
    if limit is not None:
        parts.append(f"LIMIT {int(limit)}")
    with connection.cursor() as cursor:
        cursor.execute(" ".join(parts), (*template.params, *where_params))
        rows = cursor.fetchall()
    if not template.converters:
        return [tuple(row) for row in rows]
    eager = template.converters
    later: list[tuple[int, Callable[[Any], Any]]] = []
    if deferred:
        names = {fields.index(name) for name in deferred}
        eager = tuple(c for c in template.converters if c[0] not in names)
        later = [
            (pos, _converter(convs, expr, connection))
            for pos, convs, expr in template.converters
            if pos in names
        ]
    out: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(row)
        for pos, convs, expr in eager:
            value = values[pos]
            for convert in convs:
                value = convert(value, expr, connection)
            values[pos] = value
        for pos, later_convert in later:
            values[pos] = Deferred(values[pos], later_convert)
        out.append(tuple(values))
    return out
