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

from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.db.models import Q
from django.urls import reverse

from audit.correlation import (
    correlation_window,
    distance_from_run,
    explains,
    is_pim_activity,
    is_role_membership,
)
from audit.models import DirectoryAuditRecord
from audit.sources import (
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


def change_activities(change: RoleChangeRequest) -> frozenset[str]:
    """The Entra activities ``change`` writes, by the way the runner makes it
    (``roles.runners``):

    - a permanent active assignment (roleAssignments): the directory's "Add member to role";
    - an active assignment with an end (a PIM request): PIM's "Add member to role in PIM
      completed (...)" *and* the directory's "Add member to role", which Entra writes initiated
      by the MS-PIM service (``audit.correlation``: a change with a PIM activity accepts it);
    - an eligibility (a PIM request): the eligible activities only (no active membership);
    - a removal of an active holder: either way (direct, or PIM for a time-bound one), with the
      directory's "Remove member from role"; of an eligible holder: the eligible removals.
    """
    if change.change == RoleChange.ADD:
        names = ADD_ACTIVITIES
        if change.hold_kind == HoldKind.ELIGIBLE_UNTIL:
            return frozenset(a for a in names if _is_eligible(a))
        if change.hold_kind == HoldKind.ACTIVE_UNTIL:
            return frozenset(a for a in names if not _is_eligible(a))
        return frozenset(a for a in names if not _is_pim(a) and not _is_eligible(a))
    names = REMOVE_ACTIVITIES
    if change.hold_kind in (HoldKind.ELIGIBLE, HoldKind.ELIGIBLE_UNTIL):
        return frozenset(a for a in names if _is_eligible(a))
    return frozenset(a for a in names if not _is_eligible(a))


def portal_change(change: RoleChangeRequest) -> PortalChange:
    """``change`` (started) as correlation sees it: it names the principal and the role's
    template id (Entra's membership events name the template in ``Role.TemplateId``; the Role
    target there is the directoryRole object). Role changes always run as the portal's app (no
    delegated mode), so no agent is named."""
    assert change.started_at is not None
    return PortalChange(
        pk=change.pk,
        target_ids=frozenset({change.principal_id, change.role_template_id}),
        activities=change_activities(change),
        started_at=change.started_at,
        finished_at=change.finished_at,
        linked_entra_ids=frozenset(change.entra_event_ids or ()),
    )


def role_change_changes(
    records: Sequence[DirectoryAuditRecord], slack: timedelta
) -> list[PortalChange]:
    """Every started role change that could explain one of the role membership events among
    ``records`` (run within ``slack`` of them): one query for the whole batch."""
    role_records = [r for r in records if is_role_membership(r.activity)]
    if not role_records:
        return []
    earliest = min(r.activity_at for r in role_records) - slack
    latest = max(r.activity_at for r in role_records) + slack
    changes = (
        RoleChangeRequest.objects.filter(started_at__isnull=False, started_at__lte=latest)
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=earliest))
        .only(
            "change",
            "hold_kind",
            "principal_id",
            "role_template_id",
            "started_at",
            "finished_at",
            "entra_event_ids",
        )
    )
    return [portal_change(change) for change in changes]


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
    not role changes' (two queries when no role change ran then, three otherwise)."""
    # The light columns first: most batches hold no role change's event, and then the heavy
    # ``raw`` (which the rule reads for the role's template id) is never loaded.
    light = [
        record
        for record in DirectoryAuditRecord.objects.filter(
            pk__in=list(record_ids), action_request__isnull=True
        ).only("id", "entra_id", "activity", "activity_at")
        if is_role_membership(record.activity)
    ]
    if not light:
        return {}
    slack = correlation_window()
    changes = role_change_changes(light, slack)
    if not changes:
        return {}
    records = list(DirectoryAuditRecord.objects.filter(pk__in=[r.pk for r in light]))
    found: dict[int, int] = {}
    for record in records:
        linked = [c for c in changes if record.entra_id in c.linked_entra_ids]
        explaining = linked or [c for c in changes if explains(c, record, slack=slack)]
        if explaining:
            nearest = min(explaining, key=lambda c: distance_from_run(c, record.activity_at))
            found[record.pk] = nearest.pk
    return found


change_source_register("roles", role_change_changes)
change_history_register(
    ChangeHistory(
        flow="roles",
        event_key="role_change_id",
        summaries=role_change_summaries,
        for_records=role_change_of_records,
    )
)
