"""The exports' stream: every history row as a plain tuple (``FLAT_FIELDS``), built without an
object per row, read in keyset batches (on PostgreSQL, the next batch on a worker thread).

In a limited scope (an Agent's), a portal event's ``detail`` keeps what the other agents wrote
out of the export: on an event that is neither the viewer's own nor about a request the viewer
made, the free-text keys of ``PRIVATE_DETAIL_KEYS`` (a manual check's evidence, a request's
reason, a decision's or an override's comment) are left out. An agent who opens a person reads
that person's history, not what colleagues wrote about the caller."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import BigIntegerField, Func, QuerySet

from audit.correlation import is_role_membership
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.permissions import history_scope_for
from audit.selectors.filters import (
    ENTRA_RESULT_OUTCOME,
    EPOCH,
    KIND_LABELS,
    PORTAL_KIND_OUTCOME,
    SOURCE_RANK,
    Cursor,
    HistoryFilters,
    Source,
)
from audit.selectors.queries import beyond, entra_queryset, portal_queryset, request_pk_for
from audit.selectors.rows import request_infos
from audit.sources import CandidateRecord, change_histories

# The free text people write into a portal event's detail: a manual check's evidence, a request's
# or a failed verification's reason, a Lead's decision or override comment. In an Agent's export
# these are left out of the events of other agents' work (``_withheld``).
PRIVATE_DETAIL_KEYS: frozenset[str] = frozenset({"evidence", "reason", "comment"})

# Rows per table and query in an export: large enough that the queries cost little beside the
# rows, small enough that two batches of plain tuples stay a few megabytes.
EXPORT_BATCH = 5000


# The fields of a flat row, in order (``history_flat_rows``). ``time`` is an aware datetime;
# ``request_id`` is the request's public id (a UUID) or None; ``outside_portal`` a bool;
# ``detail`` the portal event's JSON detail (None for Entra records); every other field a str.
FLAT_FIELDS: tuple[str, ...] = (
    "time",
    "source",
    "kind",
    "kind_label",
    "outcome",
    "agent_name",
    "agent_oid",
    "target_id",
    "target_name",
    "target_upn",
    "ticket",
    "request_id",
    "request_kind",
    "request_status",
    "verification",
    "decided_by",
    "entra_id",
    "entra_initiated_by",
    "entra_initiated_by_kind",
    "outside_portal",
    "result_reason",
    "correlation_id",
    "detail",
)
FlatRow = tuple[Any, ...]
# A merge item: (time, source rank, id, flat row). Tuples compare on the first three; two items
# equal there are the same database row, so the comparison never reaches the dicts inside.
_FlatItem = tuple[datetime, int, int, FlatRow]

_PORTAL_FLAT_FIELDS = (
    "created_at",
    "id",
    "kind",
    "actor_name",
    "actor_oid",
    "target_id",
    "target_name",
    "ticket",
    "request",
    "detail",
    "actor",
)
_ENTRA_FLAT_FIELDS = (
    "activity_at",
    "id",
    "activity",
    "result",
    "result_reason",
    "initiated_by_kind",
    "initiated_by_id",
    "initiated_by_name",
    "target_id",
    "target_name",
    "target_upn",
    "correlation_id",
    "entra_id",
    "action_request_id",
    "outside_portal",
)
# A row without a request: (requester_name, ticket, public_id, kind, status, verification,
# decided_by_name, requester_id, requester_oid, target_upn).
_NO_REQUEST: tuple[Any, ...] = ("", "", None, "", "", "", "", None, "", "")
# A portal event's Entra side: (entra ids, initiators), each space- or comma-joined.
_NO_LINKS: tuple[str, str] = ("", "")


def _request_columns(ids: Iterable[int | None]) -> dict[int, tuple[Any, ...]]:
    """For each request id: the request's columns of a flat row, laid out as ``_NO_REQUEST``."""
    return {
        pk: (
            info.requester_name,
            info.ticket,
            info.public_id,
            info.kind,
            info.status,
            info.verification_label,
            info.decided_by_name,
            info.requester_id,
            info.requester_oid,
            info.target_upn,
        )
        for pk, info in request_infos(i for i in ids if i).items()
    }


def _change_columns(
    details: Iterable[Any],
) -> tuple[dict[tuple[str, int], tuple[Any, ...]], dict[tuple[str, int], tuple[str, ...]]]:
    """For the portal events of a change history's changes (role changes) among ``details``:
    each change's columns laid out as ``_NO_REQUEST`` and the Entra ids linked to it, by
    (flow, pk). One query per flow with such events in the batch, none otherwise."""
    columns: dict[tuple[str, int], tuple[Any, ...]] = {}
    entra_ids: dict[tuple[str, int], tuple[str, ...]] = {}
    wanted: dict[str, set[int]] = {}
    histories = change_histories()
    for detail in details:
        if isinstance(detail, dict):
            for history in histories:
                pk = detail.get(history.event_key)
                if isinstance(pk, int) and pk > 0:
                    wanted.setdefault(history.flow, set()).add(pk)
    for history in histories:
        for pk, summary in history.summaries(wanted.get(history.flow, ())).items():
            key = (history.flow, pk)
            columns[key] = (
                summary.requester_name, summary.ticket, summary.public_id, history.flow,
                summary.status, "", summary.decided_by_name, None, summary.requester_oid,
                summary.target_upn,
            )  # fmt: skip
            entra_ids[key] = summary.entra_event_ids
    return columns, entra_ids


def _entra_change_columns(
    values: list[tuple[Any, ...]], micros: bool = False
) -> dict[int, tuple[Any, ...]]:
    """For the Entra records of a batch (``_ENTRA_FLAT_FIELDS``; the time as epoch microseconds
    when ``micros``) that a change history's change made (a role change), that change's
    columns laid out as ``_NO_REQUEST``, by record id."""
    epoch, one = EPOCH, _ONE_MICROSECOND
    candidates = [
        CandidateRecord(v[1], v[12], v[2], epoch + one * v[0] if micros else v[0])
        for v in values
        if not v[13] and is_role_membership(v[2])
    ]
    found: dict[int, tuple[Any, ...]] = {}
    if not candidates:
        return found
    for history in change_histories():
        owners = history.owners(candidates)
        summaries = history.summaries(set(owners.values()))
        for record_pk, change_pk in owners.items():
            if summary := summaries.get(change_pk):
                found[record_pk] = (
                    summary.requester_name, summary.ticket, summary.public_id, history.flow,
                    summary.status, "", summary.decided_by_name, None, summary.requester_oid,
                    summary.target_upn,
                )  # fmt: skip
    return found


def _link_columns(
    request_ids: Iterable[int], entra_ids: Iterable[str]
) -> tuple[dict[int, tuple[str, str]], dict[str, str]]:
    """The Entra records linked to the requests ``request_ids`` as (ids, initiators) per request,
    and the initiator of each record among ``entra_ids`` (a change's links): what a portal event
    of a request carries in ``entra_id`` / ``entra_initiated_by`` (one query each, if any)."""
    per_request: dict[int, tuple[list[str], list[str]]] = {}
    wanted = sorted({i for i in request_ids if i})
    if wanted:
        records = (
            DirectoryAuditRecord.objects.filter(action_request_id__in=wanted)
            .order_by("activity_at", "id")
            .values_list("action_request_id", "entra_id", "initiated_by_name")
        )
        for request_id, entra_id, by_name in records:
            ids, names = per_request.setdefault(request_id, ([], []))
            ids.append(entra_id)
            if by_name and by_name not in names:
                names.append(by_name)
    initiators: dict[str, str] = {}
    others = sorted(set(entra_ids))
    if others:
        initiators = dict(
            DirectoryAuditRecord.objects.filter(entra_id__in=others).values_list(
                "entra_id", "initiated_by_name"
            )
        )
    joined = {pk: (" ".join(ids), ", ".join(names)) for pk, (ids, names) in per_request.items()}
    return joined, initiators


class _EpochMicros(Func):
    """PostgreSQL: a timestamptz as integer microseconds since 1970, exactly (whole seconds and
    the microseconds apart, so no step goes through a float). Reading a timestamptz through
    Django's loader costs about 9 µs a row, in Python; an integer costs next to nothing."""

    output_field = BigIntegerField()
    template = (
        "(FLOOR(EXTRACT(EPOCH FROM DATE_TRUNC('second', %(expressions)s)))::bigint * 1000000"
        " + EXTRACT(MICROSECONDS FROM %(expressions)s)::bigint %%%% 1000000)"
    )


_ONE_MICROSECOND = timedelta(microseconds=1)


def _withheld(detail: Any) -> Any:
    """``detail`` without the keys of PRIVATE_DETAIL_KEYS, at any depth."""
    if isinstance(detail, dict):
        return {k: _withheld(v) for k, v in detail.items() if k not in PRIVATE_DETAIL_KEYS}
    if isinstance(detail, list):
        return [_withheld(v) for v in detail]
    return detail


def _portal_flat(
    values: list[tuple[Any, ...]], micros: bool, viewer_pk: int | None = None
) -> list[_FlatItem]:
    """Merge items of one batch of portal events (``_PORTAL_FLAT_FIELDS``; the time as epoch
    microseconds when ``micros``): one query for the batch's requests, then plain tuples (no
    objects, no dicts: the export's hot loop). With ``viewer_pk`` (a limited scope), the detail
    of an event neither by that user nor about their request is ``_withheld``."""
    requests = _request_columns(v[8] for v in values)
    changes, change_links = _change_columns(v[9] for v in values if not v[8])
    links, initiators = _link_columns(requests, (i for ids in change_links.values() for i in ids))
    histories = change_histories()
    kind_labels, outcomes, rank = KIND_LABELS, PORTAL_KIND_OUTCOME, SOURCE_RANK["portal"]
    epoch, one = EPOCH, _ONE_MICROSECOND
    items: list[_FlatItem] = []
    append = items.append
    for (
        t, pk, kind, actor_name, actor_oid, target_id, target_name, ticket, req, detail, actor,
    ) in values:  # fmt: skip
        at = epoch + one * t if micros else t
        entra_ids, entra_by = links.get(req, _NO_LINKS) if req else _NO_LINKS
        columns = requests.get(req, _NO_REQUEST) if req else _NO_REQUEST
        if not req and changes and isinstance(detail, dict):
            for history in histories:
                key = (history.flow, detail.get(history.event_key) or 0)
                if key in changes:
                    columns = changes[key]
                    ids = change_links.get(key, ())
                    entra_ids = " ".join(ids)
                    names = (initiators[i] for i in ids if initiators.get(i))
                    entra_by = ", ".join(dict.fromkeys(names))
        (
            name, req_ticket, public_id, req_kind, status, verification, decided, requester,
            requester_oid, upn,
        ) = columns  # fmt: skip
        if viewer_pk is not None and detail and viewer_pk not in (actor, requester):
            detail = _withheld(detail)
        append(
            (
                at,
                rank,
                pk,
                (
                    at, "portal", kind, kind_labels.get(kind, kind), outcomes.get(kind, ""),
                    actor_name or name, actor_oid or requester_oid, target_id, target_name, upn,
                    ticket or req_ticket, public_id, req_kind, status, verification, decided,
                    entra_ids, entra_by, "", False, "", "", detail,
                ),
            )
        )  # fmt: skip
    return items


def _entra_flat(
    values: list[tuple[Any, ...]], micros: bool, viewer_pk: int | None = None
) -> list[_FlatItem]:
    """Merge items of one batch of Entra records (``_ENTRA_FLAT_FIELDS``), as ``_portal_flat``
    (an Entra record has no detail: ``viewer_pk`` changes nothing)."""
    requests = _request_columns(v[13] for v in values)
    owners = _entra_change_columns(values, micros)
    user, rank = DirectoryAuditRecord.InitiatorKind.USER.value, SOURCE_RANK["entra"]
    epoch, one, outcomes = EPOCH, _ONE_MICROSECOND, ENTRA_RESULT_OUTCOME
    items: list[_FlatItem] = []
    append = items.append
    for (
        t, pk, activity, result, reason, by_kind, by_id, by_name, target_id, target_name,
        target_upn, correlation_id, entra_id, req, outside,
    ) in values:  # fmt: skip
        at = epoch + one * t if micros else t
        name, req_ticket, public_id, req_kind, status, verification, decided, *_rest = (
            requests.get(req, _NO_REQUEST) if req else owners.get(pk, _NO_REQUEST)
        )
        by_user = by_kind == user
        append(
            (
                at,
                rank,
                pk,
                (
                    at, "entra", activity, activity, outcomes.get(result, ""),
                    (by_name if by_user else "") or name, by_id if by_user else "",
                    target_id, target_name, target_upn, req_ticket, public_id, req_kind,
                    status, verification, decided, entra_id, by_name, by_kind, outside,
                    reason, correlation_id, None,
                ),
            )
        )  # fmt: skip
    return items


def _flat_stream(
    qs: QuerySet[Any, Any],
    *,
    source: Source,
    descending: bool,
    batch: int,
    viewer_pk: int | None = None,
) -> Iterator[_FlatItem]:
    """Every row of one branch as merge items, in (time, id) order, read in keyset batches of
    ``batch`` rows (one query each, no OFFSET). ``viewer_pk``: see ``_portal_flat``.

    On PostgreSQL outside a transaction, the next batch's query runs on a worker thread (with
    its own connection, closed at the end) while the caller formats the current batch: the
    server reads the next rows from the heap while Python writes the previous ones. Inside a
    transaction (tests, or a caller's atomic block) another connection would not see the
    caller's uncommitted rows, so the batches are read one after the other on the caller's own.
    """
    time_field, fields, make = (
        ("created_at", _PORTAL_FLAT_FIELDS, _portal_flat)
        if source == "portal"
        else ("activity_at", _ENTRA_FLAT_FIELDS, _entra_flat)
    )
    rank = SOURCE_RANK[source]
    order = (f"-{time_field}", "-id") if descending else (time_field, "id")
    connection = connections[qs.db]
    # The worker and the integer times go together: both serve the long exports outside a
    # transaction; in a transaction the plain path reads what the ORM gives.
    micros = connection.vendor == "postgresql" and not connection.in_atomic_block
    if micros:
        qs = qs.annotate(_at_us=_EpochMicros(time_field))
        fields = ("_at_us", *fields[1:])

    def read(position: Cursor | None) -> list[tuple[Any, ...]]:
        page = qs if position is None else qs.filter(beyond(time_field, rank, position, descending))
        return list(page.order_by(*order).values_list(*fields)[:batch])

    def after(values: list[tuple[Any, ...]]) -> Cursor:
        at, pk = values[-1][0], values[-1][1]
        return Cursor(EPOCH + _ONE_MICROSECOND * at if micros else at, rank, pk)

    if not micros:
        values = read(None)
        while True:
            yield from make(values, micros, viewer_pk)
            if len(values) < batch:
                return
            values = read(after(values))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-export") as worker:
        try:
            pending = worker.submit(read, None)
            while True:
                values = pending.result()
                full = len(values) == batch
                if full:
                    pending = worker.submit(read, after(values))
                yield from make(values, micros, viewer_pk)
                if not full:
                    return
        finally:
            # The worker's connection is its thread's own: close it there (an export that
            # stops early, e.g. the client went away, lands here too). At interpreter exit no
            # task can be scheduled any more, and the connection goes with the process.
            with contextlib.suppress(RuntimeError):
                worker.submit(connections.close_all).result()


def history_flat_rows(
    filters: HistoryFilters, viewer: Any, *, batch: int | None = None
) -> Iterator[FlatRow]:
    """What ``history_rows`` yields, as plain tuples laid out as ``FLAT_FIELDS``: the exports'
    path, which builds no object per row. Same order, scope and batching (``batch`` rows per
    branch and query, default ``EXPORT_BATCH``), so memory stays bounded by a few batches.
    In a limited scope, other agents' free text is left out of the details (module docstring)."""
    scope = history_scope_for(viewer, opened_target_id=filters.target)
    viewer_pk = None if scope.everything else scope.user_id
    size = batch or EXPORT_BATCH
    request_pk = request_pk_for(filters.request) if filters.request else None
    streams: list[Iterator[_FlatItem]] = []
    most_branches = 0
    sources: list[tuple[Source, list[QuerySet[Any, Any]] | None]] = [
        ("portal", portal_queryset(filters, scope, request_pk=request_pk)),
        ("entra", entra_queryset(filters, scope, request_pk=request_pk)),
    ]
    for source, branches in sources:
        most_branches = max(most_branches, len(branches or ()))
        for qs in branches or ():
            streams.append(
                _flat_stream(
                    qs,
                    source=source,
                    descending=filters.descending,
                    batch=size,
                    viewer_pk=viewer_pk,
                )
            )
    merged: Iterator[_FlatItem] = heapq.merge(*streams, reverse=filters.descending)
    if most_branches <= 1:
        # One branch per table: no row can come twice (the two tables have different ranks).
        return (item[3] for item in merged)
    return _distinct_flat(merged)


def _distinct_flat(items: Iterator[_FlatItem]) -> Iterator[FlatRow]:
    """Drop a row matched by several branches: in the merged order its copies are adjacent."""
    previous: tuple[int, int] | None = None
    for _at, rank, pk, row in items:
        identity = (rank, pk)
        if identity != previous:
            yield row
        previous = identity


def flat_rows_by_key(
    keys: Iterable[tuple[int, int]], viewer_pk: int | None, *, using: str = "default"
) -> dict[tuple[int, int], FlatRow]:
    """The flat rows of the rows ``keys`` ((source rank, id) pairs), as ``history_flat_rows``
    makes them (``viewer_pk``: see ``_portal_flat``): the rows the SQL export leaves to Python
    (``audit.export_sql``). Unknown keys are left out. A few queries for the whole list."""
    wanted: dict[int, list[int]] = {}
    for rank, pk in keys:
        wanted.setdefault(rank, []).append(pk)
    found: dict[tuple[int, int], FlatRow] = {}
    readers = (
        (PortalEvent, _PORTAL_FLAT_FIELDS, _portal_flat, SOURCE_RANK["portal"]),
        (DirectoryAuditRecord, _ENTRA_FLAT_FIELDS, _entra_flat, SOURCE_RANK["entra"]),
    )
    for model, fields, make, rank in readers:
        if ids := wanted.get(rank):
            values = list(
                model._default_manager.using(using)
                .filter(pk__in=ids)
                .order_by()
                .values_list(*fields)
            )
            for _at, item_rank, pk, row in make(values, False, viewer_pk):
                found[(item_rank, pk)] = row
    return found
