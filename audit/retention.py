"""Retention of the Entra audit cache: events older than ``AUDIT_RETENTION_DAYS`` are removed.

Only ``DirectoryAuditRecord`` rows are pruned. The portal's own log (``PortalEvent``) is
append-only and never pruned: it is the only record of who did what. Each prune that removes
anything writes a ``PortalEvent`` (kind ``entra_audit_pruned``) with the cutoff and the count, so
the log shows why older Entra events are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.services import portal_event_record

PRUNE_BATCH_SIZE = 5000


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    deleted: int
    event: PortalEvent | None


def retention_cutoff(now: datetime | None = None, days: int | None = None) -> datetime:
    """Events that happened before this moment are past retention."""
    days = settings.AUDIT_RETENTION_DAYS if days is None else days
    return (now or timezone.now()) - timedelta(days=days)


def entra_audit_prune(
    *,
    days: int | None = None,
    actor: AbstractBaseUser | None = None,
    dry_run: bool = False,
    batch_size: int = PRUNE_BATCH_SIZE,
) -> PruneResult:
    """Delete cached Entra events older than ``days`` (default ``AUDIT_RETENTION_DAYS``).

    Deletes in batches of ``batch_size`` (short transactions, so the sync and history readers
    are never blocked for long), then records one PortalEvent with the cutoff, the count and the
    retention, attributed to ``actor`` (None: the scheduled task). Nothing is written when
    nothing was deleted, or with ``dry_run`` (which only counts). Raises ValueError for
    ``days < 1``.
    """
    if days is not None and days < 1:
        raise ValueError("retention must be at least one day")
    cutoff = retention_cutoff(days=days)
    old = DirectoryAuditRecord.objects.filter(activity_at__lt=cutoff)
    if dry_run:
        return PruneResult(cutoff=cutoff, deleted=old.count(), event=None)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(old.order_by("activity_at").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            count, _ = DirectoryAuditRecord.objects.filter(pk__in=ids).delete()
            deleted += count
    event = None
    if deleted:
        event = portal_event_record(
            kind=PortalEvent.Kind.ENTRA_AUDIT_PRUNED,
            actor=actor,
            old_value={"entra_events_before": cutoff.isoformat()},
            new_value={"deleted": deleted},
            detail={
                "cutoff": cutoff.isoformat(),
                "deleted": deleted,
                "retention_days": days or settings.AUDIT_RETENTION_DAYS,
            },
        )
    return PruneResult(cutoff=cutoff, deleted=deleted, event=event)
