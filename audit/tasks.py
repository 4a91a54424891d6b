"""Celery tasks of the audit trail: thin wrappers, on the ``sync`` queue (portal/celery.py routes
``audit.tasks.*`` there; beat also sends them at the lowest priority).

Both are safe to deliver twice: a second sync finds the lease taken (or nothing new), a second
prune finds nothing past retention.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from audit import retention, sync

logger = logging.getLogger(__name__)


@shared_task(name="audit.tasks.entra_audit_sync", ignore_result=True)
def entra_audit_sync() -> dict[str, Any]:
    """Beat, every AUDIT_SYNC_INTERVAL_SECONDS: pull new Entra audit events (audit.sync).

    A run that finds another one holding the lease does nothing. A Graph failure is recorded in
    ``AuditSyncState.last_error`` and raised; the next beat resumes from the last stored page.
    """
    try:
        result = sync.entra_audit_sync()
    except sync.SyncBusy:
        logger.info("audit sync: another run holds the lease; skipped")
        return {"skipped": True}
    return {"pages": result.pages, "inserted": result.inserted, "finished": result.finished}


@shared_task(name="audit.tasks.entra_audit_prune", ignore_result=True)
def entra_audit_prune() -> int:
    """Beat, daily: remove cached Entra events past AUDIT_RETENTION_DAYS (logged as a
    PortalEvent). Returns how many were removed."""
    return retention.entra_audit_prune().deleted
