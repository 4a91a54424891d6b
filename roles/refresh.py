"""Reading every holder again into a ``RoleHolderSnapshot`` (beat, an Admin's button, or after
a change), then linking finished changes to Entra's audit events (``roles.linking``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.models import PortalEvent
from audit.services import portal_event_record
from graph import Priority
from graph.errors import GraphError
from roles.holders import all_people, read_role_holders, refresh_in_progress
from roles.linking import role_changes_correlate
from roles.models import RoleHolderSnapshot

logger = logging.getLogger(__name__)


def role_holders_refresh_request(
    *, trigger: str, by: Any = None, http_request: HttpRequest | None = None
) -> RoleHolderSnapshot:
    """Queue a read of every holder (a ``RoleHolderSnapshot`` row, enqueued on commit): on the
    ``interactive`` queue and priority when a person asked (``trigger`` "button" or "change"),
    on ``sync`` for the schedule. A read already queued or running is returned instead."""
    running = refresh_in_progress()
    if running is not None:
        return running
    with transaction.atomic():
        snapshot = RoleHolderSnapshot.objects.create(
            trigger=trigger, requested_by=by if getattr(by, "pk", None) else None
        )
        priority = Priority.SYNC if trigger == "schedule" else Priority.INTERACTIVE
        pk = snapshot.pk

        def send() -> None:
            from roles.tasks import role_holders_refresh

            queue = "sync" if priority == Priority.SYNC else "interactive"
            try:
                role_holders_refresh.apply_async(args=(pk, str(priority)), queue=queue)
            except Exception:  # a broker failure: the next schedule reads again
                logger.warning("could not enqueue role holder refresh %s", pk)

        transaction.on_commit(send)
    return snapshot


def role_holders_refresh(*, snapshot_id: int, priority: str = Priority.SYNC) -> RoleHolderSnapshot:
    """Read every holder through Graph at ``priority`` (the shared budget serves ``interactive``
    first), store them in snapshot ``snapshot_id`` and record ``role_holders_refreshed``; then
    link finished role changes to Entra's audit events. A snapshot another worker already took
    is returned untouched. A Graph failure is stored on the snapshot (``failed``)."""
    with transaction.atomic():
        taken = RoleHolderSnapshot.objects.filter(
            pk=snapshot_id, state=RoleHolderSnapshot.State.PENDING
        ).update(state=RoleHolderSnapshot.State.RUNNING)
    snapshot = RoleHolderSnapshot.objects.get(pk=snapshot_id)
    if not taken:
        return snapshot
    from portal.graph_client import get_graph_client

    client = get_graph_client().with_priority(priority)
    try:
        holders = read_role_holders(client)
    except GraphError as exc:
        RoleHolderSnapshot.objects.filter(pk=snapshot_id).update(
            state=RoleHolderSnapshot.State.FAILED,
            finished_at=timezone.now(),
            error_code=exc.code[:128],
            error_message=exc.message,
            error_request_id=(exc.request_id or "")[:64],
        )
        snapshot.refresh_from_db()
        return snapshot
    counts = {name: len(all_people(holders.of(name))) for name in holders.roles}
    with transaction.atomic():
        RoleHolderSnapshot.objects.filter(pk=snapshot_id).update(
            state=RoleHolderSnapshot.State.DONE,
            finished_at=timezone.now(),
            holders=holders.as_json(),
        )
        portal_event_record(
            kind=PortalEvent.Kind.ROLE_HOLDERS_REFRESHED,
            actor=snapshot.requested_by,
            detail={"trigger": snapshot.trigger, "priority": str(priority), "people": counts},
        )
    # Keep a day of reads: the page needs only the newest, the history lives in PortalEvents.
    RoleHolderSnapshot.objects.filter(created_at__lt=timezone.now() - timedelta(days=1)).delete()
    role_changes_correlate()
    snapshot.refresh_from_db()
    return snapshot
