"""Reading the audit trail: the portal's events and the cached Entra records, merged in time.

``history_query(filters, viewer)`` returns one page of rows from both tables, newest (or oldest)
first, with keyset pagination: a page ends with a ``Cursor`` (time, source rank, id) and the next
page asks for rows strictly beyond it, so no query ever uses OFFSET and every page costs the same
whatever its depth. Each table is read in its own order by ``(time, id)`` through a composite
index that starts with the filtered column (audit/models.py), then the two ordered streams are
merged in Python (``heapq.merge``).

``history_rows(filters, viewer)`` streams every matching row in the same order, in keyset
batches, holding at most one batch per branch in memory. ``history_flat_rows`` is the same stream
as plain tuples (``FLAT_FIELDS``), built without an object per row: the exports use it.

The agent filter reads ``DirectoryAuditRecord.agent_oid`` (denormalised by audit.correlation);
free text is ``ILIKE '%text%'`` on PostgreSQL, served by the trigram indexes of migration 0009.

The viewer's scope (``audit.permissions``) is applied to every query: an Agent's history is their
own requests, plus the full history of a person they open (``filters.target``).
"""

from __future__ import annotations

import contextlib
import heapq
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import BigIntegerField, F, Func, Q, QuerySet
from django.db.models.lookups import IContains
from django.utils import timezone

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.permissions import HistoryScope, history_scope_for
from mfa.models import ActionRequest, VerificationMethod

Source = Literal["portal", "entra"]
Order = Literal["desc", "asc"]

# Ties in time are broken by source, then id: Entra records sort below portal events of the same
# instant (rank 0 < 1), so the merged order is total and a cursor names exactly one position.
SOURCE_RANK: dict[str, int] = {"entra": 0, "portal": 1}
SOURCES: tuple[str, ...] = ("portal", "entra")
PAGE_SIZE = 50
PAGE_SIZE_MAX = 200
# Rows per table and query in an export: large enough that the queries cost little beside the
# rows, small enough that two batches of plain tuples stay a few megabytes.
EXPORT_BATCH = 5000
Q_MAX_LENGTH = 200

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Entra activities offered in the kind filter (GRAPH.md, "audit events"); any other activity
# name given in the URL filters as well.
KNOWN_ENTRA_ACTIVITIES: tuple[str, ...] = (
    "Admin deleted security info",
    "Admin registered security info",
    "User deleted security info",
    "User registered security info",
    "Update StsRefreshTokenValidFrom Timestamp",
    "Update user",
    "Reset user password",
    "Add member to role",
    "Remove member from role",
    "Disable Strong Authentication",
    "Enable Strong Authentication",
)

K = PortalEvent.Kind
# What "outcome" means for a portal event. Entra records carry their own result.
PORTAL_OUTCOMES: dict[str, tuple[str, ...]] = {
    "success": (
        K.ACTION_SUCCEEDED,
        K.VERIFICATION_SUCCEEDED,
        K.VERIFICATION_MANUAL,
        K.SIGN_IN,
        K.TAP_REVEALED,
    ),
    "partial": (K.ACTION_PARTIALLY_SUCCEEDED,),
    "failure": (
        K.ACTION_FAILED,
        K.VERIFICATION_FAILED,
        K.SIGN_IN_REFUSED,
        K.TAP_REVEAL_REFUSED,
    ),
    "stopped": (K.ACTION_REJECTED, K.ACTION_CANCELLED, K.ACTION_EXPIRED),
}
ENTRA_OUTCOMES: dict[str, tuple[str, ...]] = {
    "success": ("success",),
    "failure": ("failure", "timeout"),
}
OUTCOME_LABELS: dict[str, str] = {
    "success": "Success",
    "partial": "Partial success",
    "failure": "Failure",
    "stopped": "Rejected, cancelled or expired",
}
_PORTAL_KIND_OUTCOME: dict[str, str] = {
    kind: outcome for outcome, kinds in PORTAL_OUTCOMES.items() for kind in kinds
}
_KIND_LABELS: dict[str, str] = dict(PortalEvent.Kind.choices)
_ENTRA_RESULT_OUTCOME: dict[str, str] = {
    result: outcome for outcome, results in ENTRA_OUTCOMES.items() for result in results
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REQUEST_KIND_LABELS: dict[str, str] = dict(ActionRequest._meta.get_field("kind").flatchoices)
_REQUEST_STATUS_LABELS: dict[str, str] = dict(ActionRequest._meta.get_field("status").flatchoices)
_VERIFICATION_LABELS: dict[str, str] = dict(VerificationMethod.choices)


class FilterError(ValueError):
    """A history filter or cursor in the URL is malformed; ``errors`` maps field to message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


# --- filters and cursors ----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilters:
    """The filters of ``/audit/`` (all optional; all given ones must hold).

    ``since``/``until``: calendar days, inclusive, in the portal's time zone. ``agent``: the
    Entra object id of the helpdesk person (the portal event's actor or the request's requester;
    for an Entra record, also the person Entra names as initiator). ``target``: the object id of
    the person acted on. ``kind``: a ``PortalEvent.Kind`` value or an Entra activity name.
    ``outcome``: a key of ``OUTCOME_LABELS``. ``source``: "portal", "entra" or "" for both.
    ``q``: free text, case-insensitive, in names, UPNs, tickets and activities. ``request``: an
    ActionRequest's public id: its portal events and its linked Entra records. ``outside``: only
    Entra changes made outside the portal. ``order``: "desc" (newest first) or "asc".
    """

    since: date | None = None
    until: date | None = None
    agent: str = ""
    target: str = ""
    kind: str = ""
    outcome: str = ""
    source: str = ""
    q: str = ""
    request: uuid.UUID | None = None
    outside: bool = False
    order: Order = "desc"

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> HistoryFilters:
        """Parse GET parameters. Unknown parameters are ignored (``after``/``before`` are the
        cursor's). Raises FilterError naming each malformed parameter."""
        errors: dict[str, str] = {}

        def day(name: str) -> date | None:
            raw = (params.get(name) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError:
                errors[name] = "must be a date like 2026-03-31"
                return None

        def guid(name: str) -> str:
            raw = (params.get(name) or "").strip().lower()
            if raw and not GUID_RE.match(raw):
                errors[name] = "must be an Entra object id (a GUID)"
                return ""
            return raw

        since, until = day("since"), day("until")
        if since and until and since > until:
            errors["until"] = "must not be before the start date"
        outcome = (params.get("outcome") or "").strip()
        if outcome and outcome not in OUTCOME_LABELS:
            errors["outcome"] = f"must be one of {', '.join(OUTCOME_LABELS)}"
        source = (params.get("source") or "").strip()
        if source and source not in SOURCES:
            errors["source"] = "must be portal or entra"
        order = (params.get("order") or "desc").strip()
        if order not in ("desc", "asc"):
            errors["order"] = "must be desc or asc"
        q = (params.get("q") or "").strip()
        if len(q) > Q_MAX_LENGTH:
            errors["q"] = f"must be at most {Q_MAX_LENGTH} characters"
        kind = (params.get("kind") or "").strip()
        if len(kind) > 256:
            errors["kind"] = "is too long"
        request_id: uuid.UUID | None = None
        raw_request = (params.get("request") or "").strip()
        if raw_request:
            try:
                request_id = uuid.UUID(raw_request)
            except ValueError:
                errors["request"] = "must be a request id (a GUID)"
        outside = (params.get("outside") or "").strip().lower() in ("1", "true", "on", "yes")
        filters = cls(
            since=since,
            until=until,
            agent=guid("agent"),
            target=guid("target"),
            kind=kind,
            outcome=outcome if outcome in OUTCOME_LABELS else "",
            source=source if source in SOURCES else "",
            q=q[:Q_MAX_LENGTH],
            request=request_id,
            outside=outside,
            order="asc" if order == "asc" else "desc",
        )
        if errors:
            raise FilterError(errors)
        return filters

    def to_params(self) -> dict[str, str]:
        """The GET parameters that give these filters back (defaults left out): a bookmark."""
        params: dict[str, str] = {}
        if self.since:
            params["since"] = self.since.isoformat()
        if self.until:
            params["until"] = self.until.isoformat()
        for name in ("agent", "target", "kind", "outcome", "source", "q"):
            value = getattr(self, name)
            if value:
                params[name] = value
        if self.request:
            params["request"] = str(self.request)
        if self.outside:
            params["outside"] = "1"
        if self.order != "desc":
            params["order"] = self.order
        return params

    @property
    def descending(self) -> bool:
        return self.order == "desc"

    def reversed(self) -> HistoryFilters:
        return replace(self, order="asc" if self.descending else "desc")


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the merged order: (time, source rank, id). Encoded in URLs as
    ``<microseconds since 1970>.<rank>.<id>``."""

    at: datetime
    rank: int
    id: int

    def encode(self) -> str:
        micros = (self.at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.rank}.{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Raises FilterError for anything but three integers with a known rank."""
        parts = raw.strip().split(".")
        try:
            micros, rank, row_id = (int(p) for p in parts)
        except ValueError:
            raise FilterError({"cursor": "is not a history position"}) from None
        if rank not in SOURCE_RANK.values() or row_id < 1:
            raise FilterError({"cursor": "is not a history position"})
        try:
            at = _EPOCH + timedelta(microseconds=micros)
        except OverflowError:
            raise FilterError({"cursor": "is not a history position"}) from None
        return cls(at, rank, row_id)


# --- rows -------------------------------------------------------------------------------------


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


_PORTAL_FIELDS = (
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
_ENTRA_FIELDS = (
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


def _portal_row(v: Mapping[str, Any]) -> HistoryRow:
    return HistoryRow(
        source="portal",
        id=v["id"],
        at=v["created_at"],
        kind=v["kind"],
        kind_label=_KIND_LABELS.get(v["kind"], v["kind"]),
        agent_name=v["actor_name"],
        agent_oid=v["actor_oid"],
        target_id=v["target_id"],
        target_name=v["target_name"],
        target_upn="",
        ticket=v["ticket"],
        outcome=_PORTAL_KIND_OUTCOME.get(v["kind"], ""),
        request_id=v["request"],
        detail=v["detail"],
    )


def _entra_outcome(result: str) -> str:
    for outcome, values in ENTRA_OUTCOMES.items():
        if result in values:
            return outcome
    return ""


def _entra_row(v: Mapping[str, Any]) -> HistoryRow:
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


# --- the two querysets ------------------------------------------------------------------------


def _day_bounds(filters: HistoryFilters) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the date filter in the current time zone."""
    tz = timezone.get_current_timezone()
    start = datetime.combine(filters.since, time.min, tzinfo=tz) if filters.since else None
    end = (
        datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=tz)
        if filters.until
        else None
    )
    return start, end


def _request_ids(*conditions: Q, **condition: Any) -> list[int]:
    """The ids of the requests matching the conditions, as a list: ``request_id = ANY(list)``
    lets PostgreSQL read the (request, time) index directly, where ``IN (subquery)`` OR-ed with
    another condition made it scan the whole time index."""
    return list(
        # No ordering: the model's default order would only add a sort.
        ActionRequest.objects.filter(*conditions, **condition)
        .order_by()
        .values_list("pk", flat=True)
    )


class _ILikeContains(IContains):
    """``field ILIKE '%text%'`` on PostgreSQL, which a pg_trgm GIN index (``gin_trgm_ops``,
    migration 0009) serves; Django's own ``icontains`` writes ``UPPER(field::text) LIKE
    UPPER(...)``, which no index on the column serves. The text is escaped as ``icontains``
    escapes it (``%``, ``_`` and ``\\`` match themselves). Elsewhere it is ``icontains``."""

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, lhs_params = compiler.compile(self.lhs)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs_sql} ILIKE {rhs_sql}", [*lhs_params, *rhs_params]


def _contains(field: str, text: str) -> Q:
    """``field`` (of the model filtered) contains ``text``, ignoring case (``_ILikeContains``)."""
    return Q(_ILikeContains(F(field), text))


def _branches(qs: QuerySet[Any, Any], alternatives: list[list[Q]]) -> list[QuerySet[Any, Any]]:
    """``qs`` under every combination of one condition from each group of ``alternatives``.

    Each group is an OR of conditions on different columns; instead of one query with ORs
    (which no index serves), each branch is its own query that one composite index serves, and
    the branches' ordered streams are merged (duplicates dropped) by ``_merged``.
    """
    combos: list[list[Q]] = [[]]
    for group in alternatives:
        combos = [[*combo, condition] for combo in combos for condition in group]
    return [qs.filter(*combo) for combo in combos]


def _requests_of(user_pk: int) -> QuerySet[ActionRequest, Any]:
    """The ids of ``user_pk``'s requests, as a subquery on ``requester_id = <constant>``.

    Not a list of ids, nor a join on the username: PostgreSQL's statistics on requester_id tell
    it how many requests this person has, and it picks per person between probing the
    (request, time) index request by request (few requests) and walking the time index with a
    hashed set (many). A list of tens of thousands of ids forced the probes (half a second for
    the busiest agent); a join on the username hid the count and made it walk the whole time
    index for an agent with few requests.
    """
    return ActionRequest.objects.filter(requester_id=user_pk).order_by().values("pk")


def _username(user_pk: int | None) -> str:
    """The username (the Entra object id, accounts.models) of Django user ``user_pk``; a value no
    record holds when there is none."""
    if user_pk is None:
        return ""
    found = get_user_model().objects.filter(pk=user_pk).values_list("username", flat=True).first()
    # agent_oid is never blank for a linked record, so "" matches nothing here.
    return str(found) if found else ""


def _user_pk(oid: str) -> int:
    """The Django user whose username is the Entra object id ``oid`` (accounts.models); 0 (matches
    nothing) when there is none."""
    found = get_user_model().objects.filter(username=oid).values_list("pk", flat=True).first()
    return int(found) if found is not None else 0


def _request_pk(public_id: uuid.UUID) -> int:
    """The primary key of the request ``public_id``; 0 (matches nothing) when unknown."""
    found = ActionRequest.objects.filter(public_id=public_id).values_list("pk", flat=True).first()
    return int(found) if found is not None else 0


def portal_queryset(
    filters: HistoryFilters, scope: HistoryScope, *, request_pk: int | None = None
) -> list[QuerySet[PortalEvent, Any]] | None:
    """The portal events matching ``filters`` within ``scope``, as branches whose union is the
    answer (see ``_branches``), unordered; None when the filters rule out portal events
    altogether (an Entra activity, ``source=entra``, ...)."""
    if filters.source == "entra" or filters.outside:
        return None
    qs = PortalEvent.objects.all()
    if filters.kind:
        if filters.kind not in PortalEvent.Kind.values:
            return None
        qs = qs.filter(kind=filters.kind)
    if filters.outcome:
        kinds = PORTAL_OUTCOMES.get(filters.outcome, ())
        if not kinds:
            return None
        qs = qs.filter(kind__in=kinds)
    start, end = _day_bounds(filters)
    if start:
        qs = qs.filter(created_at__gte=start)
    if end:
        qs = qs.filter(created_at__lt=end)
    alternatives: list[list[Q]] = []
    if filters.agent:
        alternatives.append(
            [
                Q(actor_oid=filters.agent),
                Q(request__in=_requests_of(_user_pk(filters.agent))),
            ]
        )
    if filters.target:
        qs = qs.filter(target_id=filters.target)
    if request_pk is not None:
        qs = qs.filter(request=request_pk)
    if filters.q:
        qs = qs.filter(
            _contains("actor_name", filters.q)
            | _contains("target_name", filters.q)
            | _contains("ticket", filters.q)
        )
    if not scope.everything:
        own = [Q(actor_id=scope.user_id), Q(request__in=_requests_of(scope.user_id or 0))]
        if scope.target_id:
            own.append(Q(target_id=scope.target_id))
        alternatives.append(own)
    return _branches(qs, alternatives)


def entra_queryset(
    filters: HistoryFilters, scope: HistoryScope, *, request_pk: int | None = None
) -> list[QuerySet[DirectoryAuditRecord, Any]] | None:
    """The cached Entra records matching ``filters`` within ``scope``, as branches whose union
    is the answer (see ``_branches``), unordered; None when the filters rule out Entra records
    (a portal event kind, ``source=portal``, ...)."""
    if filters.source == "portal":
        return None
    qs = DirectoryAuditRecord.objects.all()
    if filters.kind:
        if filters.kind in PortalEvent.Kind.values:
            return None
        qs = qs.filter(activity=filters.kind)
    if filters.outcome:
        results = ENTRA_OUTCOMES.get(filters.outcome, ())
        if not results:
            return None
        qs = qs.filter(result__in=results)
    if filters.outside:
        qs = qs.filter(outside_portal=True)
    start, end = _day_bounds(filters)
    if start:
        qs = qs.filter(activity_at__gte=start)
    if end:
        qs = qs.filter(activity_at__lt=end)
    alternatives: list[list[Q]] = []
    if filters.agent:
        # The requester of the linked request, else the initiating user: denormalised by
        # audit.correlation, so this is one range scan of (agent_oid, activity_at).
        qs = qs.filter(agent_oid=filters.agent)
    if filters.target:
        qs = qs.filter(target_id=filters.target)
    if request_pk is not None:
        qs = qs.filter(action_request=request_pk)
    if filters.q:
        # Entra knows nothing of tickets: a record matches a ticket through its request.
        alternatives.append(
            [
                _contains("activity", filters.q)
                | _contains("target_name", filters.q)
                | _contains("target_upn", filters.q)
                | _contains("initiated_by_name", filters.q),
                Q(action_request__in=_request_ids(_contains("ticket", filters.q))),
            ]
        )
    if not scope.everything:
        # The records linked to the viewer's requests: agent_oid holds the requester of a linked
        # record (audit.correlation), so this is a range scan of (agent_oid, activity_at).
        own = [Q(agent_oid=_username(scope.user_id), action_request__isnull=False)]
        if scope.target_id:
            own.append(Q(target_id=scope.target_id))
        alternatives.append(own)
    return _branches(qs, alternatives)


def _beyond(time_field: str, rank: int, cursor: Cursor, descending: bool) -> Q:
    """Rows of one table (all of source rank ``rank``) strictly after ``cursor`` in the merged
    order. Written as ``time <= t AND (...)`` so the time bound is an index condition."""
    op, strict = ("lte", "lt") if descending else ("gte", "gt")
    if rank == cursor.rank:
        return Q(**{f"{time_field}__{op}": cursor.at}) & (
            Q(**{f"{time_field}__{strict}": cursor.at}) | Q(**{f"id__{strict}": cursor.id})
        )
    # Another table's cursor: rows at the same instant come before or after it as a block.
    same_instant_follows = (rank < cursor.rank) == descending
    return Q(**{f"{time_field}__{op if same_instant_follows else strict}": cursor.at})


def _keyset_stream(
    qs: QuerySet[Any, Any],
    *,
    source: Source,
    descending: bool,
    after: Cursor | None,
    batch: int,
    limit: int | None = None,
) -> Iterator[list[HistoryRow]]:
    """Batches of rows of one table in (time, id) order, strictly beyond ``after``; each batch is
    one keyset query read with ``.iterator(chunk_size)``. At most ``limit`` rows in all."""
    time_field, fields, make = (
        ("created_at", _PORTAL_FIELDS, _portal_row)
        if source == "portal"
        else ("activity_at", _ENTRA_FIELDS, _entra_row)
    )
    rank = SOURCE_RANK[source]
    order = (f"-{time_field}", "-id") if descending else (time_field, "id")
    position = after
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch if remaining is None else min(batch, remaining)
        page = (
            qs if position is None else qs.filter(_beyond(time_field, rank, position, descending))
        )
        # A plain read, not .iterator(): the LIMIT already bounds the batch, and outside a
        # transaction Django's server-side cursors are WITH HOLD, which PostgreSQL materialises
        # before the first row is fetched (an extra copy and two more round trips per batch).
        rows = [make(v) for v in page.order_by(*order).values(*fields)[:size]]
        if rows:
            yield rows
        if len(rows) < size:
            return
        position = rows[-1].cursor
        if remaining is not None:
            remaining -= len(rows)


def _flatten(batches: Iterable[list[HistoryRow]]) -> Iterator[HistoryRow]:
    for rows in batches:
        yield from rows


def _merged(
    filters: HistoryFilters,
    scope: HistoryScope,
    *,
    after: Cursor | None,
    batch: int,
    limit: int | None,
    enrich: bool,
) -> Iterator[HistoryRow]:
    """Every branch of both tables as one ordered stream, each row once."""
    request_pk = _request_pk(filters.request) if filters.request else None
    streams: list[Iterator[HistoryRow]] = []
    sources: list[tuple[Source, list[QuerySet[Any, Any]] | None]] = [
        ("portal", portal_queryset(filters, scope, request_pk=request_pk)),
        ("entra", entra_queryset(filters, scope, request_pk=request_pk)),
    ]
    for source, branches in sources:
        for qs in branches or ():
            batches = _keyset_stream(
                qs,
                source=source,
                descending=filters.descending,
                after=after,
                batch=batch,
                limit=limit,
            )
            streams.append(_flatten(_with_requests(batches) if enrich else batches))
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


# --- requests and links -------------------------------------------------------------------------


def _request_infos(ids: Iterable[int]) -> dict[int, RequestInfo]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    # Plain values, not model instances: an export attaches requests to every batch.
    rows = ActionRequest.objects.filter(pk__in=wanted).values_list(
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
            kind_label=_REQUEST_KIND_LABELS.get(kind, kind),
            status=status,
            status_label=_REQUEST_STATUS_LABELS.get(status, status),
            requester_id=requester_id,
            requester_name=requester_name,
            ticket=ticket,
            target_tier=target_tier,
            verification_method=method or "",
            verification_label=(
                (manual_check or _VERIFICATION_LABELS.get(method, method)) if method else ""
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


def _with_requests(batches: Iterable[list[HistoryRow]]) -> Iterator[list[HistoryRow]]:
    """Each batch with its rows' requests attached (one query per batch)."""
    for rows in batches:
        infos = _request_infos(row.request_id for row in rows if row.request_id)
        for row in rows:
            if row.request_id:
                _apply_request(row, infos.get(row.request_id))
        yield rows


def _attach_links(rows: list[HistoryRow]) -> None:
    """Fill ``request`` and, for portal events of a request, ``linked`` (its Entra records)."""
    infos = _request_infos(row.request_id for row in rows if row.request_id)
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


# --- public API ---------------------------------------------------------------------------------


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
    stream = _merged(
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
    _attach_links(rows)
    return HistoryPage(
        rows=rows, next_cursor=next_cursor, prev_cursor=prev_cursor, filters=filters, scope=scope
    )


def history_rows(
    filters: HistoryFilters, viewer: Any, *, batch: int | None = None
) -> Iterator[HistoryRow]:
    """Every row ``viewer`` may read under ``filters``, in order, with requests attached, read in
    keyset batches of ``batch`` (default ``EXPORT_BATCH``) rows per table: memory stays bounded
    by two batches however many rows match."""
    scope = history_scope_for(viewer, opened_target_id=filters.target)
    size = batch or EXPORT_BATCH
    return _merged(filters, scope, after=None, batch=size, limit=None, enrich=True)


# --- flat rows for the exports ------------------------------------------------------------------

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
# decided_by_name).
_NO_REQUEST: tuple[Any, ...] = ("", "", None, "", "", "", "")


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
        )
        for pk, info in _request_infos(i for i in ids if i).items()
    }


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


def _portal_flat(values: list[tuple[Any, ...]], micros: bool) -> list[_FlatItem]:
    """Merge items of one batch of portal events (``_PORTAL_FLAT_FIELDS``; the time as epoch
    microseconds when ``micros``): one query for the batch's requests, then plain tuples (no
    objects, no dicts: the export's hot loop)."""
    requests = _request_columns(v[8] for v in values)
    kind_labels, outcomes, rank = _KIND_LABELS, _PORTAL_KIND_OUTCOME, SOURCE_RANK["portal"]
    epoch, one = _EPOCH, _ONE_MICROSECOND
    items: list[_FlatItem] = []
    append = items.append
    for t, pk, kind, actor_name, actor_oid, target_id, target_name, ticket, req, detail in values:
        at = epoch + one * t if micros else t
        name, req_ticket, public_id, req_kind, status, verification, decided = (
            requests.get(req, _NO_REQUEST) if req else _NO_REQUEST
        )
        append(
            (
                at,
                rank,
                pk,
                (
                    at, "portal", kind, kind_labels.get(kind, kind), outcomes.get(kind, ""),
                    actor_name or name, actor_oid, target_id, target_name, "",
                    ticket or req_ticket, public_id, req_kind, status, verification, decided,
                    "", "", "", False, "", "", detail,
                ),
            )
        )  # fmt: skip
    return items


def _entra_flat(values: list[tuple[Any, ...]], micros: bool) -> list[_FlatItem]:
    """Merge items of one batch of Entra records (``_ENTRA_FLAT_FIELDS``), as ``_portal_flat``."""
    requests = _request_columns(v[13] for v in values)
    user, rank = DirectoryAuditRecord.InitiatorKind.USER.value, SOURCE_RANK["entra"]
    epoch, one, outcomes = _EPOCH, _ONE_MICROSECOND, _ENTRA_RESULT_OUTCOME
    items: list[_FlatItem] = []
    append = items.append
    for (
        t, pk, activity, result, reason, by_kind, by_id, by_name, target_id, target_name,
        target_upn, correlation_id, entra_id, req, outside,
    ) in values:  # fmt: skip
        at = epoch + one * t if micros else t
        name, req_ticket, public_id, req_kind, status, verification, decided = (
            requests.get(req, _NO_REQUEST) if req else _NO_REQUEST
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
    qs: QuerySet[Any, Any], *, source: Source, descending: bool, batch: int
) -> Iterator[_FlatItem]:
    """Every row of one branch as merge items, in (time, id) order, read in keyset batches of
    ``batch`` rows (one query each, no OFFSET).

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
        page = (
            qs if position is None else qs.filter(_beyond(time_field, rank, position, descending))
        )
        return list(page.order_by(*order).values_list(*fields)[:batch])

    def after(values: list[tuple[Any, ...]]) -> Cursor:
        at, pk = values[-1][0], values[-1][1]
        return Cursor(_EPOCH + _ONE_MICROSECOND * at if micros else at, rank, pk)

    if not micros:
        values = read(None)
        while True:
            yield from make(values, micros)
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
                yield from make(values, micros)
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
    branch and query, default ``EXPORT_BATCH``), so memory stays bounded by a few batches."""
    scope = history_scope_for(viewer, opened_target_id=filters.target)
    size = batch or EXPORT_BATCH
    request_pk = _request_pk(filters.request) if filters.request else None
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
                _flat_stream(qs, source=source, descending=filters.descending, batch=size)
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
