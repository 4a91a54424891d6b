"""The rows of directory role administration: requested changes of who holds a directory role,
and the reads of every holder that /roles/ shows.

Change these rows only through ``roles.services`` (each change writes its PortalEvent). Both
tables keep the names they had when the models lived in ``accounts`` (``db_table``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from outbox.models import DurableRequest, DurableRequestQuerySet


class RoleChange(models.TextChoices):
    ADD = "add", "Add a holder"
    REMOVE = "remove", "Remove a holder"


class HoldKind(models.TextChoices):
    """How a holder holds (or is to hold) a role."""

    ACTIVE_PERMANENT = "active_permanent", "Active, permanent"
    ACTIVE_UNTIL = "active_until", "Active until a date"
    ELIGIBLE_UNTIL = "eligible_until", "Eligible (PIM) until a date"
    # Removals name what is removed: an active assignment or a PIM eligibility.
    ACTIVE = "active", "Active assignment"
    ELIGIBLE = "eligible", "PIM eligibility"


class PrincipalType(models.TextChoices):
    USER = "user", "Person"
    GROUP = "group", "Role-assignable group"


class RoleChangeRequestQuerySet(DurableRequestQuerySet["RoleChangeRequest"]):
    pass


class RoleChangeRequest(DurableRequest):
    """One requested change of who holds a directory role: the durable outbox row (the life, the
    journal and the lease are the engine's columns, ``outbox.models.DurableRequest``).

    ``open_slot`` is ``"<role template>:<principal id>"`` while the request is open and NULL once
    it is final, so the unique index allows one open change per role and principal.
    ``graph_object_id`` is the assignment id or PIM request id Graph gave (or removed);
    ``entra_event_ids`` are the Entra audit events (``DirectoryAuditRecord.entra_id``) linked to it
    by ``roles.linking.role_changes_correlate``.
    """

    change = models.CharField(max_length=8, choices=RoleChange.choices)
    role_template_id = models.CharField(max_length=64)
    role_name = models.CharField(max_length=128)
    principal_id = models.CharField(max_length=64, db_index=True)
    principal_type = models.CharField(max_length=8, choices=PrincipalType.choices)
    principal_name = models.CharField(max_length=256)
    principal_upn = models.CharField(max_length=320, blank=True)
    hold_kind = models.CharField(max_length=24, choices=HoldKind.choices)
    ends_at = models.DateTimeField(null=True, blank=True)
    # For a removal: the active assignment's id (eligibilities are removed by role + principal).
    assignment_id = models.CharField(max_length=256, blank=True)
    justification = models.TextField()
    ticket = models.CharField(max_length=64, blank=True)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="role_change_requests"
    )
    needs_approval = models.BooleanField(default=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="decided_role_change_requests",
    )
    open_slot = models.CharField(max_length=160, null=True, blank=True, unique=True)
    graph_object_id = models.CharField(max_length=256, blank=True)
    entra_event_ids = models.JSONField(default=list, blank=True)

    objects = RoleChangeRequestQuerySet.as_manager()

    class Meta:
        # The table (and its index) of the days these rows lived in accounts: kept, so an
        # upgrade moves no data (the migrations only move the model's state).
        db_table = "accounts_rolechangerequest"
        ordering = ("-created_at", "-id")
        indexes = (
            models.Index(fields=("status", "created_at"), name="accounts_ro_status_9a8a06_idx"),
        )

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_change_display()} {self.role_name}: {self.principal_name}"


class RoleHolderSnapshot(models.Model):
    """One read of every holder of the roles /roles/ shows: the page's cache.

    Written by ``roles.refresh.role_holders_refresh`` (beat, or an Admin's button);
    ``holders`` is the JSON form of ``roles.holders.RoleHolders`` (see ``as_json``). The page
    shows the newest ``done`` row; a ``pending``/``running`` row is a refresh under way.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Reading Graph"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    trigger = models.CharField(max_length=16)  # "schedule", "button", "change"
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    holders = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=128, blank=True)
    error_message = models.TextField(blank=True)
    error_request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "accounts_roleholdersnapshot"
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"role holders read {self.created_at:%Y-%m-%d %H:%M} ({self.state})"
