"""The two querysets of history, one per table, and the keyset condition that pages them.

Each is a list of branches whose union is the answer: an OR of conditions on different columns
becomes one query per condition, each served by one composite index (audit/models.py), merged
in time by the readers (``audit.selectors.history``, ``audit.selectors.flat``).

The agent filter reads ``DirectoryAuditRecord.agent_oid`` (denormalised by audit.correlation);
free text is ``ILIKE '%text%'`` on PostgreSQL, served by the trigram indexes of migration 0009.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.db.models.lookups import IContains
from django.utils import timezone

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.permissions import HistoryScope
from audit.selectors.compiled import values_rows
from audit.selectors.filters import ENTRA_OUTCOMES, PORTAL_OUTCOMES, Cursor, HistoryFilters
from audit.sources import request_manager


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
        request_manager().filter(*conditions, **condition).order_by().values_list("pk", flat=True)
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
    the branches' ordered streams are merged (duplicates dropped) by ``merged_stream``.
    """
    combos: list[list[Q]] = [[]]
    for group in alternatives:
        combos = [[*combo, condition] for combo in combos for condition in group]
    return [qs.filter(*combo) for combo in combos]


# A text that names more people than this is not a UPN: the UPN branch keeps the first ones.
UPN_MATCHES_MAX = 500


def _targets_by_upn(text: str) -> list[str]:
    """The object ids of the people whose UPN (as the portal's requests recorded it) contains
    ``text``: a portal event names its person by object id and display name only, so a search
    for ``sam.standard`` finds Sam's events through them."""
    if len(text) < 3 or any(c.isspace() for c in text):
        # No UPN holds a space ("Sam Standard" is a name, which the name condition covers).
        return []
    return list(
        request_manager()
        .filter(_contains("target_upn", text))
        .order_by()
        .values_list("target_id", flat=True)
        .distinct()[:UPN_MATCHES_MAX]
    )


def _requests_of(user_pk: int) -> QuerySet[Any, Any]:
    """The ids of ``user_pk``'s requests, as a subquery on ``requester_id = <constant>``.

    Not a list of ids, nor a join on the username: PostgreSQL's statistics on requester_id tell
    it how many requests this person has, and it picks per person between probing the
    (request, time) index request by request (few requests) and walking the time index with a
    hashed set (many). A list of tens of thousands of ids forced the probes (half a second for
    the busiest agent); a join on the username hid the count and made it walk the whole time
    index for an agent with few requests.
    """
    return request_manager().filter(requester_id=user_pk).order_by().values("pk")


def _username(user_pk: int | None) -> str:
    """The username (the Entra object id, accounts.models) of Django user ``user_pk``; a value no
    record holds when there is none."""
    if user_pk is None:
        return ""
    found = values_rows(get_user_model().objects.filter(pk=user_pk), ("username",), limit=1)
    # agent_oid is never blank for a linked record, so "" matches nothing here.
    return str(found[0][0]) if found and found[0][0] else ""


def _user_pk(oid: str) -> int:
    """The Django user whose username is the Entra object id ``oid`` (accounts.models); 0 (matches
    nothing) when there is none."""
    found = values_rows(get_user_model().objects.filter(username=oid), ("pk",), limit=1)
    return int(found[0][0]) if found else 0


def request_pk_for(public_id: uuid.UUID) -> int:
    """The primary key of the request ``public_id``; 0 (matches nothing) when unknown."""
    found = values_rows(request_manager().filter(public_id=public_id), ("pk",), limit=1)
    return int(found[0][0]) if found else 0


def _scope_implied(filters: HistoryFilters, scope: HistoryScope) -> bool:
    """Whether ``scope`` restricts nothing that ``filters`` has not already: it sees everything,
    or it is an Agent's scope on the person they opened and the filters keep only that person
    (every row about that person is in scope, so the scope's branches would only repeat the
    target's query)."""
    return scope.everything or bool(scope.target_id and scope.target_id == filters.target)


# The request filter's request: its primary key, or ``request_pk_subquery``'s subquery.
RequestPk = int | QuerySet[Any, Any]


def request_pk_subquery(public_id: uuid.UUID) -> QuerySet[Any, Any]:
    """The primary key of the request ``public_id`` as a one-row subquery: a page's branches
    compare their request column to it (``= (SELECT ...)``, which PostgreSQL evaluates once
    before reading the (request, time) index), so the page needs no statement of its own to
    look the request up; no row (an unknown id) matches nothing."""
    return request_manager().filter(public_id=public_id).order_by().values("pk")[:1]


def portal_queryset(
    filters: HistoryFilters, scope: HistoryScope, *, request_pk: RequestPk | None = None
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
        # A pk or a one-row subquery (``RequestPk``): Q, which takes either.
        qs = qs.filter(Q(request=request_pk))
    if filters.q:
        text = (
            _contains("actor_name", filters.q)
            | _contains("target_name", filters.q)
            | _contains("ticket", filters.q)
        )
        by_upn = _targets_by_upn(filters.q)
        # Two branches (one index each) rather than an OR no index serves.
        alternatives.append([text, Q(target_id__in=by_upn)] if by_upn else [text])
    if not _scope_implied(filters, scope):
        own = [Q(actor_id=scope.user_id), Q(request__in=_requests_of(scope.user_id or 0))]
        if scope.target_id:
            own.append(Q(target_id=scope.target_id))
        alternatives.append(own)
    return _branches(qs, alternatives)


def entra_queryset(
    filters: HistoryFilters, scope: HistoryScope, *, request_pk: RequestPk | None = None
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
        qs = qs.filter(Q(action_request=request_pk))
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
    if not _scope_implied(filters, scope):
        # The records linked to the viewer's requests: agent_oid holds the requester of a linked
        # record (audit.correlation), so this is a range scan of (agent_oid, activity_at).
        own = [Q(agent_oid=_username(scope.user_id), action_request__isnull=False)]
        if scope.target_id:
            own.append(Q(target_id=scope.target_id))
        alternatives.append(own)
    return _branches(qs, alternatives)


def beyond(time_field: str, rank: int, cursor: Cursor, descending: bool) -> Q:
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
