"""History as a lead reads it: one row per request, Entra-only events and events of no request
as rows of their own.

``request_history_query(filters, viewer)`` reads the same merged, filtered and scoped stream of
events as ``history_query`` (so every filter means the same in both views) and folds it: the
events of one request (an action request, or a change of a change history such as a role
change) become one :class:`HistoryEntry`, placed where the stream first meets one of them. The
caller verification a request used belongs to it too (its events name the verification, the
request names the verification). An entry carries every event of its request, the ones the
filters did not match included: a row expands to the request's whole story.

A page holds ``page_size`` entries. It reads on past the last one while the events still belong
to entries already on the page, so a request whose events lie together in time is never split
over two pages; one whose events lie apart (approved hours later) may show on both. Paging is by
the stream's keyset cursor, forward only (the first page is the newest, or oldest).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.permissions import HistoryScope, history_scope_for
from audit.selectors.compiled import values_rows
from audit.selectors.filters import Cursor, HistoryFilters
from audit.selectors.history import BatchPlan, merged_stream
from audit.selectors.rows import (
    ENTRA_FIELDS,
    PORTAL_DEFERRED,
    PORTAL_FIELDS,
    HistoryRow,
    RequestInfo,
    attach_changes,
    entra_row,
    portal_row,
    requests_with_records,
)
from audit.sources import change_histories, request_manager

K = PortalEvent.Kind
VERIFICATION_KINDS: tuple[str, ...] = (
    K.VERIFICATION_CODE_SENT,
    K.VERIFICATION_SUCCEEDED,
    K.VERIFICATION_FAILED,
    K.VERIFICATION_MANUAL,
)
# What a request's status says of its outcome (a key of OUTCOME_LABELS; "" while it is open).
STATUS_OUTCOMES: dict[str, str] = {
    "succeeded": "success",
    "partially_succeeded": "partial",
    "failed": "failure",
    "rejected": "stopped",
    "cancelled": "stopped",
    "expired": "stopped",
}
# How far before its request a verification's events may lie (a verification lives minutes).
VERIFICATION_LOOKBACK = timedelta(days=1)
# The most rows the request view reads at once after its first page of rows, in pages (a
# request makes six to eight events).
CHUNK_PAGES = 8

Key = tuple[str, int]


@dataclass
class HistoryEntry:
    """One row of the request view: a request with all its events (``request`` set), or one
    event of its own (``request`` None, ``events`` holds it alone). ``events`` run oldest first;
    ``entra`` are the request's Entra records among them."""

    key: str
    request: RequestInfo | None
    events: list[HistoryRow] = field(default_factory=list)

    @property
    def first(self) -> HistoryRow:
        return self.events[0]

    @property
    def at(self) -> datetime:
        """When the request was made (its first event), or the event's time."""
        if self.request is not None and self.request.created_at is not None:
            return min(self.request.created_at, self.first.at)
        return self.first.at

    @property
    def entra(self) -> list[HistoryRow]:
        return [e for e in self.events if e.source == "entra"]

    @property
    def portal_events(self) -> list[HistoryRow]:
        return [e for e in self.events if e.source == "portal"]

    @property
    def agent_name(self) -> str:
        if self.request is not None:
            return self.request.requester_name
        return self.first.agent_name

    @property
    def target_name(self) -> str:
        for row in self.events:
            if row.target_name or row.target_upn:
                return row.target_name or row.target_upn
        return ""

    @property
    def target_id(self) -> str:
        return next((row.target_id for row in self.events if row.target_id), "")

    @property
    def ticket(self) -> str:
        if self.request is not None and self.request.ticket:
            return self.request.ticket
        return next((row.ticket for row in self.events if row.ticket), "")

    @property
    def outcome(self) -> str:
        if self.request is not None:
            return STATUS_OUTCOMES.get(self.request.status, "")
        return self.first.outcome

    @property
    def outside_portal(self) -> bool:
        return self.request is None and self.first.outside_portal


@dataclass(frozen=True)
class RequestHistoryPage:
    """One page of the request view; ``next_cursor``: pass as ``after`` for the next page."""

    entries: list[HistoryEntry]
    next_cursor: Cursor | None
    filters: HistoryFilters
    scope: HistoryScope


def _verification_owners(rows: list[HistoryRow]) -> dict[int, int]:
    """For the verification events among ``rows``: verification id -> the first request that
    used it (one query, none when there are no such events)."""
    ids = {
        row.detail.get("verification_id")
        for row in rows
        if row.source == "portal"
        and not row.request_id
        and row.kind in VERIFICATION_KINDS
        and isinstance(row.detail, dict)
    }
    ids.discard(None)
    if not ids:
        return {}
    owners: dict[int, int] = {}
    pairs = (
        request_manager()
        .filter(verification_id__in=ids)
        .order_by("created_at", "id")
        .values_list("verification_id", "pk")
    )
    for verification_id, pk in pairs:
        owners.setdefault(verification_id, pk)
    return owners


def _key(row: HistoryRow, verifications: dict[int, int]) -> Key:
    key = row.group_key
    if key is not None:
        return key
    # No verification among the rows: no need to read the detail (most are never decoded).
    if row.source == "portal" and verifications and isinstance(row.detail, dict):
        owner = verifications.get(row.detail.get("verification_id") or 0)
        if owner:
            return ("mfa", owner)
    return (row.source, -row.id)


def _fold(
    stream: Iterator[HistoryRow], page_size: int, plan: BatchPlan
) -> tuple[dict[Key, list[HistoryRow]], HistoryRow | None, bool]:
    """Group the stream's rows by request until ``page_size`` groups are full: (groups in the
    order first met, the last row taken, whether rows remain). Reads ``plan.size - 1`` rows,
    then, while groups are missing, as many as the rows per group so far say they need (at
    least a page, at most ``CHUNK_PAGES`` pages), setting ``plan.size`` so that each branch
    reads about that many at once."""
    groups: dict[Key, list[HistoryRow]] = {}
    last: HistoryRow | None = None
    taken = 0
    size = plan.size - 1
    while True:
        rows = list(islice(stream, size))
        if not rows:
            return groups, last, False
        attach_changes(rows)
        verifications = _verification_owners(rows)
        for row in rows:
            key = _key(row, verifications)
            if key not in groups and len(groups) >= page_size:
                # The page is full: this row starts the next page.
                return groups, last, True
            groups.setdefault(key, []).append(row)
            last = row
        if len(rows) < size:
            return groups, last, False
        taken += len(rows)
        per_group = taken / max(len(groups), 1)
        missing = page_size - len(groups) + 1
        size = min(max(int(missing * per_group * 1.25) + 1, page_size), CHUNK_PAGES * page_size)
        plan.size = size + 1


def _request_events(
    pks: Iterable[int],
) -> tuple[dict[int, RequestInfo], dict[int, list[HistoryRow]]]:
    """The action requests ``pks`` and every event of each: their Entra records (read with the
    requests, one query), their portal events and the events of the verification each used
    (two more)."""
    infos, records = requests_with_records(pks, ENTRA_FIELDS)
    found: dict[int, list[HistoryRow]] = {
        pk: [entra_row(v) for v in rows] for pk, rows in records.items()
    }
    if not infos:
        return infos, found
    for v in values_rows(
        PortalEvent.objects.filter(request__in=list(infos)), PORTAL_FIELDS, deferred=PORTAL_DEFERRED
    ):
        row = portal_row(v)
        found[row.request_id or 0].append(row)
    by_verification: dict[int, list[int]] = {}
    for pk, info in infos.items():
        if info.verification_id:
            by_verification.setdefault(info.verification_id, []).append(pk)
    if by_verification:
        targets = {row.target_id for rows in found.values() for row in rows if row.target_id}
        times = [i.created_at for i in infos.values() if i.created_at is not None]
        events = PortalEvent.objects.filter(
            kind__in=VERIFICATION_KINDS, target_id__in=sorted(targets)
        )
        if times:
            events = events.filter(
                created_at__gte=min(times) - VERIFICATION_LOOKBACK, created_at__lte=max(times)
            )
        for v in values_rows(events, PORTAL_FIELDS, deferred=PORTAL_DEFERRED):
            row = portal_row(v)
            detail = row.detail if isinstance(row.detail, dict) else {}
            for pk in by_verification.get(detail.get("verification_id") or 0, ()):
                found[pk].append(portal_row(v))
    return infos, found


def _change_events(flow: str, pks: set[int]) -> dict[int, list[HistoryRow]]:
    """Every portal event and linked Entra record of the changes ``pks`` of ``flow``'s change
    history (a change's events name its person, so they are read by person and time; three
    queries)."""
    history = next((h for h in change_histories() if h.flow == flow), None)
    found: dict[int, list[HistoryRow]] = {pk: [] for pk in pks}
    if history is None or not pks:
        return found
    summaries = history.summaries(pks)
    if not summaries:
        return found
    # By person and time first (the (target, time) index), then the detail's key.
    events = PortalEvent.objects.filter(
        target_id__in=sorted({s.target_id for s in summaries.values()}),
        created_at__gte=min(s.created_at for s in summaries.values()),
        request__isnull=True,
        **{f"detail__{history.event_key}__in": sorted(summaries)},
    )
    for v in values_rows(events, PORTAL_FIELDS, deferred=PORTAL_DEFERRED):
        row = portal_row(v)
        if row.change_pk in found:
            found[row.change_pk].append(row)
    entra_ids = {i: s.pk for s in summaries.values() for i in s.entra_event_ids}
    if entra_ids:
        records = DirectoryAuditRecord.objects.filter(entra_id__in=sorted(entra_ids))
        for v in values_rows(records, ENTRA_FIELDS):
            row = entra_row(v)
            row.change_flow, row.change_pk = flow, entra_ids[row.entra_id]
            found[row.change_pk].append(row)
    return found


def _merge_events(seen: list[HistoryRow], full: list[HistoryRow]) -> list[HistoryRow]:
    """The request's events, oldest first, each once: those read in full, and those the
    stream met (an Entra record the rule explains but the flow has not linked yet)."""
    by_identity = {(row.source, row.id): row for row in seen}
    for row in full:
        by_identity.setdefault((row.source, row.id), row)
    return sorted(by_identity.values(), key=lambda row: (row.at, row.source == "portal", row.id))


def _entries(groups: dict[Key, list[HistoryRow]]) -> list[HistoryEntry]:
    infos, events_of = _request_events(pk for (flow, pk) in groups if flow == "mfa")
    full: dict[Key, list[HistoryRow]] = {("mfa", pk): rows for pk, rows in events_of.items()}
    for history in change_histories():
        pks = {pk for (flow, pk) in groups if flow == history.flow}
        for pk, rows in _change_events(history.flow, pks).items():
            full[(history.flow, pk)] = rows
    entries: list[HistoryEntry] = []
    for key, seen in groups.items():
        flow, pk = key
        if pk < 0:
            entries.append(HistoryEntry(key=f"{flow}-{-pk}", request=None, events=seen))
            continue
        events = _merge_events(seen, full.get(key, []))
        attach_changes(events)
        info = (
            infos.get(pk)
            if flow == "mfa"
            else next((row.request for row in events if row.request is not None), None)
        )
        for row in events:
            if row.request is None and info is not None:
                row.request = info
                row.agent_name = row.agent_name or info.requester_name
        entries.append(HistoryEntry(key=f"{flow}-{pk}", request=info, events=events))
    return entries


def request_history_query(
    filters: HistoryFilters,
    viewer: Any,
    *,
    after: Cursor | None = None,
    page_size: int = 50,
) -> RequestHistoryPage:
    """One page of the request view of what ``viewer`` may read under ``filters`` (module
    docstring): ``page_size`` entries, in ``filters.order``, beyond ``after``."""
    scope = history_scope_for(viewer, opened_target_id=filters.target)
    # The first read is a page of rows and two more per branch: the fold takes the page's rows
    # and one more (enough when most rows are events of no request, Entra's own: that row
    # starts the next page), and taking it leaves every branch a row ahead, so no branch reads a
    # second batch for it (``heapq.merge`` reads a branch's next row as it yields one). The
    # fold then reads on as far as it needs (``_fold``).
    plan = BatchPlan(size=page_size + 2)
    stream = merged_stream(
        filters, scope, after=after, batch=plan.size, limit=None, enrich=False, plan=plan
    )
    groups, last, more = _fold(stream, page_size, plan)
    next_cursor = last.cursor if more and last is not None else None
    return RequestHistoryPage(
        entries=_entries(groups), next_cursor=next_cursor, filters=filters, scope=scope
    )
