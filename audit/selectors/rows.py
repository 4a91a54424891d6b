"""History rows: one dataclass per row of either source, built from plain values, with the
request each row belongs to attached (the request source of ``audit.sources``: mfa's
``ActionRequest``; audit knows it only by the field names listed there)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.models import DirectoryAuditRecord
from audit.selectors.filters import (
    ENTRA_OUTCOMES,
    KIND_LABELS,
    OUTCOME_LABELS,
    PORTAL_KIND_OUTCOME,
    SOURCE_RANK,
    Cursor,
    Source,
)
from audit.sources import request_manager, request_source


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
    detail: Any = None
    request: RequestInfo | None = None
    linked: list[LinkedEntraRecord] = field(default_factory=list)

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


def portal_row(v: Mapping[str, Any]) -> HistoryRow:
    return HistoryRow(
        source="portal",
        id=v["id"],
        at=v["created_at"],
        kind=v["kind"],
        kind_label=KIND_LABELS.get(v["kind"], v["kind"]),
        agent_name=v["actor_name"],
        agent_oid=v["actor_oid"],
        target_id=v["target_id"],
        target_name=v["target_name"],
        target_upn="",
        ticket=v["ticket"],
        outcome=PORTAL_KIND_OUTCOME.get(v["kind"], ""),
        request_id=v["request"],
        detail=v["detail"],
    )


def _entra_outcome(result: str) -> str:
    for outcome, values in ENTRA_OUTCOMES.items():
        if result in values:
            return outcome
    return ""


def entra_row(v: Mapping[str, Any]) -> HistoryRow:
    by_user = v["initiated_by_kind"] == DirectoryAuditRecord.InitiatorKind.USER
    return HistoryRow(
        source="entra",
        id=v["id"],
        at=v["activity_at"],
        kind=v["activity"],
        kind_label=v["activity"],
        # Entra names a person only when one acted directly; for the portal's own app the
        # human comes from the linked request (filled in by _attach_requests).
        agent_name=v["initiated_by_name"] if by_user else "",
        agent_oid=v["initiated_by_id"] if by_user else "",
        target_id=v["target_id"],
        target_name=v["target_name"],
        target_upn=v["target_upn"],
        ticket="",
        outcome=_entra_outcome(v["result"]),
        request_id=v["action_request_id"],
        outside_portal=v["outside_portal"],
        entra_id=v["entra_id"],
        category=v["category"],
        initiated_by_kind=v["initiated_by_kind"],
        initiated_by_name=v["initiated_by_name"],
        result_reason=v["result_reason"],
        correlation_id=v["correlation_id"],
    )


def request_infos(ids: Iterable[int]) -> dict[int, RequestInfo]:
    """What history shows of each request among ``ids`` (one query; unknown ids are left out)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    source = request_source()
    kind_labels, status_labels = source.kind_labels, source.status_labels
    verification_labels = source.verification_labels
    # Plain values, not model instances: an export attaches requests to every batch.
    rows = (
        request_manager()
        .filter(pk__in=wanted)
        .values_list(
            "pk",
            "public_id",
            "kind",
            "status",
            "requester_id",
            "requester_name",
            "ticket",
            "target_tier",
            "verification__method",
            "verification__manual_check",
            "decided_by_name",
            "decision_comment",
        )
    )
    infos: dict[int, RequestInfo] = {}
    for (
        pk,
        public_id,
        kind,
        status,
        requester_id,
        requester_name,
        ticket,
        target_tier,
        method,
        manual_check,
        decided_by_name,
        decision_comment,
    ) in rows:
        infos[pk] = RequestInfo(
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
        )
    return infos


def _apply_request(row: HistoryRow, info: RequestInfo | None) -> None:
    row.request = info
    if info is None:
        return
    if not row.ticket:
        row.ticket = info.ticket
    if not row.agent_name:
        row.agent_name = info.requester_name


def with_requests(batches: Iterable[list[HistoryRow]]) -> Iterator[list[HistoryRow]]:
    """Each batch with its rows' requests attached (one query per batch)."""
    for rows in batches:
        infos = request_infos(row.request_id for row in rows if row.request_id)
        for row in rows:
            if row.request_id:
                _apply_request(row, infos.get(row.request_id))
        yield rows


def attach_links(rows: list[HistoryRow]) -> None:
    """Fill ``request`` and, for portal events of a request, ``linked`` (its Entra records)."""
    infos = request_infos(row.request_id for row in rows if row.request_id)
    portal_request_ids = {
        row.request_id for row in rows if row.source == "portal" and row.request_id
    }
    linked: dict[int, list[LinkedEntraRecord]] = {}
    if portal_request_ids:
        records = (
            DirectoryAuditRecord.objects.filter(action_request_id__in=portal_request_ids)
            .order_by("activity_at", "id")
            .values_list("id", "entra_id", "activity_at", "activity", "result", "action_request_id")
        )
        for rid, entra_id, at, activity, result, request_id in records:
            linked.setdefault(request_id, []).append(
                LinkedEntraRecord(rid, entra_id, at, activity, result)
            )
    for row in rows:
        if row.request_id:
            _apply_request(row, infos.get(row.request_id))
            if row.source == "portal":
                row.linked = linked.get(row.request_id, [])
