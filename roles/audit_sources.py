"""What roles tells audit about role changes (``audit.sources``): how a ``RoleChangeRequest``
looks to the one correlation rule (``audit.correlation.explains``).

A role change explains Entra's "Add member to role" / "Remove member from role" events (and the
PIM ones) that name its principal and its role. audit imports no roles module;
``RolesConfig.ready()`` imports this one, which registers role changes as a change source, so
that the Entra events they explain are not "outside the portal". The roles page
(``roles.drift``) and the links (``roles.linking``) ask the same rule through
:func:`portal_change`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.db.models import Q
from django.urls import reverse

from audit.correlation import (
    correlation_window,
    distance_from_run,
    explains,
    is_pim_activity,
    is_role_membership,
    may_explain,
)
from audit.models import DirectoryAuditRecord
from audit.selectors.compiled import values_rows
from audit.sources import (
    CandidateRecord,
    ChangeHistory,
    ChangeSummary,
    PortalChange,
    change_history_register,
    change_source_register,
)
from outbox.states import Status
from roles.catalog import ADD_ACTIVITIES, REMOVE_ACTIVITIES
from roles.models import HoldKind, RoleChange, RoleChangeRequest


def _is_pim(activity: str) -> bool:
    return is_pim_activity(activity)


def _is_eligible(activity: str) -> bool:
    return "eligible" in activity.lower()


@functools.cache
def change_activities(change: str, hold_kind: str) -> frozenset[str]:
    """The Entra activities a change of kind ``change`` and ``hold_kind`` writes, by the way
    the runner makes it (``roles.runners``; a handful of combinations, computed once each):

    - a permanent active assignment (roleAssignments): the directory's "Add member to role";
    - an active assignment with an end (a PIM request): PIM's "Add member to role in PIM
      completed (...)" *and* the directory's "Add member to role", which Entra writes initiated
      by the MS-PIM service (``audit.correlation``: a change with a PIM activity accepts it);
    - an eligibility (a PIM request): the eligible activities only (no active membership);
    - a removal of an active holder: either way (direct, or PIM for a time-bound one), with the
      directory's "Remove member from role"; of an eligible holder: the eligible removals.
    """
    if change == RoleChange.ADD:
        names = ADD_ACTIVITIES
        if hold_kind == HoldKind.ELIGIBLE_UNTIL:
            return frozenset(a for a in names if _is_eligible(a))
        if hold_kind == HoldKind.ACTIVE_UNTIL:
            return frozenset(a for a in names if not _is_eligible(a))
        return frozenset(a for a in names if not _is_pim(a) and not _is_eligible(a))
    names = REMOVE_ACTIVITIES
    if hold_kind in (HoldKind.ELIGIBLE, HoldKind.ELIGIBLE_UNTIL):
        return frozenset(a for a in names if _is_eligible(a))
    return frozenset(a for a in names if not _is_eligible(a))


def portal_change(change: RoleChangeRequest) -> PortalChange:
    """``change`` (started) as correlation sees it: it names the principal and the role's
    template id (Entra's membership events name the template in ``Role.TemplateId``; the Role
    target there is the directoryRole object). Role changes always run as the portal's app (no
    delegated mode), so no agent is named."""
    assert change.started_at is not None
    return _portal_change(
        change.pk, str(change.change), str(change.hold_kind), change.principal_id,
        change.role_template_id, change.started_at, change.finished_at, change.entra_event_ids,
    )  # fmt: skip


def _portal_change(
    pk: int,
    change: str,
    hold_kind: str,
    principal_id: str,
    role_template_id: str,
    started_at: datetime,
    finished_at: datetime | None,
    entra_event_ids: Iterable[str] | None,
) -> PortalChange:
    """A started change's columns (``_CHANGE_FIELDS``' order) as correlation sees it."""
    return PortalChange(
        pk=pk,
        target_ids=frozenset({principal_id, role_template_id}),
        activities=change_activities(change, hold_kind),
        started_at=started_at,
        finished_at=finished_at,
        linked_entra_ids=frozenset(entra_event_ids or ()),
    )


# The columns of a change that correlation reads (``_portal_changes``), with the model's order.
_CHANGE_FIELDS = (
    "id",
    "change",
    "hold_kind",
    "principal_id",
    "role_template_id",
    "started_at",
    "finished_at",
    "entra_event_ids",
    "created_at",
)
# RoleChangeRequest.Meta.ordering: of two equally near changes, the first in it wins.
_CHANGE_ORDER = ("-created_at", "-id")


def _portal_changes(earliest: datetime, latest: datetime) -> list[PortalChange]:
    """Every started role change whose run overlaps [earliest, latest], in the model's order
    (newest first), as correlation sees it: one query of plain values, no model instance."""
    rows = values_rows(
        RoleChangeRequest.objects.filter(started_at__isnull=False, started_at__lte=latest).filter(
            Q(finished_at__isnull=True) | Q(finished_at__gte=earliest)
        ),
        _CHANGE_FIELDS,
        order=_CHANGE_ORDER,
    )
    # The last column (created_at) is read for the order only.
    return [_portal_change(*row[:-1]) for row in rows]


def role_change_changes(
    records: Sequence[DirectoryAuditRecord], slack: timedelta
) -> list[PortalChange]:
    """Every started role change that could explain one of the role membership events among
    ``records`` (run within ``slack`` of them): one query for the whole batch."""
    times = [r.activity_at for r in records if is_role_membership(r.activity)]
    if not times:
        return []
    return _portal_changes(min(times) - slack, max(times) + slack)


def role_change_summaries(pks: Iterable[int]) -> dict[int, ChangeSummary]:
    """What history shows of the role changes among ``pks`` (one query)."""
    wanted = {pk for pk in pks if pk}
    if not wanted:
        return {}
    statuses = dict(Status.choices)
    changes = RoleChangeRequest.objects.filter(pk__in=wanted).select_related("requester")
    return {
        row.pk: ChangeSummary(
            flow="roles",
            pk=row.pk,
            public_id=row.public_id,
            kind_label=f"{row.get_change_display()}: {row.role_name}",
            status=row.status,
            status_label=statuses.get(row.status, row.status),
            requester_name=row.requester_name,
            # The Django user's username is the person's Entra object id (accounts.models).
            requester_oid=row.requester.get_username(),
            ticket=row.ticket,
            needs_approval=row.needs_approval,
            decided_by_name=row.decided_by_name,
            decision_comment=row.decision_comment,
            target_upn=row.principal_upn,
            url=reverse("roles:role_change_detail", args=[row.public_id]),
            created_at=row.created_at,
            entra_event_ids=tuple(row.entra_event_ids or ()),
            target_id=row.principal_id,
        )
        for row in changes
    }


def role_change_of_records(record_ids: Sequence[int]) -> dict[int, int]:
    """For each of the Entra records ``record_ids`` that a role change made: that change's
    primary key. The change that linked the record (``entra_event_ids``, by
    ``roles.linking``) wins; else the nearest change the one rule says explains it (a change
    not linked yet, before the next sync links it). Records linked to an action request are
    not role changes' (``role_change_of_candidates`` after one query of the light columns)."""
    light = values_rows(
        DirectoryAuditRecord.objects.filter(pk__in=list(record_ids), action_request__isnull=True),
        CandidateRecord._fields,
    )
    return role_change_of_candidates(
        [CandidateRecord(*v) for v in light if is_role_membership(v[2])]
    )


def role_change_of_candidates(records: Sequence[CandidateRecord]) -> dict[int, int]:
    """``role_change_of_records`` of the role membership records ``records`` (not linked to an
    action request), from what the caller read of them: one query when no role change ran
    near them (the usual page), and a second, of the records' ``raw`` (which the rule reads
    for the role's template id), only for records that a change could explain by its activity
    and run but did not link."""
    if not records:
        return {}
    slack = correlation_window()
    times = [r.activity_at for r in records]
    changes = _portal_changes(min(times) - slack, max(times) + slack)
    if not changes:
        return {}
    found: dict[int, int] = {}
    # Per record, the changes that could explain it, in the changes' order: those that linked
    # it, else those ``may_explain`` admits (``explains`` asks it before reading the rest of
    # the record).
    unlinked: dict[int, list[PortalChange]] = {}
    for record in records:
        linked = [c for c in changes if record.entra_id in c.linked_entra_ids]
        if linked:
            found[record.id] = _nearest(linked, record.activity_at).pk
            continue
        possible = [
            c for c in changes if may_explain(c, record.activity, record.activity_at, slack=slack)
        ]
        if possible:
            unlinked[record.id] = possible
    if unlinked:
        for full in DirectoryAuditRecord.objects.filter(pk__in=sorted(unlinked)):
            explaining = [c for c in unlinked[full.pk] if explains(c, full, slack=slack)]
            if explaining:
                found[full.pk] = _nearest(explaining, full.activity_at).pk
    # In the records' order, as the rule was asked of them.
    return {r.id: found[r.id] for r in records if r.id in found}


def _nearest(changes: list[PortalChange], moment: datetime) -> PortalChange:
    """Of ``changes``, the nearest to ``moment`` (the first of equally near ones)."""
    return min(changes, key=lambda c: distance_from_run(c, moment))


change_source_register("roles", role_change_changes)
change_history_register(
    ChangeHistory(
        flow="roles",
        event_key="role_change_id",
        summaries=role_change_summaries,
        for_records=role_change_of_records,
        for_candidates=role_change_of_candidates,
    )
)
