"""The columns every durable request has: an abstract model that each flow's model extends.

The row is the outbox (DESIGN.md): it is written with its audit event in one transaction, its task
is enqueued on commit, and beat dispatches again the rows no worker picked up. Change such a row
only through ``outbox.engine`` (execution, decisions) and the flow's own service functions
(creation).

A concrete model adds its own inputs (target, kind, parameters), its ``requester`` and
``decided_by`` foreign keys (each flow names their reverse accessors) and its ``open_slot``: a
unique column that is set while the request is open and NULL once it is final, so that the
database allows one open request per slot.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Self, TypeVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from outbox.states import FINAL_STATUSES, Status

M = TypeVar("M", bound=models.Model)


class DurableRequestQuerySet(models.QuerySet[M]):
    def open(self) -> Self:
        """The requests that may still change (not in a final state)."""
        return self.exclude(status__in=FINAL_STATUSES)


class DurableRequest(models.Model):
    """One durable request, from recorded to final. See ``outbox.engine`` for its life."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(
        max_length=32, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    requester_name = models.CharField(max_length=256)
    # One submitted form makes one request, however often it is posted.
    idempotency_key = models.CharField(max_length=64, unique=True)
    decided_by_name = models.CharField(max_length=256, blank=True)
    decision_comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the task was last sent (or, after a deferral, when its retry is due): beat leaves the
    # row alone until then plus PORTAL_REDISPATCH_AFTER_SECONDS.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The running worker's lease: refreshed at every save. A ``running`` row whose heartbeat is
    # older than PORTAL_ACTION_LEASE_SECONDS belongs to a dead worker and may be claimed again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Claims so far; also the fencing token of the current claim.
    attempts = models.PositiveIntegerField(default=0)
    # Progress a person can read: [{"at": iso, "text": str, "state": "running" | "done" |
    # "failed" | "waiting", "detail": str}].
    steps = models.JSONField(default=list, blank=True)
    # The write journal. Graph writes begun but not yet known to be done ({key: iso time}): a
    # worker that dies between sending a write and recording it leaves its key here, and the
    # re-run reads Graph to learn the outcome instead of writing again.
    pending_writes = models.JSONField(default=dict, blank=True)
    # Graph writes known to be done, by key: a re-run never repeats one.
    completed_writes = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=128, blank=True)
    error_message = models.TextField(blank=True)
    error_request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        abstract = True
        ordering = ("-created_at", "-id")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def approval_expires_at(self) -> datetime:
        minutes: int = settings.PORTAL_APPROVAL_TTL_MINUTES
        return self.created_at + timedelta(minutes=minutes)
