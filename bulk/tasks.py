"""Celery tasks of the bulk operations: thin wrappers that call one service each.

``bulk_operation_run`` runs on the ``bulk`` queue (work on many people that nobody waits on
line for); the beat tasks on ``sync``. Arguments are primary keys only; outcomes live in the
rows.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from bulk.flow import BULK_OPERATIONS
from bulk.models import BulkItem, BulkOperation, ItemState, counters
from outbox import decisions, engine
from outbox.errors import Deferred
from outbox.states import Status


@shared_task(
    bind=True,
    name="bulk.tasks.bulk_operation_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def bulk_operation_run(self: Any, request_id: int) -> None:
    """Run bulk operation ``request_id`` (``bulk.runner``). Claimed with a lease and fenced: a
    redelivered message, or one sent again by beat after a lost worker, is safe."""
    try:
        engine.execute(BULK_OPERATIONS, request_id)
    except Deferred as deferred:
        raise self.retry(countdown=deferred.countdown, exc=None, throw=True) from None


@shared_task(name="bulk.tasks.operations_redispatch", ignore_result=True)
def operations_redispatch() -> int:
    """Beat, every 30 s: dispatch again the operations no worker picked up (or whose worker
    died: its lease ran out)."""
    return engine.redispatch(BULK_OPERATIONS)


@shared_task(name="bulk.tasks.operations_expire_stale", ignore_result=True)
def operations_expire_stale() -> int:
    """Beat, every minute: expire operations that waited too long for an approval (their
    people are then cancelled)."""
    expired = decisions.expire_stale(BULK_OPERATIONS)
    if expired:
        for op in BulkOperation.objects.filter(
            status=Status.EXPIRED, items__state=ItemState.QUEUED
        ).distinct():
            BulkItem.objects.filter(operation=op, state=ItemState.QUEUED).update(
                state=ItemState.CANCELLED, finished_at=timezone.now()
            )
            BulkOperation.objects.filter(pk=op.pk).update(**counters(op))
    return expired
