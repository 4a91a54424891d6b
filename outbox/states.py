"""The states every durable request goes through (DESIGN.md, "The life of an action request").

``awaiting_approval -> pending -> running -> succeeded | partially_succeeded | failed``, and
``rejected``, ``cancelled``, ``expired``. Every transition is a PortalEvent.
"""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded", "Partially succeeded"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


FINAL_STATUSES = frozenset(
    {
        Status.SUCCEEDED,
        Status.PARTIALLY_SUCCEEDED,
        Status.FAILED,
        Status.REJECTED,
        Status.CANCELLED,
        Status.EXPIRED,
    }
)
# The states a request may still be cancelled from: nothing has reached Graph yet.
CANCELLABLE_STATUSES = (Status.AWAITING_APPROVAL, Status.PENDING)
