"""The states every durable request goes through (DESIGN.md, "The life of an action request").

``awaiting_approval -> pending -> running -> succeeded | partially_succeeded | failed``, and
``rejected``, ``cancelled``, ``expired``. Every transition is a PortalEvent.

``escalated`` comes before all of them for a request its requester may prepare but not carry
out (an agent without PAA facing a privileged person under mirrored tiering): someone the flow
names takes it (``outbox.decisions.take``) and it goes on to ``awaiting_approval`` (or
``pending``), or refuses it (``rejected``); it may be cancelled and it expires like an approval.
"""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    ESCALATED = "escalated", "Escalated"
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
# How a sentence says where a request stands: "This change has succeeded", never "is succeeded".
STATUS_PHRASES: dict[str, str] = {
    Status.AWAITING_APPROVAL: "is waiting for approval",
    Status.ESCALATED: "is escalated",
    Status.PENDING: "is queued",
    Status.RUNNING: "is running",
    Status.SUCCEEDED: "has succeeded",
    Status.PARTIALLY_SUCCEEDED: "has partly succeeded",
    Status.FAILED: "has failed",
    Status.REJECTED: "was rejected",
    Status.CANCELLED: "was cancelled",
    Status.EXPIRED: "has expired",
}

# The states a request may still be cancelled from: nothing has reached Graph yet.
CANCELLABLE_STATUSES = (Status.ESCALATED, Status.AWAITING_APPROVAL, Status.PENDING)
# The states that wait for a person's decision (taking an escalation, or an approval): they
# expire after PORTAL_APPROVAL_TTL_MINUTES.
DECISION_STATUSES = (Status.ESCALATED, Status.AWAITING_APPROVAL)
