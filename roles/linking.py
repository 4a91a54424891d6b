"""Linking finished role changes to Entra's audit events for them (correlation with the audit
cache, ``audit.models.DirectoryAuditRecord``), by the one rule of ``audit.correlation``."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.correlation import distance_from_run, is_ms_pim, records_explained_by
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.services import portal_event_record
from audit.sources import PortalChange
from outbox.states import Status
from roles.audit_sources import portal_change
from roles.events import event_detail, event_fields
from roles.models import RoleChangeRequest


def _nearest(
    change: PortalChange, records: list[DirectoryAuditRecord]
) -> DirectoryAuditRecord | None:
    """The record nearest to the change's run (the earliest of equals: records come oldest
    first)."""
    return min(records, key=lambda c: distance_from_run(change, c.activity_at), default=None)


def role_changes_correlate(*, since_days: int = 30) -> int:
    """Link finished role changes to Entra's events for them in the audit cache
    (``audit.models.DirectoryAuditRecord``): "Add member to role" / "Remove member from role" or
    the PIM activities, naming the same principal and role, initiated by the portal's app, within
    ``AUDIT_CORRELATION_WINDOW_MINUTES`` of the change's run (``audit.correlation.explains``);
    of the events not linked to another change, the nearest to the run is taken (the earliest
    of equals), so a change made minutes after another like it gets its own event. For a change
    PIM provisioned, the directory's event initiated by MS-PIM is linked as well (the portal's
    own event first). A linked
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
        candidates = [c for c in records_explained_by(change) if c.entra_id not in linked_ids]
        # The event the portal's own call wrote, and, for a change PIM provisioned, the
        # directory's event initiated by MS-PIM: both are this change's.
        own = _nearest(change, [c for c in candidates if not is_ms_pim(c)])
        by_pim = _nearest(change, [c for c in candidates if is_ms_pim(c)])
        matches = [m for m in (own, by_pim) if m is not None]
        if not matches:
            continue
        match = matches[0]
        with transaction.atomic():
            done = RoleChangeRequest.objects.filter(pk=row.pk, entra_event_ids=[]).update(
                entra_event_ids=[m.entra_id for m in matches]
            )
            if not done:
                continue
            DirectoryAuditRecord.objects.filter(pk__in=[m.pk for m in matches]).update(
                outside_portal=False
            )
            portal_event_record(
                kind=PortalEvent.Kind.ROLE_CHANGE_LINKED,
                detail=event_detail(
                    row,
                    entra_id=match.entra_id,
                    entra_activity=match.activity,
                    entra_activity_at=match.activity_at.isoformat(),
                    also_linked=[m.entra_id for m in matches[1:]],
                ),
                **event_fields(row),
            )
        linked_ids.update(m.entra_id for m in matches)
        count += 1
    return count
