"""One page of history, and every row of it: the two tables read in keyset batches and
merged in time.

``history_query(filters, viewer)`` returns one page of rows from both tables, newest (or oldest)
first, with keyset pagination: a page ends with a ``Cursor`` (time, source rank, id) and the next
page asks for rows strictly beyond it, so no query ever uses OFFSET and every page costs the same
whatever its depth. Each table is read in its own order by ``(time, id)`` through a composite
index that starts with the filtered column (audit/models.py), then the ordered streams are
merged in Python (``heapq.merge``). The person timeline is the same page, filtered on the person.

``history_rows(filters, viewer)`` streams every matching row in the same order, in keyset
batches, holding at most one batch per branch in memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from audit.permissions import HistoryScope, history_scope_for
from audit.selectors import flat
from audit.selectors.compiled import values_rows
from audit.selectors.filters import SOURCE_RANK, Cursor, HistoryFilters, Source
from audit.selectors.queries import (
    beyond,
    entra_queryset,
    portal_queryset,
    request_pk_subquery,
)
from audit.selectors.rows import (
    ENTRA_FIELDS,
    PORTAL_DEFERRED,
    PORTAL_FIELDS,
    HistoryRow,
    attach_links,
    entra_row,
    portal_row,
    with_requests,
)

PAGE_SIZE = 50
PAGE_SIZE_MAX = 200


@dataclass
class BatchPlan:
    """The size of each branch's next keyset batch, set by the stream's reader as it learns how
    many rows it needs (the request view: ``audit.selectors.requests``)."""

    size: int


def _keyset_stream(
    qs: QuerySet[Any, Any],
    *,
    source: Source,
    descending: bool,
    after: Cursor | None,
    batch: int,
    limit: int | None = None,
    plan: BatchPlan | None = None,
) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of rows of one table in (time, id) order, strictly beyond ``after``, as tuples of
    the source's fields (``PORTAL_FIELDS`` or ``ENTRA_FIELDS``: id, time, ...); each batch is
    one keyset query of ``batch`` rows (of ``plan.size`` when a plan is given: its reader may
    change it between batches). At most ``limit`` rows in all."""
    time_field, fields, deferred = (
        ("created_at", PORTAL_FIELDS, PORTAL_DEFERRED)
        if source == "portal"
        else ("activity_at", ENTRA_FIELDS, frozenset())
    )
    rank = SOURCE_RANK[source]
    order = (f"-{time_field}", "-id") if descending else (time_field, "id")
    position = after
    remaining = limit
    while remaining is None or remaining > 0:
        wanted = plan.size if plan is not None else batch
        size = wanted if remaining is None else min(wanted, remaining)
        page = qs if position is None else qs.filter(beyond(time_field, rank, position, descending))
        # A plain read, not .iterator(): the LIMIT already bounds the batch, and outside a
        # transaction Django's server-side cursors are WITH HOLD, which PostgreSQL materialises
        # before the first row is fetched (an extra copy and two more round trips per batch).
        rows = values_rows(page, fields, order=order, limit=size, deferred=deferred)
        if rows:
            yield rows
        if len(rows) < size:
            return
        last_id, last_at = rows[-1][0], rows[-1][1]
        position = Cursor(last_at, rank, last_id)
        if remaining is not None:
            remaining -= len(rows)


def _rows(
    batches: Iterable[list[tuple[Any, ...]]], make: Callable[[tuple[Any, ...]], HistoryRow]
) -> Iterator[HistoryRow]:
    """The batches' rows, each made into a ``HistoryRow`` only when it is read: a merge reads
    a branch's rows only as far as the page goes, the rest of its batch is never made."""
    for values in batches:
        for v in values:
            yield make(v)


def _enriched(
    batches: Iterable[list[tuple[Any, ...]]], make: Callable[[tuple[Any, ...]], HistoryRow]
) -> Iterator[HistoryRow]:
    """The batches' rows with their requests attached, a batch at a time (``with_requests``)."""
    for rows in with_requests([make(v) for v in values] for values in batches):
        yield from rows


def merged_stream(
    filters: HistoryFilters,
    scope: HistoryScope,
    *,
    after: Cursor | None,
    batch: int,
    limit: int | None,
    enrich: bool,
    plan: BatchPlan | None = None,
) -> Iterator[HistoryRow]:
    """Every branch of both tables as one ordered stream, each row once, strictly beyond
    ``after``: keyset batches of ``batch`` rows per branch (or of ``plan.size``), at most
    ``limit`` rows per branch;
    ``enrich`` attaches each batch's requests. Also the request view's source
    (``audit.selectors.requests``)."""
    request_pk = request_pk_subquery(filters.request) if filters.request else None
    streams: list[Iterator[HistoryRow]] = []
    sources: list[tuple[Source, list[QuerySet[Any, Any]] | None]] = [
        ("portal", portal_queryset(filters, scope, request_pk=request_pk)),
        ("entra", entra_queryset(filters, scope, request_pk=request_pk)),
    ]
    for source, branches in sources:
        make = portal_row if source == "portal" else entra_row
        for qs in branches or ():
            batches = _keyset_stream(
                qs,
                source=source,
                descending=filters.descending,
                after=after,
                batch=batch,
                limit=limit,
                plan=plan,
            )
            streams.append(_enriched(batches, make) if enrich else _rows(batches, make))
    merged = heapq.merge(
        *streams,
        key=lambda row: (row.at, SOURCE_RANK[row.source], row.id),
        reverse=filters.descending,
    )
    return _distinct(merged)


def _distinct(rows: Iterator[HistoryRow]) -> Iterator[HistoryRow]:
    """Drop a row matched by several branches: in the merged order its copies are adjacent."""
    previous: tuple[str, int] | None = None
    for row in rows:
        identity = (row.source, row.id)
        if identity != previous:
            yield row
        previous = identity


@dataclass(frozen=True)
class HistoryPage:
    """One page of history. ``next_cursor``: pass as ``after`` for the following page (None on
    the last page); ``prev_cursor``: pass as ``before`` for the page before (None on the first)."""

    rows: list[HistoryRow]
    next_cursor: Cursor | None
    prev_cursor: Cursor | None
    filters: HistoryFilters
    scope: HistoryScope


def history_query(
    filters: HistoryFilters,
    viewer: Any,
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    page_size: int = PAGE_SIZE,
) -> HistoryPage:
    """One page of the merged history that ``viewer`` may read, in ``filters.order``.

    ``after``: rows strictly beyond this position (the next page); ``before``: the page that
    ends just before this position (the previous page). Each table is asked for at most
    ``page_size + 1`` rows through its (filter, time, id) index; the extra row tells whether
    another page exists. Rows come with their request, verification, approval and linked Entra
    records attached.
    """
    if after is not None and before is not None:
        raise ValueError("give after or before, not both")
    page_size = max(1, min(page_size, PAGE_SIZE_MAX))
    scope = history_scope_for(viewer, opened_target_id=filters.target)
    backwards = before is not None
    read_filters = filters.reversed() if backwards else filters
    stream = merged_stream(
        read_filters,
        scope,
        after=before if backwards else after,
        batch=page_size + 1,
        limit=page_size + 1,
        enrich=False,
    )
    rows: list[HistoryRow] = []
    for row in stream:
        rows.append(row)
        if len(rows) > page_size:
            break
    more = len(rows) > page_size
    rows = rows[:page_size]
    if backwards:
        rows.reverse()
        prev_cursor = rows[0].cursor if more and rows else None
        next_cursor = rows[-1].cursor if rows else None
    else:
        next_cursor = rows[-1].cursor if more else None
        prev_cursor = rows[0].cursor if after is not None and rows else None
    attach_links(rows)
    return HistoryPage(
        rows=rows, next_cursor=next_cursor, prev_cursor=prev_cursor, filters=filters, scope=scope
    )


def history_rows(
    filters: HistoryFilters, viewer: Any, *, batch: int | None = None
) -> Iterator[HistoryRow]:
    """Every row ``viewer`` may read under ``filters``, in order, with requests attached, read in
    keyset batches of ``batch`` (default ``flat.EXPORT_BATCH``) rows per table: memory stays bounded
    by two batches however many rows match."""
    scope = history_scope_for(viewer, opened_target_id=filters.target)
    size = batch or flat.EXPORT_BATCH
    return merged_stream(filters, scope, after=None, batch=size, limit=None, enrich=True)
