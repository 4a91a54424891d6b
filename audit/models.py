"""The portal's own event log: append-only.

A ``PortalEvent`` row is written once and never changed or removed through the ORM: ``save()``
refuses an existing row, ``delete()`` refuses, and the QuerySet's ``update()`` and ``delete()``
refuse. (A later change adds hash chaining and a PostgreSQL trigger that enforces the same in
the database.) Write events with ``audit.services.portal_event_record``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models


class AppendOnlyError(RuntimeError):
    """An attempt to change or delete an audit event."""


class PortalEventQuerySet(models.QuerySet["PortalEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("portal events are append-only: update() is refused")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("portal events are append-only: delete() is refused")


class PortalEvent(models.Model):
    """One thing that happened in the portal, with who did it, to whom, from where."""

    class Kind(models.TextChoices):
        # Extend by adding members (and a migration); never rename or reuse a value.
        SIGN_IN = "sign_in", "Signed in"
        SIGN_IN_REFUSED = "sign_in_refused", "Sign-in refused"
        SIGN_OUT = "sign_out", "Signed out"
        # Caller verification (mfa.verification).
        VERIFICATION_CODE_SENT = "verification_code_sent", "Verification code sent"
        VERIFICATION_SUCCEEDED = "verification_succeeded", "Caller verified by code"
        VERIFICATION_FAILED = "verification_failed", "Caller verification failed"
        VERIFICATION_MANUAL = "verification_manual", "Caller verified by a manual check"
        # Helpdesk action requests (mfa.services).
        ACTION_REQUESTED = "action_requested", "Action requested"
        ACTION_APPROVED = "action_approved", "Action approved"
        ACTION_REJECTED = "action_rejected", "Action rejected"
        ACTION_CANCELLED = "action_cancelled", "Action cancelled"
        ACTION_EXPIRED = "action_expired", "Action expired"
        ACTION_STARTED = "action_started", "Action started"
        ACTION_STEP = "action_step", "Action step"
        ACTION_RETRY_SCHEDULED = "action_retry_scheduled", "Action waiting to retry"
        ACTION_SUCCEEDED = "action_succeeded", "Action succeeded"
        ACTION_PARTIALLY_SUCCEEDED = "action_partially_succeeded", "Action partially succeeded"
        ACTION_FAILED = "action_failed", "Action failed"
        ACTION_REDISPATCHED = "action_redispatched", "Action dispatched again"
        ACTION_NOTIFIED = "action_notified", "Target notified of an action"
        TAP_REVEALED = "tap_revealed", "Temporary Access Pass revealed"
        TAP_REVEAL_REFUSED = "tap_reveal_refused", "Temporary Access Pass reveal refused"
        RATE_OVERRIDE = "rate_override", "Rate limit overridden"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # An audited person cannot be deleted: the log must keep pointing at them.
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_name = models.CharField(max_length=256, blank=True)
    actor_oid = models.CharField(max_length=64, blank=True, db_index=True)
    kind = models.CharField(max_length=64, choices=Kind.choices, db_index=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    target_name = models.CharField(max_length=256, blank=True)
    # The ActionRequest this event belongs to. A plain integer until that model exists; the
    # column is already named as the later foreign key's will be.
    request = models.PositiveBigIntegerField(null=True, blank=True, db_column="request_id")
    ticket = models.CharField(max_length=128, blank=True)
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = PortalEventQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=("kind", "created_at")),)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind} by {self.actor_name or '-'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only. Raises AppendOnlyError for a row that already exists."""
        if not self._state.adding or self.pk is not None:
            raise AppendOnlyError("portal events are append-only: an existing row cannot change")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("portal events are append-only: delete() is refused")
