"""Action requests, caller verifications and the demo mailbox.

An ``ActionRequest`` is the durable record of one thing an agent asked the portal to do to one
person through Microsoft Graph. The row is the outbox: it is written (with its audit event) in one
transaction, a Celery task is enqueued on commit, and beat re-dispatches rows that no worker
picked up. Change a request only through the functions in ``mfa.services``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from outbox.models import DurableRequest, DurableRequestQuerySet
from outbox.states import FINAL_STATUSES, Status

__all__ = [
    "FINAL_STATUSES",
    "ActionKind",
    "ActionRequest",
    "CallerVerification",
    "RateOverride",
    "Status",
    "Tier",
]


class ActionKind(models.TextChoices):
    REREGISTER = "reregister", "Require MFA re-registration"
    REVOKE_SESSIONS = "revoke_sessions", "Revoke sign-in sessions"
    ISSUE_TAP = "issue_tap", "Issue a Temporary Access Pass"
    SET_MFA_STATE = "set_mfa_state", "Change per-user MFA state"
    DELETE_METHOD = "delete_method", "Delete one method"

    @classmethod
    def needs_verification(cls, kind: str) -> bool:
        """Whether the caller must have been verified first (all but revoking sessions)."""
        return kind != cls.REVOKE_SESSIONS


class Tier(models.TextChoices):
    STANDARD = "standard", "Standard"
    PRIVILEGED = "privileged", "Privileged"


class ActionRequestQuerySet(DurableRequestQuerySet["ActionRequest"]):
    def for_target(self, target_id: str) -> ActionRequestQuerySet:
        return self.filter(target_id=target_id)


class ActionRequest(DurableRequest):
    """One requested action on one person, from request to outcome. The life, the journal and
    the lease are the engine's columns (``outbox.models.DurableRequest``)."""

    kind = models.CharField(max_length=32, choices=ActionKind.choices)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="action_requests"
    )
    # The person acted on, as Graph named them when the request was made.
    target_id = models.CharField(max_length=64, db_index=True)
    target_upn = models.CharField(max_length=320)
    target_name = models.CharField(max_length=256)
    target_tier = models.CharField(max_length=16, choices=Tier.choices)
    target_roles = models.JSONField(default=list, blank=True)
    reason = models.TextField()
    ticket = models.CharField(max_length=64)
    # Kind-specific input: {"revoke_sessions": bool}, {"lifetime_minutes", "usable_once"},
    # {"state"}, {"method_id", "method_type", "method_label"}. Never a secret.
    params = models.JSONField(default=dict, blank=True)
    verification = models.ForeignKey(
        "CallerVerification",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="action_requests",
    )
    rate_override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="decided_action_requests",
    )
    # An escalation (status ``escalated``, mfa.escalations): the requester may not act on this
    # privileged person (no PAA, tiering mirrored); ``escalated_to`` names who could take it when
    # it was raised. ``taken_by`` is the PAA holder who took it on (or refused it): from then on
    # the tiering checks read their PAA, not the requester's, and they never approve it.
    escalated_to = models.JSONField(default=list, blank=True)
    taken_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="taken_action_requests",
    )
    taken_by_name = models.CharField(max_length=256, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    take_comment = models.TextField(blank=True)
    # The outcome: {"removed": [...], "failed": [...], "remaining": [...], ...}.
    result = models.JSONField(default=dict, blank=True)
    # "<target_id>:<family>" while the request is open, NULL once it is final: the database's
    # unique index makes "one open request per target and kind family" hold even if the Redis
    # lock around the check is lost (several NULLs are allowed by PostgreSQL and SQLite alike).
    open_slot = models.CharField(max_length=128, null=True, blank=True, unique=True)
    # Where the completion notice goes (target, and the manager when configured), taken from
    # Graph when the request was made; and when it was sent, so a re-run never mails twice.
    notify_to = models.JSONField(default=list, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    # The bulk operation (bulk.BulkOperation's pk) this request is one person's part of; NULL
    # for a single action. Set by bulk, read here (mfa never imports bulk): a part runs at the
    # budget's bulk priority and has no caller to verify (mfa.flow).
    bulk_operation_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    objects = ActionRequestQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (
            models.Index(fields=("target_id", "created_at")),
            models.Index(fields=("requester", "created_at")),
            models.Index(fields=("status", "created_at")),
        )

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()} for {self.target_name} ({self.status})"

    @property
    def is_privileged(self) -> bool:
        return self.target_tier == Tier.PRIVILEGED

    @property
    def is_bulk_part(self) -> bool:
        return self.bulk_operation_id is not None

    @property
    def was_escalated(self) -> bool:
        """Raised as an escalation (whether taken, refused or still waiting)."""
        return bool(self.escalated_to) or self.taken_by_id is not None

    @property
    def acting_agent(self) -> Any:
        """Who carries the request under the tiering rules: the PAA holder who took an
        escalation, else the requester."""
        return self.taken_by if self.taken_by_id is not None else self.requester

    def approval_expires_at(self) -> datetime:
        """An approval waits PORTAL_APPROVAL_TTL_MINUTES from when it started waiting: from the
        request, or from when a PAA holder took the escalation on."""
        start = self.taken_at or self.created_at
        return start + timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)


class VerificationMethod(models.TextChoices):
    EMAIL_CODE = "email_code", "One-time code emailed to the manager or alternate address"
    MANUAL = "manual", "Manual check"


class CallerVerification(models.Model):
    """Proof that the agent checked the caller is the person they claim to be.

    A verification counts for an action only when it is ``verified``, by the same agent, for the
    same target, and verified no more than ``PORTAL_VERIFICATION_MAX_AGE_MINUTES`` ago.
    The emailed code is stored only as a salted hash.
    """

    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="caller_verifications"
    )
    target_id = models.CharField(max_length=64, db_index=True)
    target_name = models.CharField(max_length=256)
    method = models.CharField(max_length=16, choices=VerificationMethod.choices)
    # Manual: the check chosen from settings.PORTAL_MANUAL_CHECKS, with the agent's evidence.
    manual_check = models.CharField(max_length=64, blank=True)
    evidence = models.TextField(blank=True)
    # Email code: where it went (masked for display) and its hash.
    sent_to_masked = models.CharField(max_length=320, blank=True)
    sent_to_kind = models.CharField(max_length=32, blank=True)
    code_hash = models.CharField(max_length=128, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.get_method_display()} for {self.target_name}"

    def is_valid_for(self, *, agent_id: int, target_id: str, now: Any = None) -> bool:
        """Whether this verification may back an action by ``agent_id`` on ``target_id`` now."""
        now = now or timezone.now()
        max_age = timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES)
        return (
            self.verified_at is not None
            and self.agent_id == agent_id
            and self.target_id == target_id
            and now - self.verified_at <= max_age
        )


class MailboxMessage(models.Model):
    """An email kept by the demo's mailbox backend (PORTAL_DEMO without EMAIL_URL)."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    from_email = models.CharField(max_length=320)
    to = models.JSONField(default=list)
    subject = models.CharField(max_length=998)
    body = models.TextField()

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return self.subject


class RateOverride(models.Model):
    """A Lead's or Admin's grant of ``granted`` extra requests past the rate limit to ``agent``.

    Each request the agent makes while at the limit takes one (``used`` counts up, under the
    agent's lock in ``mfa.services.action_request_create``); a grant is spent when ``used``
    reaches ``granted`` and lapses at ``expires_at`` (the end of the rate window it was given
    in). Recorded with a ``rate_override`` event at the grant and at each use.
    """

    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rate_overrides"
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    granted = models.PositiveSmallIntegerField()
    used = models.PositiveSmallIntegerField(default=0)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ("created_at", "id")
        indexes = (models.Index(fields=("agent", "expires_at")),)

    def __str__(self) -> str:
        return f"{self.used} of {self.granted} extra requests for user {self.agent_id}"

    @property
    def remaining(self) -> int:
        return max(0, self.granted - self.used)
