"""Linking finished role changes to Entra's audit events for them (correlation with the audit
cache, ``audit.models.DirectoryAuditRecord``), by the one rule of ``audit.correlation``."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.correlation import distance_from_run, records_explained_by
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.services import portal_event_record
from outbox.states import Status
from roles.audit_sources import portal_change
from roles.events import event_detail, event_fields
from roles.models import RoleChangeRequest


def role_changes_correlate(*, since_days: int = 30) -> int:
    """Link finished role changes to Entra's events for them in the audit cache
    (``audit.models.DirectoryAuditRecord``): "Add member to role" / "Remove member from role" or
    the PIM activities, naming the same principal and role, initiated by the portal's app, within
    ``AUDIT_CORRELATION_WINDOW_MINUTES`` of the change's run (``audit.correlation.explains``);
    of the events not linked to another change, the nearest to the run is taken (the earliest
    of equals), so a change made minutes after another like it gets its own event. A linked
    Entra event is not "outside the portal" (its ``outside_portal`` is cleared). Returns how
    many changes were linked, each with a ``role_change_linked`` event."""
    since = timezone.now() - timedelta(days=since_days)
    rows = RoleChangeRequest.objects.filter(
        status=Status.SUCCEEDED, entra_event_ids=[], finished_at__gte=since
    ).exclude(started_at=None)
    linked_ids = {
        i
        for ids in RoleChangeRequest.objects.exclude(entra_event_ids=[]).values_list(
            "entra_event_ids", flat=True
        )
        for i in ids or ()
    }
    count = 0
    for row in rows:
        change = portal_change(row)
        match = min(
            (c for c in records_explained_by(change) if c.entra_id not in linked_ids),
            key=lambda c: distance_from_run(change, c.activity_at),
            default=None,
        )
        if match is None:
            continue
        with transaction.atomic():
            done = RoleChangeRequest.objects.filter(pk=row.pk, entra_event_ids=[]).update(
                entra_event_ids=[match.entra_id]
            )
            if not done:
                continue
            DirectoryAuditRecord.objects.filter(pk=match.pk).update(outside_portal=False)
            portal_event_record(
                kind=PortalEvent.Kind.ROLE_CHANGE_LINKED,
                detail=event_detail(
                    row,
                    entra_id=match.entra_id,
                    entra_activity=match.activity,
                    entra_activity_at=match.activity_at.isoformat(),
                ),
                **event_fields(row),
            )
        linked_ids.add(match.entra_id)
        count += 1
    return count
