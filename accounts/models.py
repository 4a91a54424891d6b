"""Who a signed-in person is in Entra, and which portal roles they hold.

The Django user's ``username`` is the person's Entra object id (``oid``, set by django-auth-adfs
through ``USERNAME_CLAIM``). ``PortalProfile`` keeps what the portal shows and decides with: the
display name, the UPN and the portal roles taken from the last sign-in's ``roles`` claim.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class PortalProfile(models.Model):
    """One per person who has signed in; rewritten from the token at every sign-in.

    ``roles`` is a sorted list of ``accounts.roles.Role`` values. It is replaced whole at each
    sign-in, so an app role removed in Entra is gone from the portal at the next sign-in.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_profile"
    )
    oid = models.CharField("Entra object id", max_length=64, unique=True)
    display_name = models.CharField(max_length=256, blank=True)
    upn = models.CharField("user principal name", max_length=256, blank=True)
    roles = models.JSONField(default=list, blank=True)
    roles_updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "portal profile"

    def __str__(self) -> str:
        return self.display_name or self.upn or self.oid

    def role_set(self) -> frozenset[str]:
        """The portal roles as a set (the stored list may come from an older sign-in)."""
        raw: Any = self.roles
        if not isinstance(raw, list):
            return frozenset()
        return frozenset(str(role) for role in raw)


# --- directory role administration ---------------------------------------------------------------
# Change these rows only through accounts.role_services (each change writes its PortalEvent).


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


def _status_choices() -> list[tuple[str, str]]:
    # The same states as helpdesk actions (DESIGN.md, "The life of an action request").
    from mfa.models import Status

    return list(Status.choices)


class RoleChangeRequestQuerySet(models.QuerySet["RoleChangeRequest"]):
    def open(self) -> RoleChangeRequestQuerySet:
        from mfa.models import FINAL_STATUSES

        return self.exclude(status__in=FINAL_STATUSES)


class RoleChangeRequest(models.Model):
    """One requested change of who holds a directory role: the durable outbox row.

    ``open_slot`` is ``"<role template>:<principal id>"`` while the request is open and NULL once
    it is final, so the unique index allows one open change per role and principal.
    ``graph_object_id`` is the assignment id or PIM request id Graph gave (or removed);
    ``entra_event_ids`` are the Entra audit events (``DirectoryAuditRecord.entra_id``) linked to it
    by ``accounts.role_services.role_changes_correlate``.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    change = models.CharField(max_length=8, choices=RoleChange.choices)
    status = models.CharField(max_length=32, choices=_status_choices(), db_index=True)
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
    requester_name = models.CharField(max_length=256)
    needs_approval = models.BooleanField(default=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="decided_role_change_requests",
    )
    decided_by_name = models.CharField(max_length=256, blank=True)
    decision_comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=64, unique=True)
    open_slot = models.CharField(max_length=160, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # [{"at", "text", "state": running|done|failed|waiting, "detail"}], shown live.
    steps = models.JSONField(default=list, blank=True)
    # The write begun and not yet known to be done ({"key": iso time}): a re-run reads Graph
    # to learn the outcome instead of writing again.
    pending_writes = models.JSONField(default=dict, blank=True)
    graph_object_id = models.CharField(max_length=256, blank=True)
    error_code = models.CharField(max_length=128, blank=True)
    error_message = models.TextField(blank=True)
    error_request_id = models.CharField(max_length=64, blank=True)
    entra_event_ids = models.JSONField(default=list, blank=True)

    objects = RoleChangeRequestQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=("status", "created_at")),)

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_change_display()} {self.role_name}: {self.principal_name}"

    @property
    def is_final(self) -> bool:
        from mfa.models import FINAL_STATUSES

        return self.status in FINAL_STATUSES

    def approval_expires_at(self) -> Any:
        return self.created_at + timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)


class RoleHolderSnapshot(models.Model):
    """One read of every holder of the roles /roles/ shows: the page's cache.

    Written by ``accounts.role_services.role_holders_refresh`` (beat, or an Admin's button);
    ``holders`` is the JSON form of ``accounts.role_admin.RoleHolders`` (see ``as_json``). The page
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
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"role holders read {self.created_at:%Y-%m-%d %H:%M} ({self.state})"
