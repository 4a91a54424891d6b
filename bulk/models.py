"""Bulk operations (issue 14): one incident-response operation on many people, on the
durable-request engine (``bulk.flow``), each person's part a normal ``mfa.ActionRequest``.

Life of an operation: ``bulk.services.plan`` stores the dry run as a ``draft`` (never enqueued,
``confirmed_at`` NULL); ``confirm`` makes it ``awaiting_approval`` (above
PORTAL_BULK_APPROVAL_THRESHOLD people, or with a privileged person included) or ``pending``;
from there the engine's life applies (``outbox.states``): ``pending -> running -> succeeded |
partially_succeeded | failed``, ``rejected``, ``cancelled``, ``expired``. A paused operation is
``pending`` with ``paused_at`` set: beat leaves it alone until it is resumed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models

from outbox.models import DurableRequest, DurableRequestQuerySet
from outbox.states import Status

# The dry run, stored but not confirmed: not a state of the engine (it never claims, expires or
# dispatches a draft).
DRAFT = "draft"
OPERATION_STATUSES: list[tuple[str, str]] = [(DRAFT, "Dry run"), *Status.choices]


class BulkAction(models.TextChoices):
    """What a bulk operation does to each person, in this order of execution."""

    REVOKE_SESSIONS = "revoke_sessions", "Revoke sign-in sessions"
    REREGISTER = "reregister", "Require MFA re-registration"


class Source(models.TextChoices):
    PASTE = "paste", "Pasted list"
    CSV = "csv", "CSV file"
    GROUP = "group", "Group"


class Refusal(models.TextChoices):
    """Why the dry run left a person out ("" when included)."""

    NOT_FOUND = "not_found", "Not found"
    DISABLED = "disabled", "Account disabled"
    PRIVILEGED_WITHOUT_PAA = "privileged_without_paa", "Privileged, and the starter has no PAA"
    STARTER = "starter", "The starter themselves"
    DUPLICATE = "duplicate", "Listed twice"
    STAFF_OR_BREAK_GLASS = (
        "staff_or_break_glass",
        "Portal staff or break-glass account (an Admin must confirm)",
    )
    GUEST = "guest", "Guest account"


class ItemState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class BulkOperationQuerySet(DurableRequestQuerySet["BulkOperation"]):
    def confirmed(self) -> BulkOperationQuerySet:
        return self.exclude(status=DRAFT)


class BulkOperation(DurableRequest):
    """One bulk operation, from its dry run to its outcome. The life, the lease and the journal
    are the engine's columns (``outbox.models.DurableRequest``)."""

    status = models.CharField(
        max_length=32, choices=OPERATION_STATUSES, default=DRAFT, db_index=True
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bulk_operations"
    )
    requester_oid = models.CharField(max_length=64, blank=True)
    # BulkAction values, in their order of execution per person.
    actions = models.JSONField(default=list)
    reason = models.TextField()
    ticket = models.CharField(max_length=64)
    # Notify each person and their manager, as single actions do.
    notify = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=Source.choices)
    # The group's name, "12 pasted", "file.csv".
    source_label = models.CharField(max_length=256, blank=True)
    source_group_id = models.CharField(max_length=64, blank=True)
    # The stored dry run: {"counts": {outcome: n}, "included": n, "refused": n, "privileged": n,
    # "methods_known": bool, "methods_note": str, "methods_as_of": iso | None, "calls":
    # {class: n}, "estimate_seconds": float, "estimate_text": str, "planned_at": iso,
    # "approval_reasons": [str], "dry_run_calls": {class: n}}.
    dry_run = models.JSONField(default=dict, blank=True)
    needs_approval = models.BooleanField(default=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="decided_bulk_operations",
    )
    # "bulk:<public_id>" while the operation is open, NULL once it is final.
    open_slot = models.CharField(max_length=128, null=True, blank=True, unique=True)
    # Paused (NULL: not paused): the runner stops between two people and the operation waits,
    # ``pending``, until someone resumes it.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by_name = models.CharField(max_length=256, blank=True)
    # Asked to cancel while running: the runner stops between two people, cancels the rest.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by_name = models.CharField(max_length=256, blank=True)
    # Progress, kept by the runner: people done (succeeded), failed and left (queued/running).
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    left = models.PositiveIntegerField(default=0)
    # When the finish notice went out (a re-run never mails twice).
    notified_at = models.DateTimeField(null=True, blank=True)

    objects = BulkOperationQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=("requester", "created_at")),)

    def __str__(self) -> str:
        return f"Bulk operation #{self.pk} ({self.source_label}, {self.status})"

    @property
    def is_draft(self) -> bool:
        return self.status == DRAFT

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    @property
    def included_count(self) -> int:
        return int(self.dry_run.get("included", 0))

    def approval_expires_at(self) -> datetime:
        """An operation waits PORTAL_APPROVAL_TTL_MINUTES for its approval from when it was
        confirmed (its dry run may have been stored earlier)."""
        start = self.confirmed_at or self.created_at
        return start + timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)

    def action_labels(self) -> list[str]:
        return [BulkAction(a).label for a in self.actions if a in BulkAction.values]


class BulkItem(models.Model):
    """One person of an operation: included (and then worked through, in ``position`` order) or
    refused by the dry run with why."""

    operation = models.ForeignKey(BulkOperation, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    # What was asked for (the pasted line, the CSV cell, the member's id).
    asked = models.CharField(max_length=320, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    upn = models.CharField(max_length=320, blank=True)
    display_name = models.CharField(max_length=256, blank=True)
    tier = models.CharField(max_length=16, blank=True)
    # Why the person is privileged (one phrase each), when they are.
    tier_reasons = models.JSONField(default=list, blank=True)
    included = models.BooleanField(default=False)
    refusal = models.CharField(max_length=32, choices=Refusal.choices, blank=True)
    refusal_text = models.TextField(blank=True)
    # Registered methods per graph.reports (None: unknown, e.g. a tenant without P1/P2).
    methods_count = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.QUEUED)
    error_code = models.CharField(max_length=128, blank=True)
    error_message = models.TextField(blank=True)
    graph_request_id = models.CharField(max_length=64, blank=True)
    # A staff or break-glass person is included only by an Admin's explicit confirmation.
    admin_confirmed_by_name = models.CharField(max_length=256, blank=True)
    admin_confirmed_at = models.DateTimeField(null=True, blank=True)
    # Each "retry the failed ones" starts a new round of parts for the item.
    round = models.PositiveIntegerField(default=1)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("operation", "position")
        constraints = (
            models.UniqueConstraint(fields=("operation", "position"), name="bulk_item_position"),
        )
        indexes = (models.Index(fields=("operation", "included", "state")),)

    def __str__(self) -> str:
        return f"{self.display_name or self.asked} ({self.state})"

    @property
    def label(self) -> str:
        return self.display_name or self.upn or self.asked


class BulkPart(models.Model):
    """One action on one person of an operation: a normal action request (History, the person's
    timeline and the exports show it), requester the starter, reason and ticket the
    operation's."""

    item = models.ForeignKey(BulkItem, on_delete=models.CASCADE, related_name="parts")
    kind = models.CharField(max_length=32, choices=BulkAction.choices)
    round = models.PositiveIntegerField(default=1)
    action_request = models.OneToOneField(
        "mfa.ActionRequest", on_delete=models.PROTECT, related_name="bulk_part"
    )

    class Meta:
        ordering = ("item", "round", "id")
        constraints = (
            models.UniqueConstraint(fields=("item", "kind", "round"), name="bulk_part_once"),
        )

    def __str__(self) -> str:
        return f"{self.kind} for item {self.item_id} (round {self.round})"


def counters(operation: BulkOperation) -> dict[str, Any]:
    """done / failed / left of ``operation``'s included people, read from the items."""
    rows = (
        BulkItem.objects.filter(operation=operation, included=True)
        .values("state")
        .annotate(n=models.Count("id"))
    )
    by_state = {r["state"]: int(r["n"]) for r in rows}
    return {
        "done": by_state.get(ItemState.SUCCEEDED, 0),
        "failed": by_state.get(ItemState.FAILED, 0),
        "left": by_state.get(ItemState.QUEUED, 0) + by_state.get(ItemState.RUNNING, 0),
    }
