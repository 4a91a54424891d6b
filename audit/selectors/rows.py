"""History rows: one dataclass per row of either source, built from plain values, with the
request each row belongs to attached: an action request of the request source of
``audit.sources`` (mfa's ``ActionRequest``; audit knows it only by the field names listed
there), or a change of a change history (roles' role changes), shown as a request too."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.correlation import is_role_membership
from audit.models import DirectoryAuditRecord
from audit.selectors.compiled import Deferred, loaded, values_rows
from audit.selectors.filters import (
    ENTRA_RESULT_OUTCOME,
    KIND_LABELS,
    OUTCOME_LABELS,
    PORTAL_KIND_OUTCOME,
    SOURCE_RANK,
    Cursor,
    Source,
)
from audit.sources import (
    CandidateRecord,
    ChangeHistory,
    ChangeSummary,
    change_histories,
    request_manager,
    request_source,
)


@dataclass(frozen=True)
class RequestInfo:
    """What history shows of the ActionRequest a row belongs to."""

    id: int
    public_id: uuid.UUID
    kind: str
    kind_label: str
    status: str
    status_label: str
    requester_id: int
    requester_name: str
    ticket: str
    target_tier: str
    verification_method: str
    verification_label: str
    decided_by_name: str
    decision_comment: str
    requester_oid: str = ""
    target_upn: str = ""
    # "mfa" for an action request; a change history's flow ("roles") for its changes, whose
    # own page is ``url`` (an action request's is its history, ``?request=<public_id>``).
    flow: str = "mfa"
    url: str = ""
    verification_id: int | None = None
    created_at: datetime | None = None

    @property
    def is_action_request(self) -> bool:
        return self.flow == "mfa"

    @property
    def approval(self) -> str:
        """The approval in words: "Approved by Lee Lead", "Rejected by ...", "Needed" (asked
        for, not given yet), or "Not needed"."""
        if self.decided_by_name:
            verb = "Rejected" if self.status == "rejected" else "Approved"
            return f"{verb} by {self.decided_by_name}"
        return "Needed" if self.target_tier == "privileged" else "Not needed"


def change_request_info(summary: ChangeSummary) -> RequestInfo:
    """A change history's change (a role change) as the request of its history rows."""
    return RequestInfo(
        id=summary.pk,
        public_id=summary.public_id,
        kind=summary.flow,
        kind_label=summary.kind_label,
        status=summary.status,
        status_label=summary.status_label,
        requester_id=0,
        requester_name=summary.requester_name,
        ticket=summary.ticket,
        # A change that needs a second Admin's approval reads like a privileged request.
        target_tier="privileged" if summary.needs_approval else "",
        verification_method="",
        verification_label="",
        decided_by_name=summary.decided_by_name,
        decision_comment=summary.decision_comment,
        requester_oid=summary.requester_oid,
        target_upn=summary.target_upn,
        flow=summary.flow,
        url=summary.url,
        created_at=summary.created_at,
    )


@dataclass(frozen=True)
class LinkedEntraRecord:
    """One Entra record linked to a row's request (shown beside a portal event)."""

    id: int
    entra_id: str
    at: datetime
    activity: str
    result: str


@dataclass
class HistoryRow:
    """One row of the merged history: a portal event or an Entra record.

    ``agent_name``/``agent_oid``: the person behind the row: the event's actor, else the
    request's requester (for Entra records the portal acted on, Entra itself names only the app;
    ``initiated_by_name`` keeps what Entra said). ``outcome``: a key of OUTCOME_LABELS or "".
    """

    source: Source
    id: int
    at: datetime
    kind: str
    kind_label: str
    agent_name: str
    agent_oid: str
    target_id: str
    target_name: str
    target_upn: str
    ticket: str
    outcome: str
    request_id: int | None
    outside_portal: bool = False
    entra_id: str = ""
    category: str = ""
    initiated_by_kind: str = ""
    initiated_by_name: str = ""
    result_reason: str = ""
    correlation_id: str = ""
    # The portal event's detail as read: the value, or a ``Deferred`` decoded on the first read
    # of ``detail`` (most rows' details are never read: the pages do not show them).
    stored_detail: Any = field(default=None, repr=False)
    request: RequestInfo | None = None
    linked: list[LinkedEntraRecord] = field(default_factory=list)
    # The primary key of the change history's change (a role change) the row belongs to, with
    # its flow; a portal event's comes from its detail, an Entra record's from the flow.
    change_flow: str = ""
    change_pk: int | None = None

    @property
    def detail(self) -> Any:
        """A portal event's JSON detail (None for an Entra record)."""
        value = self.stored_detail
        if type(value) is Deferred:
            value = self.stored_detail = value.value()
        return value

    @property
    def group_key(self) -> tuple[str, int] | None:
        """The request the row belongs to: ("mfa", action request pk) or (flow, change pk)."""
        if self.request_id:
            return ("mfa", self.request_id)
        if self.change_pk:
            return (self.change_flow, self.change_pk)
        return None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, SOURCE_RANK[self.source], self.id)

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABELS.get(self.outcome, "")


PORTAL_FIELDS = (
    "id",
    "created_at",
    "kind",
    "actor_name",
    "actor_oid",
    "target_id",
    "target_name",
    "ticket",
    "request",
    "detail",
)
# The portal fields whose decoding waits for the first read (``HistoryRow.detail``).
PORTAL_DEFERRED = frozenset({"detail"})
ENTRA_FIELDS = (
    "id",
    "activity_at",
    "activity",
    "category",
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


# The characters JSON text holds as they are in a key: a key made of them appears quoted in
# the text of any JSON value that has it (PostgreSQL's jsonb output and json.dumps escape
# only quotes, backslashes, control and, for json.dumps, non-ASCII characters).
_PLAIN_KEY = re.compile(r"[ !#-\[\]-~]+")


def _may_name(detail: Any, histories: Sequence[ChangeHistory]) -> bool:
    """Whether ``detail`` (a value or a ``Deferred`` JSON text) may name a change of
    ``histories``: False only when its text holds none of their keys, so that it needs no
    decoding to know."""
    if type(detail) is not Deferred or not isinstance(detail.raw, str):
        return True
    text = detail.raw
    return any(
        not _PLAIN_KEY.fullmatch(h.event_key) or f'"{h.event_key}"' in text for h in histories
    )


def _change_of_event(detail: Any) -> tuple[str, int | None]:
    """(flow, change pk) of a portal event about a change history's change, from its detail
    (a value or a ``Deferred``)."""
    histories = change_histories()
    if not histories or not _may_name(detail, histories):
        return "", None
    detail = loaded(detail)
    if isinstance(detail, dict):
        for history in histories:
            pk = detail.get(history.event_key)
            if isinstance(pk, int) and pk > 0:
                return history.flow, pk
    return "", None


def portal_row(v: Sequence[Any]) -> HistoryRow:
    """A portal event's row from its ``PORTAL_FIELDS`` values, in that order (a values_list
    tuple: no dict per row); ``detail`` may be a ``Deferred`` (``values_rows(...,
    deferred=PORTAL_DEFERRED)``), decoded when the row's ``detail`` is first read."""
    pk, created_at, kind, actor_name, actor_oid, target_id, target_name, ticket, request, detail = v
    flow, change_pk = ("", None) if request else _change_of_event(detail)
    return HistoryRow(
        source="portal",
        id=pk,
        at=created_at,
        kind=kind,
        kind_label=KIND_LABELS.get(kind, kind),
        agent_name=actor_name,
        agent_oid=actor_oid,
        target_id=target_id,
        target_name=target_name,
        target_upn="",
        ticket=ticket,
        outcome=PORTAL_KIND_OUTCOME.get(kind, ""),
        request_id=request,
        stored_detail=detail,
        change_flow=flow,
        change_pk=change_pk,
    )


def entra_row(v: Sequence[Any]) -> HistoryRow:
    """An Entra record's row from its ``ENTRA_FIELDS`` values, in that order."""
    (
        pk,
        activity_at,
        activity,
        category,
        result,
        result_reason,
        initiated_by_kind,
        initiated_by_id,
        initiated_by_name,
        target_id,
        target_name,
        target_upn,
        correlation_id,
        entra_id,
        action_request_id,
        outside_portal,
    ) = v
    by_user = initiated_by_kind == DirectoryAuditRecord.InitiatorKind.USER
    return HistoryRow(
        source="entra",
        id=pk,
        at=activity_at,
        kind=activity,
        kind_label=activity,
        # Entra names a person only when one acted directly; for the portal's own app the
        # human comes from the linked request (filled in by _attach_requests).
        agent_name=initiated_by_name if by_user else "",
        agent_oid=initiated_by_id if by_user else "",
        target_id=target_id,
        target_name=target_name,
        target_upn=target_upn,
        ticket="",
        outcome=ENTRA_RESULT_OUTCOME.get(result, ""),
        request_id=action_request_id,
        outside_portal=outside_portal,
        entra_id=entra_id,
        category=category,
        initiated_by_kind=initiated_by_kind,
        initiated_by_name=initiated_by_name,
        result_reason=result_reason,
        correlation_id=correlation_id,
    )


# The request columns history shows (``RequestInfo``), in ``_request_info``'s order.
REQUEST_FIELDS = (
    "pk",
    "public_id",
    "kind",
    "status",
    "requester_id",
    "requester__username",
    "requester_name",
    "target_upn",
    "ticket",
    "target_tier",
    "verification__method",
    "verification__manual_check",
    "decided_by_name",
    "decision_comment",
    "verification_id",
    "created_at",
)
# The Entra record columns of a ``LinkedEntraRecord``, in its order.
LINKED_FIELDS = ("id", "entra_id", "activity_at", "activity", "result")


def _request_info(v: Sequence[Any], labels: tuple[Mapping[str, str], ...]) -> RequestInfo:
    """A ``RequestInfo`` from the ``REQUEST_FIELDS`` values ``v``; ``labels``: the request
    source's kind, status and verification labels."""
    (
        pk,
        public_id,
        kind,
        status,
        requester_id,
        requester_oid,
        requester_name,
        target_upn,
        ticket,
        target_tier,
        method,
        manual_check,
        decided_by_name,
        decision_comment,
        verification_id,
        created_at,
    ) = v
    kind_labels, status_labels, verification_labels = labels
    return RequestInfo(
        id=pk,
        public_id=public_id,
        kind=kind,
        kind_label=kind_labels.get(kind, kind),
        status=status,
        status_label=status_labels.get(status, status),
        requester_id=requester_id,
        requester_name=requester_name,
        ticket=ticket,
        target_tier=target_tier,
        verification_method=method or "",
        verification_label=(
            (manual_check or verification_labels.get(method, method)) if method else ""
        ),
        decided_by_name=decided_by_name,
        decision_comment=decision_comment,
        requester_oid=requester_oid or "",
        target_upn=target_upn or "",
        verification_id=verification_id,
        created_at=created_at,
    )


def _labels() -> tuple[Mapping[str, str], ...]:
    source = request_source()
    return source.kind_labels, source.status_labels, source.verification_labels


def request_infos(ids: Iterable[int]) -> dict[int, RequestInfo]:
    """What history shows of each request among ``ids`` (one query; unknown ids are left out)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    labels = _labels()
    # Plain values, not model instances: an export attaches requests to every batch.
    rows = request_manager().filter(pk__in=wanted).values_list(*REQUEST_FIELDS)
    return {v[0]: _request_info(v, labels) for v in rows}


def requests_with_records(
    ids: Iterable[int], fields: Sequence[str], *, order: Sequence[str] = ()
) -> tuple[dict[int, RequestInfo], dict[int, list[tuple[Any, ...]]]]:
    """``request_infos(ids)`` and each request's Entra records, as tuples of their ``fields``
    (in ``order`` within a request), in one query: the requests LEFT JOINed to the records
    linked to them."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}, {}
    labels = _labels()
    # The requests' side of DirectoryAuditRecord.action_request, by its own name.
    records = DirectoryAuditRecord._meta.get_field("action_request").related_query_name()
    rows = values_rows(
        request_manager().filter(pk__in=sorted(wanted)),
        (*REQUEST_FIELDS, *(f"{records}__{name}" for name in fields)),
        order=("pk", *(f"{records}__{name}" for name in order)),
    )
    infos: dict[int, RequestInfo] = {}
    found: dict[int, list[tuple[Any, ...]]] = {}
    width = len(REQUEST_FIELDS)
    for v in rows:
        pk = v[0]
        if pk not in infos:
            infos[pk] = _request_info(v[:width], labels)
            found[pk] = []
        if v[width] is not None:
            found[pk].append(v[width:])
    return infos, found


def requests_with_links(
    ids: Iterable[int],
) -> tuple[dict[int, RequestInfo], dict[int, list[LinkedEntraRecord]]]:
    """``request_infos(ids)`` and each request's Entra records (oldest first), in one query."""
    infos, found = requests_with_records(ids, LINKED_FIELDS, order=("activity_at", "id"))
    return infos, {pk: [LinkedEntraRecord(*v) for v in rows] for pk, rows in found.items()}


def _apply_request(row: HistoryRow, info: RequestInfo | None) -> None:
    row.request = info
    if info is None:
        return
    if not row.ticket:
        row.ticket = info.ticket
    if not row.agent_name:
        row.agent_name = info.requester_name
        row.agent_oid = info.requester_oid
    if not row.agent_oid and row.source == "portal":
        row.agent_oid = info.requester_oid
    if not row.target_upn:
        row.target_upn = info.target_upn


def attach_changes(rows: list[HistoryRow]) -> None:
    """Attach the change history's change (a role change) each row belongs to, as its
    ``request``: a portal event names it in its detail; an Entra record not linked to an
    action request belongs to the change the flow says (``ChangeHistory.for_records``). A few
    queries per flow for the whole list, none when no row can be a change's."""
    for history in change_histories():
        candidates = [
            CandidateRecord(row.id, row.entra_id, row.kind, row.at)
            for row in rows
            if row.source == "entra" and not row.request_id and not row.change_pk
            and is_role_membership(row.kind)
        ]  # fmt: skip
        owners = history.owners(candidates)
        for row in rows:
            if row.source == "entra" and row.id in owners:
                row.change_flow, row.change_pk = history.flow, owners[row.id]
        mine = [row for row in rows if row.change_flow == history.flow and row.change_pk]
        if not mine:
            continue
        summaries = history.summaries(row.change_pk for row in mine if row.change_pk)
        records = _records_by_entra_id(
            {i for s in summaries.values() for i in s.entra_event_ids}
            if any(row.source == "portal" for row in mine)
            else set()
        )
        for row in mine:
            summary = summaries.get(row.change_pk or 0)
            if summary is None:
                continue
            _apply_request(row, change_request_info(summary))
            if row.source == "portal":
                row.linked = [records[i] for i in summary.entra_event_ids if i in records]


def _records_by_entra_id(entra_ids: set[str]) -> dict[str, LinkedEntraRecord]:
    if not entra_ids:
        return {}
    records = DirectoryAuditRecord.objects.filter(entra_id__in=sorted(entra_ids))
    values = values_rows(records, LINKED_FIELDS)
    return {v[1]: LinkedEntraRecord(*v) for v in values}


def with_requests(batches: Iterable[list[HistoryRow]]) -> Iterator[list[HistoryRow]]:
    """Each batch with its rows' requests attached (one query per batch, and a few more when it
    holds a role change's rows)."""
    for rows in batches:
        infos = request_infos(row.request_id for row in rows if row.request_id)
        for row in rows:
            if row.request_id:
                _apply_request(row, infos.get(row.request_id))
        attach_changes(rows)
        yield rows


def attach_links(rows: list[HistoryRow]) -> None:
    """Fill ``request`` and, for portal events of a request, ``linked`` (its Entra records):
    one query for both (``requests_with_links``), and a few more for a role change's rows."""
    infos, linked = requests_with_links(row.request_id for row in rows if row.request_id)
    for row in rows:
        if row.request_id:
            _apply_request(row, infos.get(row.request_id))
            if row.source == "portal":
                row.linked = linked.get(row.request_id, [])
    attach_changes(rows)
