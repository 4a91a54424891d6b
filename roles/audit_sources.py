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

from collections.abc import Sequence
from datetime import timedelta

from django.db.models import Q

from audit.correlation import is_role_membership
from audit.models import DirectoryAuditRecord
from audit.sources import PortalChange, change_source_register
from roles.catalog import ADD_ACTIVITIES, REMOVE_ACTIVITIES
from roles.models import RoleChange, RoleChangeRequest


def portal_change(change: RoleChangeRequest) -> PortalChange:
    """``change`` (started) as correlation sees it. Role changes always run as the portal's app
    (no delegated mode), so no agent is named."""
    assert change.started_at is not None
    activities = ADD_ACTIVITIES if change.change == RoleChange.ADD else REMOVE_ACTIVITIES
    return PortalChange(
        pk=change.pk,
        target_ids=frozenset({change.principal_id, change.role_template_id}),
        activities=frozenset(activities),
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
            "principal_id",
            "role_template_id",
            "started_at",
            "finished_at",
            "entra_event_ids",
        )
    )
    return [portal_change(change) for change in changes]


change_source_register("roles", role_change_changes)
