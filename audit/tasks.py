"""Celery tasks of the audit trail: thin wrappers, on the ``sync`` queue (portal/celery.py routes
``audit.tasks.*`` there; beat also sends them at the lowest priority).

All are safe to deliver twice: a second sync finds the lease taken (or nothing new), a second
prune finds nothing past retention, a second anchor records the same head again.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from audit import anchors, retention, sync
from portal.graph_client import get_graph_client

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


@shared_task(name="audit.tasks.entra_audit_sync_person", ignore_result=True)
def entra_audit_sync_person(target_id: str, agent_oid: str = "") -> dict[str, Any]:
    """An agent's "sync this person now" (the person page's Entra events panel): the person's
    newest Entra events into the cache (audit.sync.entra_audit_sync_person), read for that agent
    at interactive priority in their fair share of the budget. Safe twice: the dedupe ignores
    what is stored already."""
    client = get_graph_client().for_agent(agent_oid) if agent_oid else None
    result = sync.entra_audit_sync_person(target_id=target_id, client=client)
    return {"seen": result.seen, "kept": result.kept, "inserted": result.inserted}


@shared_task(name="audit.tasks.entra_audit_prune", ignore_result=True)
def entra_audit_prune() -> int:
    """Beat, daily: remove cached Entra events past AUDIT_RETENTION_DAYS (logged as a
    PortalEvent). Returns how many were removed."""
    return retention.entra_audit_prune().deleted


@shared_task(name="audit.tasks.audit_chain_anchor", ignore_result=True)
def audit_chain_anchor() -> dict[str, Any]:
    """Beat, every AUDIT_ANCHOR_INTERVAL_SECONDS: record the event chain's head outside the
    database (audit.anchors: AUDIT_ANCHOR_FILE and the ``audit.anchor`` log).

    A chain that no longer extends the latest anchor (events removed or rewritten) is logged as
    an ERROR and not anchored; the task then raises, so the failure shows in the worker's log and
    monitoring as well.
    """
    written = anchors.anchor_write()
    return {"seq": written.anchor.seq, "hash": written.anchor.hash}
