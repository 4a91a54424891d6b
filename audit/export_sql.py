"""The CSV export written by PostgreSQL: ``COPY (the export's query) TO STDOUT WITH CSV``,
streamed through psycopg's copy into the response, byte for byte what the Python writer
(``audit.exports.csv_chunks`` over ``audit.selectors.history_flat_rows``) writes. In a request
(autocommit) it is one COPY of the whole export; inside a transaction, one COPY per keyset
batch (``copy_csv_chunks``).

The statement is the export's own branches (``audit.selectors.queries``: the same filters and
scope, each branch compiled by the ORM), with in SQL what the Python path does per row:

* the request columns joined (the request source's model, compiled by the ORM as well) and the
  Entra records linked to a portal event's request aggregated (ids in time order, initiators
  once each, in the order of their first record);
* the labels and outcomes of ``audit.selectors.filters`` as a join on their values;
* the time as Python's ``isoformat()`` in UTC, the booleans as yes/no, the cells a spreadsheet
  would run as a formula prefixed with ``'``, empty cells as NULL (PostgreSQL quotes an empty
  string, Python's csv module does not);
* the detail as ``json.dumps(detail, ensure_ascii=False, sort_keys=True)`` writes it, without
  ``PRIVATE_DETAIL_KEYS`` in an Agent's scope (``audit.selectors.flat``);
* the branches merged in the history's order, duplicates dropped.

What SQL cannot decide alone is left to the Python path, row by row: a row whose request is a
change history's change (a role change: the flow's own rules, ``audit.sources``), and a detail
deeper than ``JSON_DEPTH`` or holding a decimal number (Python reads it as a float). Such a row
comes out of COPY as a marker (``#<source rank>:<id>`` in the first cell; a real row starts with
its time, a digit) and is replaced by the line the Python writer makes of it (read on a worker
thread's own connection during the COPY, or between two batches' COPYs).

COPY ends a row with ``\\n``, Python's csv module with ``\\r\\n``: each row arrives as one
message (psycopg's ``Copy.read``), so the end of each message is replaced; a chunk with no line
break inside its cells (the count of ``\\n`` is the count of rows) is converted at once, cut only
at its markers.
"""

# The statements are written as text (COPY takes no parameters): every value in them is quoted
# by psycopg (``_Sql.value``, the ORM's parts bound by ``_Sql.bound``) or is an integer or a
# name from this module, never text from a request.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connections
from django.db.models import F, Q, QuerySet

from audit.models import DirectoryAuditRecord
from audit.permissions import history_scope_for
from audit.selectors.filters import (
    ENTRA_RESULT_OUTCOME,
    KIND_LABELS,
    PORTAL_KIND_OUTCOME,
    SOURCE_RANK,
    Cursor,
    HistoryFilters,
    Source,
)
from audit.selectors.flat import FLAT_FIELDS, PRIVATE_DETAIL_KEYS, FlatRow, flat_rows_by_key
from audit.selectors.queries import beyond, entra_queryset, portal_queryset, request_pk_for
from audit.sources import change_histories, request_manager, request_source

# Nesting of a detail that SQL writes (a dict of dicts of lists is 3); a deeper one is Python's.
JSON_DEPTH = 3
# Rows per chunk of the response (as ``audit.exports.ROWS_PER_CHUNK``).
ROWS_PER_CHUNK = 1000

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PORTAL_RANK = SOURCE_RANK["portal"]
_ENTRA_RANK = SOURCE_RANK["entra"]

_PORTAL_COLUMNS = (
    ("at", "created_at"),
    ("id", "id"),
    ("kind", "kind"),
    ("actor_name", "actor_name"),
    ("actor_oid", "actor_oid"),
    ("target_id", "target_id"),
    ("target_name", "target_name"),
    ("ticket", "ticket"),
    ("req", "request"),
    ("detail", "detail"),
    ("actor", "actor"),
)
_ENTRA_COLUMNS = (
    ("at", "activity_at"),
    ("id", "id"),
    ("activity", "activity"),
    ("result", "result"),
    ("reason", "result_reason"),
    ("by_kind", "initiated_by_kind"),
    ("by_id", "initiated_by_id"),
    ("by_name", "initiated_by_name"),
    ("target_id", "target_id"),
    ("target_name", "target_name"),
    ("target_upn", "target_upn"),
    ("correlation_id", "correlation_id"),
    ("entra_id", "entra_id"),
    ("req", "action_request_id"),
    ("outside", "outside_portal"),
)
_REQUEST_COLUMNS = (
    ("pk", "pk"),
    ("public_id", "public_id"),
    ("kind", "kind"),
    ("status", "status"),
    ("requester_id", "requester_id"),
    ("requester_oid", "requester__username"),
    ("requester_name", "requester_name"),
    ("target_upn", "target_upn"),
    ("ticket", "ticket"),
    ("method", "verification__method"),
    ("manual_check", "verification__manual_check"),
    ("decided_by_name", "decided_by_name"),
)


class _Sql:
    """Writes the statement as plain text: the values quoted by psycopg (client side, as
    ``COPY`` takes no parameters), the ORM's parts bound to their parameters."""

    def __init__(self, raw_connection: Any) -> None:
        import psycopg

        self._cursor = psycopg.ClientCursor(raw_connection)
        # How ``_requests_join`` reads the requests (set per statement by ``_Export``).
        self.per_row = True

    def value(self, value: Any) -> str:
        return self._cursor.mogrify("%s", (value,))

    def bound(self, text: str, params: Iterable[Any]) -> str:
        return self._cursor.mogrify(text, tuple(params))

    def values_table(self, rows: Iterable[tuple[Any, ...]], alias: str, names: str) -> str:
        """``(VALUES (...), ...) AS alias(names)``, every value text."""
        body = ", ".join(
            "(" + ", ".join(f"{self.value(v)}::text" for v in row) + ")" for row in rows
        )
        return f"(VALUES {body}) AS {alias}({names})"


def _compiled(
    sql: _Sql, qs: QuerySet[Any, Any], prefix: str, columns: tuple[tuple[str, str], ...]
) -> str:
    """``qs`` (unordered) as SQL selecting ``columns``, each named ``<prefix>_<name>``."""
    values = qs.order_by().values(**{f"{prefix}_{name}": F(field) for name, field in columns})
    text, params = values.query.get_compiler(using=qs.db).as_sql()
    return sql.bound(text, params)


def _branches_sql(sql: _Sql, branches: list[QuerySet[Any, Any]], prefix: str, columns: Any) -> str:
    """The union of the branches (one table's), duplicates dropped, as a FROM item's SQL."""
    parts = [f"({_compiled(sql, qs, prefix, columns)})" for qs in branches]
    return " UNION ".join(parts) if len(parts) > 1 else parts[0][1:-1]


def _cell(expr: str) -> str:
    """A text cell: NULL when empty (COPY writes NULL as nothing), ``'`` before a formula."""
    # ascii(): the first character's code, an integer (0 for ""): cheaper than a text compare.
    starts = ", ".join(str(ord(c)) for c in _FORMULA_START)
    return (
        f"CASE WHEN {expr} = '' THEN NULL WHEN ascii({expr}) IN ({starts})"
        f" THEN '''' || {expr} ELSE {expr} END"
    )


def _time(expr: str) -> str:
    """``datetime.isoformat()`` of the time in UTC (no fraction when it is whole seconds)."""
    return (
        f"replace(to_char({expr} AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '.000000+', '+')"
    )


def _json(expr: str, depth: int, withhold: str) -> str:
    """``json.dumps(value, ensure_ascii=False, sort_keys=True)`` of the jsonb ``expr``, objects
    and arrays down to ``depth`` levels; ``withhold`` (SQL, true or false) leaves out the keys of
    ``PRIVATE_DETAIL_KEYS`` at every level. PostgreSQL escapes strings as Python does."""
    if depth == 0:
        return f"{expr}::text"
    key, value, number = f"k{depth}", f"v{depth}", f"n{depth}"
    private = ", ".join(f"'{k}'" for k in sorted(PRIVATE_DETAIL_KEYS))
    inner = _json(value, depth - 1, withhold)
    obj = (
        f"(SELECT '{{' || string_agg(to_jsonb({key})::text || ': ' || {inner}, ', '"
        f" ORDER BY {key} COLLATE \"C\") || '}}'"
        f" FROM jsonb_each({expr}) AS j{depth}({key}, {value})"
        f" WHERE NOT ({withhold} AND {key} IN ({private})))"
    )
    array = (
        f"(SELECT '[' || string_agg({inner}, ', ' ORDER BY {number}) || ']'"
        f" FROM jsonb_array_elements({expr}) WITH ORDINALITY AS a{depth}({value}, {number}))"
    )
    return (
        f"CASE jsonb_typeof({expr}) WHEN 'object' THEN coalesce({obj}, '{{}}')"
        f" WHEN 'array' THEN coalesce({array}, '[]') ELSE {expr}::text END"
    )


# A detail Python writes as "" (it is falsy once loaded: {}, [], "", 0, false, null).
_FALSY_JSON = "('{}'::jsonb, '[]'::jsonb, '\"\"'::jsonb, '0'::jsonb, 'false'::jsonb, 'null'::jsonb)"


def _detail_is_python(expr: str) -> str:
    """True when SQL cannot write the detail as Python does: deeper than JSON_DEPTH, or with a
    decimal number (json.loads makes it a float, whose repr may differ from the text)."""
    return (
        f"({expr}::text ~ '[0-9][.]' OR jsonb_path_exists({expr}, "
        f'\'strict $.**{{{JSON_DEPTH} to last}} ? (@.type() == "object" || @.type() == "array")\'))'
    )


def _requests_join(sql: _Sql, request: str) -> str:
    """``LEFT JOIN`` of the request columns of the row's request (``request``: its id); in a
    batch (``sql.per_row``) read by primary key row by row: its own requests, not the table."""
    requests = _compiled(sql, request_manager().all(), "r", _REQUEST_COLUMNS)
    if not sql.per_row:
        # The whole export: the planner's join (a hash of all requests, built once).
        return f"LEFT JOIN ({requests}) r ON r.r_pk = {request}"
    # OFFSET 0 keeps it a subquery run per row (else the planner hashes the whole table for
    # each batch); the test of the row's own column makes a row without a request skip it.
    return (
        f"LEFT JOIN LATERAL (SELECT * FROM ({requests}) r0 WHERE {request} IS NOT NULL"
        f" AND r0.r_pk = {request} OFFSET 0) r ON true"
    )


def _verification(sql: _Sql) -> str:
    """The request's verification as ``request_infos`` words it (the manual check, else the
    method's label, else the method; "" without one)."""
    labels = request_source().verification_labels
    cases = " ".join(f"WHEN {sql.value(k)} THEN {sql.value(v)}" for k, v in labels.items())
    by_method = f"CASE r.r_method {cases} ELSE r.r_method END" if cases else "r.r_method"
    return (
        "CASE WHEN coalesce(r.r_method, '') = '' THEN ''"
        " WHEN coalesce(r.r_manual_check, '') <> '' THEN r.r_manual_check"
        f" ELSE {by_method} END"
    )


def _portal_select(sql: _Sql, branches: list[QuerySet[Any, Any]], viewer_pk: int | None) -> str:
    source = _branches_sql(sql, branches, "p", _PORTAL_COLUMNS)
    keys = [h.event_key for h in change_histories()]
    no_request = "coalesce(p.p_req, 0) = 0"
    by_change = (
        f"({no_request} AND p.p_detail ?| ARRAY[{', '.join(sql.value(k) for k in keys)}]::text[])"
        if keys
        else "false"
    )
    falsy = f"(p.p_detail IS NULL OR p.p_detail IN {_FALSY_JSON})"
    withhold = (
        "false"
        if viewer_pk is None
        else f"(coalesce(p.p_actor = {int(viewer_pk)}, false) IS NOT TRUE"
        f" AND coalesce(r.r_requester_id = {int(viewer_pk)}, false) IS NOT TRUE)"
    )
    detail = (
        f"CASE WHEN {falsy} THEN NULL"
        f" ELSE nullif(nullif({_json('p.p_detail', JSON_DEPTH, withhold)}, '{{}}'), '[]') END"
    )
    python = f"({by_change} OR (NOT {falsy} AND {_detail_is_python('p.p_detail')}))"
    kinds = {**KIND_LABELS, **PORTAL_KIND_OUTCOME}
    labels = sql.values_table(
        ((k, KIND_LABELS.get(k, k), PORTAL_KIND_OUTCOME.get(k, "")) for k in kinds),
        "kl",
        "kind, label, outcome",
    )
    dar = DirectoryAuditRecord._meta.db_table
    # The Entra records linked to the batch's requests, aggregated once per request: ids in
    # time order, initiators once each in the order of their first record (``_link_columns``).
    links = (
        "(SELECT x.action_request_id AS rid,"
        " string_agg(x.entra_id, ' ' ORDER BY x.activity_at, x.id) AS ids,"
        " string_agg(x.initiated_by_name, ', ' ORDER BY x.activity_at, x.id)"
        " FILTER (WHERE x.is_first AND x.initiated_by_name <> '') AS names FROM"
        " (SELECT action_request_id, entra_id, initiated_by_name, activity_at, id,"
        " row_number() OVER (PARTITION BY action_request_id, initiated_by_name"
        " ORDER BY activity_at, id) = 1 AS is_first"
        f' FROM "{dar}" WHERE action_request_id IN (SELECT p_req FROM q)) x GROUP BY 1) l'
    )
    # The batch's requests once each (q), with their columns and links (rq), joined by hash.
    requests = (
        "q AS (SELECT DISTINCT p_req FROM p WHERE p_req IS NOT NULL),"
        f" rq AS (SELECT r.*, l.ids AS l_ids, l.names AS l_names FROM q"
        f" {_requests_join(sql, 'q.p_req')} LEFT JOIN {links} ON l.rid = r.r_pk"
        " WHERE r.r_pk IS NOT NULL)"
    )
    cells = [
        f"CASE WHEN {python} THEN '#{_PORTAL_RANK}:' || p.p_id ELSE {_time('p.p_at')} END",
        "'portal'",
        _cell("p.p_kind"),
        _cell("coalesce(kl.label, p.p_kind)"),
        _cell("coalesce(kl.outcome, '')"),
        _cell("CASE WHEN p.p_actor_name <> '' THEN p.p_actor_name"
              " ELSE coalesce(r.r_requester_name, '') END"),
        _cell("CASE WHEN p.p_actor_oid <> '' THEN p.p_actor_oid"
              " ELSE coalesce(r.r_requester_oid, '') END"),
        _cell("p.p_target_id"),
        _cell("p.p_target_name"),
        _cell("coalesce(r.r_target_upn, '')"),
        _cell("CASE WHEN p.p_ticket <> '' THEN p.p_ticket ELSE coalesce(r.r_ticket, '') END"),
        "r.r_public_id::text",
        _cell("coalesce(r.r_kind, '')"),
        _cell("coalesce(r.r_status, '')"),
        _cell(f"coalesce({_verification(sql)}, '')"),
        _cell("coalesce(r.r_decided_by_name, '')"),
        _cell("coalesce(r.l_ids, '')"),
        _cell("coalesce(r.l_names, '')"),
        "NULL",
        "'no'",
        "NULL",
        "NULL",
        detail,
    ]  # fmt: skip
    return (
        f"WITH p AS ({source}), {requests} SELECT {', '.join(cells)}, p.p_at AS s_at,"
        f" {_PORTAL_RANK} AS s_rank, p.p_id AS s_id"
        f" FROM p LEFT JOIN rq r ON r.r_pk = p.p_req LEFT JOIN {labels} ON kl.kind = p.p_kind"
    )


def _entra_select(sql: _Sql, branches: list[QuerySet[Any, Any]]) -> str:
    source = _branches_sql(sql, branches, "e", _ENTRA_COLUMNS)
    python = (
        "(coalesce(e.e_req, 0) = 0 AND e.e_activity ~* ' (to|from) role')"
        if change_histories()
        else "false"
    )
    user = sql.value(DirectoryAuditRecord.InitiatorKind.USER.value)
    outcomes = " ".join(
        f"WHEN {sql.value(k)} THEN {sql.value(v)}" for k, v in ENTRA_RESULT_OUTCOME.items()
    )
    outcome = f"CASE e.e_result {outcomes} ELSE '' END" if outcomes else "''"
    cells = [
        f"CASE WHEN {python} THEN '#{_ENTRA_RANK}:' || e.e_id ELSE {_time('e.e_at')} END",
        "'entra'",
        _cell("e.e_activity"),
        _cell("e.e_activity"),
        _cell(outcome),
        _cell(f"CASE WHEN e.e_by_kind = {user} AND e.e_by_name <> '' THEN e.e_by_name"
              " ELSE coalesce(r.r_requester_name, '') END"),
        _cell(f"CASE WHEN e.e_by_kind = {user} THEN e.e_by_id ELSE '' END"),
        _cell("e.e_target_id"),
        _cell("e.e_target_name"),
        _cell("e.e_target_upn"),
        _cell("coalesce(r.r_ticket, '')"),
        "r.r_public_id::text",
        _cell("coalesce(r.r_kind, '')"),
        _cell("coalesce(r.r_status, '')"),
        _cell(f"coalesce({_verification(sql)}, '')"),
        _cell("coalesce(r.r_decided_by_name, '')"),
        _cell("e.e_entra_id"),
        _cell("e.e_by_name"),
        _cell("e.e_by_kind"),
        "CASE WHEN e.e_outside THEN 'yes' ELSE 'no' END",
        _cell("e.e_reason"),
        _cell("e.e_correlation_id"),
        "NULL",
    ]  # fmt: skip
    return (
        f"SELECT {', '.join(cells)}, e.e_at AS s_at, {_ENTRA_RANK} AS s_rank, e.e_id AS s_id"
        f" FROM ({source}) e {_requests_join(sql, 'e.e_req')}"
    )


def _upto(time_field: str, rank: int, bound: Cursor, descending: bool) -> Q:
    """Rows of one table (of source rank ``rank``) at or before ``bound`` in the merged order
    (the converse of ``audit.selectors.queries.beyond``), the time bound an index condition."""
    op, strict = ("gte", "gt") if descending else ("lte", "lt")
    if rank == bound.rank:
        return Q(**{f"{time_field}__{op}": bound.at}) & (
            Q(**{f"{time_field}__{strict}": bound.at}) | Q(**{f"id__{op}": bound.id})
        )
    same_instant_before = (rank > bound.rank) == descending
    return Q(**{f"{time_field}__{op if same_instant_before else strict}": bound.at})


def _matching(branches: list[QuerySet[Any, Any]] | None) -> list[QuerySet[Any, Any]]:
    """The branches that can match a row (``id__in=[]`` is no SQL at all: the ORM raises)."""
    found = []
    for qs in branches or ():
        try:
            qs.query.get_compiler(using=qs.db).as_sql()
        except EmptyResultSet:
            continue
        found.append(qs)
    return found


class _Export:
    """The export of ``filters`` as ``viewer`` sees them, read in keyset batches of ``batch``
    rows: the branches (as ``history_flat_rows`` makes them) and the statements of a batch."""

    def __init__(
        self, filters: HistoryFilters, viewer: Any, raw_connection: Any, batch: int, using: str
    ) -> None:
        self.using = using
        scope = history_scope_for(viewer, opened_target_id=filters.target)
        self.viewer_pk = None if scope.everything else scope.user_id
        request_pk = request_pk_for(filters.request) if filters.request else None
        self.sql = _Sql(raw_connection)
        self.descending = filters.descending
        self.batch = batch
        self.branches: list[tuple[Source, str, list[QuerySet[Any, Any]]]] = []
        portal = _matching(portal_queryset(filters, scope, request_pk=request_pk))
        if portal:
            self.branches.append(("portal", "created_at", portal))
        entra = _matching(entra_queryset(filters, scope, request_pk=request_pk))
        if entra:
            self.branches.append(("entra", "activity_at", entra))

    def _within(
        self, source: Source, time_field: str, branches: list[QuerySet[Any, Any]],
        after: Cursor | None, upto: Cursor | None,
    ) -> list[QuerySet[Any, Any]]:  # fmt: skip
        rank = SOURCE_RANK[source]
        if after is not None:
            branches = [
                qs.filter(beyond(time_field, rank, after, self.descending)) for qs in branches
            ]
        if upto is not None:
            branches = [
                qs.filter(_upto(time_field, rank, upto, self.descending)) for qs in branches
            ]
        return branches

    def boundary(self, after: Cursor | None) -> Cursor | None:
        """The ``batch``-th row beyond ``after`` (None when fewer rows are left): one query on
        the branches' (time, id) indexes."""
        parts = []
        for source, time_field, branches in self._within_all(after, None):
            order = (f"-{time_field}", "-id") if self.descending else (time_field, "id")
            for qs in branches:
                keys = qs.order_by(*order).values(k_at=F(time_field), k_id=F("id"))[: self.batch]
                text, params = keys.query.get_compiler(using=qs.db).as_sql()
                rank = SOURCE_RANK[source]
                parts.append(
                    f"(SELECT k_at, {rank} AS k_rank, k_id FROM ({self.sql.bound(text, params)}) b)"
                )
        if not parts:
            return None
        direction = "DESC" if self.descending else "ASC"
        # Only several branches of one table can hold the same row.
        union = " UNION " if any(len(b) > 1 for _s, _f, b in self.branches) else " UNION ALL "
        statement = (
            f"SELECT k_at, k_rank, k_id FROM ({union.join(parts)}) u ORDER BY k_at {direction},"
            f" k_rank {direction}, k_id {direction} OFFSET {self.batch - 1} LIMIT 1"
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(statement)
            found = cursor.fetchone()
        return Cursor(found[0], found[1], found[2]) if found else None

    def _within_all(
        self, after: Cursor | None, upto: Cursor | None
    ) -> list[tuple[Source, str, list[QuerySet[Any, Any]]]]:
        return [
            (source, field, self._within(source, field, branches, after, upto))
            for source, field, branches in self.branches
        ]

    def statement(self, after: Cursor | None, upto: Cursor | None) -> str:
        """The SELECT of the rows beyond ``after`` up to ``upto`` (either may be None), in
        the history's order, as CSV cells."""
        selects = []
        # A batch reads its own requests row by row; the whole export joins them all at once.
        self.sql.per_row = after is not None or upto is not None
        for source, _field, branches in self._within_all(after, upto):
            if source == "portal":
                selects.append(_portal_select(self.sql, branches, self.viewer_pk))
            else:
                selects.append(_entra_select(self.sql, branches))
        order = "DESC" if self.descending else "ASC"
        columns = ", ".join(f"c{i}" for i in range(len(FLAT_FIELDS)))
        union = " UNION ALL ".join(f"({s})" for s in selects)
        return (
            f"SELECT {columns} FROM ({union}) AS u({columns}, s_at, s_rank, s_id)"
            f" ORDER BY s_at {order}, s_rank {order}, s_id {order}"
        )


# For the export's statements, on the export's connection only (RESET after): no JIT (the
# nested detail subqueries' estimates are far above its threshold, and compiling a statement
# took seconds where running it takes milliseconds), and a batch's sort in memory.
_SETTINGS = (("jit", "off"), ("work_mem", "'64MB'"))

# Rows per COPY in a transaction: a batch is held until the rows it leaves to Python are
# written, so this bounds memory (about 20 MB); fewer, larger batches cost fewer plans.
COPY_BATCH = 50000


def copy_csv_chunks(
    filters: HistoryFilters,
    viewer: Any,
    line_of: Callable[[FlatRow], bytes],
    *,
    using: str = "default",
    batch: int | None = None,
) -> Iterator[bytes]:
    """The rows of the CSV export (no header), as PostgreSQL writes them, in chunks of
    ``ROWS_PER_CHUNK`` rows. ``line_of``: the Python writer's line of one flat row (for the
    rows SQL leaves to Python).

    Outside a transaction (a request: the export's event is committed), one COPY of the whole
    export, the rows left to Python read on a worker thread with its own connection while the
    COPY goes on (no query can run on a connection during its COPY). Inside one (tests, a
    caller's atomic block: another connection would not see its rows), one COPY per keyset
    batch of ``batch`` rows (default ``COPY_BATCH``), those rows read between two COPYs."""
    connection = connections[using]
    connection.ensure_connection()
    export = _Export(filters, viewer, connection.connection, batch or COPY_BATCH, using)
    if not export.branches:
        return
    with connection.cursor() as cursor:
        for name, value in _SETTINGS:
            cursor.execute(f"SET {name} = {value}")
    try:
        if connection.in_atomic_block:
            yield from _batched(export, line_of)
        else:
            yield from _streamed(export, line_of)
    finally:
        # Back to the session's defaults (a failed transaction undoes the SETs itself).
        if connection.connection is not None:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                for name, _value in _SETTINGS:
                    cursor.execute(f"RESET {name}")


def _written(
    pieces: list[bytes | list[bytes]],
    wanted: list[tuple[int, int]],
    rows: dict[tuple[int, int], FlatRow],
    line_of: Callable[[FlatRow], bytes],
) -> Iterator[bytes]:
    """The chunks of ``pieces`` (``_piece``), each marker replaced by the line of its row
    (``wanted`` in order; a row gone since the COPY, pruned by retention, is left out)."""
    keys = iter(wanted)
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
        else:
            lines = []
            for line in piece:
                if not line:
                    row = rows.get(next(keys))
                    line = line_of(row) if row is not None else b""
                lines.append(line)
            yield b"".join(lines)


def _batched(export: _Export, line_of: Callable[[FlatRow], bytes]) -> Iterator[bytes]:
    """One COPY per keyset batch; the rows left to Python read after each."""
    connection = connections[export.using]
    after: Cursor | None = None
    while True:
        upto = export.boundary(after)
        copy_sql = f"COPY ({export.statement(after, upto)}) TO STDOUT WITH CSV"
        pieces: list[bytes | list[bytes]] = []
        wanted: list[tuple[int, int]] = []
        with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
            part: list[Any] = []
            for block in copy:
                part.append(block)
                if len(part) == ROWS_PER_CHUNK:
                    pieces.append(_piece(part, wanted))
                    part = []
            if part:
                pieces.append(_piece(part, wanted))
        rows = flat_rows_by_key(wanted, export.viewer_pk, using=export.using) if wanted else {}
        yield from _written(pieces, wanted, rows, line_of)
        if upto is None:
            return
        after = upto


# Streaming: the chunks whose rows left to Python are read together (at most this many chunks,
# or as soon as this many rows wait), and how many such groups may wait at once.
GROUP_CHUNKS = 25
GROUP_ROWS = 5000
GROUPS_WAITING = 2

_Group = tuple[list[bytes | list[bytes]], list[tuple[int, int]], "Future[dict[Any, Any]] | None"]


def _streamed(export: _Export, line_of: Callable[[FlatRow], bytes]) -> Iterator[bytes]:
    """One COPY of the whole export; the rows left to Python read on a worker thread, a group
    of chunks at a time, each group sent once its rows are written (memory: a few groups)."""
    connection = connections[export.using]
    copy_sql = f"COPY ({export.statement(None, None)}) TO STDOUT WITH CSV"
    groups: deque[_Group] = deque()

    def leading(final: bool) -> Iterator[bytes]:
        """The groups at the head whose rows are written (all of them at the end; the
        oldest ones, waiting for them, when too many wait)."""
        while groups:
            pieces, wanted, future = groups[0]
            if not (final or future is None or future.done() or len(groups) > GROUPS_WAITING):
                return
            groups.popleft()
            yield from _written(pieces, wanted, future.result() if future else {}, line_of)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-export-sql") as worker:
        try:
            pieces: list[bytes | list[bytes]] = []
            wanted: list[tuple[int, int]] = []

            def close_group() -> None:
                nonlocal pieces, wanted
                future = (
                    worker.submit(flat_rows_by_key, wanted, export.viewer_pk, using=export.using)
                    if wanted
                    else None
                )
                groups.append((pieces, wanted, future))
                pieces, wanted = [], []

            with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
                part: list[Any] = []
                for block in copy:
                    part.append(block)
                    if len(part) == ROWS_PER_CHUNK:
                        pieces.append(_piece(part, wanted))
                        part = []
                        if len(pieces) >= GROUP_CHUNKS or len(wanted) >= GROUP_ROWS:
                            close_group()
                            yield from leading(final=False)
                if part:
                    pieces.append(_piece(part, wanted))
            close_group()
            yield from leading(final=True)
        finally:
            # The worker's connection is its thread's own: close it there.
            with contextlib.suppress(RuntimeError):
                worker.submit(connections.close_all).result()


def _piece(blocks: list[Any], wanted: list[tuple[int, int]]) -> bytes | list[bytes]:
    """The rows ``blocks`` (one COPY message each, ending in ``\\n``) as the Python writer's
    lines (``\\r\\n`` at the end): one string when no row is left to Python, else a list of
    strings with ``b""`` for each marker, whose key is appended to ``wanted``."""
    data = b"".join(blocks)
    if data.count(b"\n") == len(blocks):
        # No line break inside a cell: every \n ends a row, and a row starting with # is a
        # marker.
        if not data.startswith(b"#") and b"\n#" not in data:
            return data.replace(b"\n", b"\r\n")
        return _cut_at_markers(data, wanted)
    lines: list[bytes] = []
    for block in blocks:
        line = bytes(block)
        if line.startswith(b"#"):
            wanted.append(_marker_key(line))
            lines.append(b"")
        else:
            lines.append(line[:-1] + b"\r\n")
    return lines


def _cut_at_markers(data: bytes, wanted: list[tuple[int, int]]) -> list[bytes]:
    """Rows ``data`` without a line break inside a cell, cut at the markers: each run of real
    rows converted at once (one string), ``b""`` for each marker (its key appended to
    ``wanted``). The work in Python is per marker, not per row."""
    # A line break before the first row: every marker is then found as \n#.
    text = b"\n" + data
    parts: list[bytes] = []
    run = 1
    while (found := text.find(b"\n#", run - 1)) >= 0:
        marker = found + 1
        if marker > run:
            parts.append(text[run:marker].replace(b"\n", b"\r\n"))
        run = text.index(b"\n", marker) + 1
        wanted.append(_marker_key(text[marker:run]))
        parts.append(b"")
    if run < len(text):
        parts.append(text[run:].replace(b"\n", b"\r\n"))
    return parts


def _marker_key(line: bytes) -> tuple[int, int]:
    """The (source rank, id) of a marker's line (``#<rank>:<id>,...``)."""
    rank, _, pk = line[1 : line.index(b",")].partition(b":")
    return int(rank), int(pk)
