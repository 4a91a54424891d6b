"""Holders added outside the portal: Entra's "Add member to role" events that no portal role
change explains (the ``outside_portal`` warning of /roles/), by the one rule of
``audit.correlation``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from audit.correlation import correlation_window, explains, record_ids
from audit.models import DirectoryAuditRecord
from roles.audit_sources import portal_change
from roles.catalog import ADD_ACTIVITIES, ROLES_SHOWN, role_template
from roles.holders import RoleHolders
from roles.models import RoleChangeRequest


def drift_events(holders: RoleHolders, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Entra "Add member to role" (and PIM add) events from the audit cache, marked outside the
    portal and linked to no portal role change, naming a current holder of a shown role.

    Each item: ``role_name``, ``principal_id``, ``entra_id``, ``activity``, ``activity_at``,
    ``initiated_by``. Looks back ``ROLES_DRIFT_LOOKBACK_DAYS``.

    An event the sync stored before ``roles.linking.role_changes_correlate`` linked it is not
    drift either, when a successful portal add explains it (``audit.correlation.explains``).
    """
    now = now or timezone.now()
    since = now - timedelta(days=settings.ROLES_DRIFT_LOOKBACK_DAYS)
    linked = {
        entra_id
        for ids in RoleChangeRequest.objects.exclude(entra_event_ids=[]).values_list(
            "entra_event_ids", flat=True
        )
        for entra_id in ids or ()
    }
    holders_by_role = {
        role_template(name): (name, {h.principal_id.lower() for h in holders.of(name)})
        for name in ROLES_SHOWN
    }
    found: list[dict[str, Any]] = []
    records = DirectoryAuditRecord.objects.filter(
        outside_portal=True, activity__in=ADD_ACTIVITIES, activity_at__gte=since
    ).order_by("-activity_at")
    slack = correlation_window()
    client_id: str = settings.ENTRA_CLIENT_ID
    portal_adds = [
        portal_change(change)
        for change in RoleChangeRequest.objects.filter(
            change="add", status="succeeded", finished_at__gte=since - slack
        ).exclude(started_at=None)
    ]
    for record in records:
        if record.entra_id in linked or any(
            explains(change, record, slack=slack, client_id=client_id) for change in portal_adds
        ):
            continue
        # The template id is in the member's Role.TemplateId: the Role target of the directory's
        # event is the directoryRole object, whose id is the tenant's own (audit.correlation).
        ids = record_ids(record)
        for template, (name, principals) in holders_by_role.items():
            if template not in ids:
                continue
            for principal in principals & ids:
                found.append(
                    {
                        "role_name": name,
                        "principal_id": principal,
                        "entra_id": record.entra_id,
                        "activity": record.activity,
                        "activity_at": record.activity_at,
                        "initiated_by": record.initiated_by_name or record.initiated_by_id,
                    }
                )
    return found
