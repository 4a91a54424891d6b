"""The portal's own event log (append-only, hash-chained) and the cache of Entra's audit events.

``PortalEvent``: a row is written once and never changed or removed through the ORM: ``save()``
refuses an existing row, ``delete()`` refuses, and the QuerySet's ``update()`` and ``delete()``
refuse. On PostgreSQL a trigger (migration 0006) rejects UPDATE and DELETE in the database as
well, and the web and worker processes connect as a role that holds no UPDATE, DELETE, TRUNCATE
or TRIGGER right on the table (migration 0012, README "Production"); on SQLite the model guard
is the only protection, so a person with write access to the SQLite file can change rows, and
only ``manage.py audit_verify`` (the keyed hash chain and its anchors) will tell.
Each event carries ``seq`` (1, 2, 3, ... without gaps), the previous event's hash and its own
keyed hash (``audit.chain``). Write events only with ``audit.services.portal_event_record``.

``DirectoryAuditRecord``: one Entra ``directoryAudit`` event, kept long after Entra drops it
(``audit.sync``), linked to the portal request it belongs to (``audit.correlation``) and pruned
after ``AUDIT_RETENTION_DAYS`` (``audit.retention``). ``AuditSyncState`` is the sync's one row.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone


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
        ACTION_RETURNED_TO_APPROVAL = (
            "action_returned_to_approval",
            "Action returned to approval (policy changed before it ran)",
        )
        ACTION_NOTIFIED = "action_notified", "Target notified of an action"
        # mfa.notifications.notify_waiting: the people a request waits for (approvers, takers
        # of an escalation, the second Admin of a role grant) were told by email / webhook;
        # detail names who was mailed, what failed (mail, webhook) and why.
        WAITING_NOTIFIED = "waiting_notified", "Approvers told it waits"
        TAP_REVEALED = "tap_revealed", "Temporary Access Pass revealed"
        TAP_REVEAL_REFUSED = "tap_reveal_refused", "Temporary Access Pass reveal refused"
        RATE_OVERRIDE = "rate_override", "Rate limit overridden"
        ACTION_REPEAT_CONFIRMED = (
            "action_repeat_confirmed",
            "Repeat of a recent action confirmed by the agent",
        )
        # Escalations (mfa.escalations, outbox.decisions.take): an agent without PAA raised a
        # request on a privileged person; a PAA holder took it on or refused it.
        ACTION_ESCALATED = "action_escalated", "Action escalated to a PAA holder"
        ACTION_ESCALATION_TAKEN = "action_escalation_taken", "Escalation taken"
        ACTION_ESCALATION_REFUSED = "action_escalation_refused", "Escalation refused"
        # The Entra audit cache (audit.retention, audit_backfill).
        ENTRA_AUDIT_PRUNED = "entra_audit_pruned", "Cached Entra audit events pruned"
        ENTRA_AUDIT_BACKFILLED = "entra_audit_backfilled", "Entra audit events loaded (backfill)"
        # History exports (audit.exports): who exported what, with the filters.
        AUDIT_EXPORT = "audit_export", "Audit history exported"
        # Directory role administration (roles.services).
        ROLE_CHANGE_REQUESTED = "role_change_requested", "Role change requested"
        ROLE_CHANGE_APPROVED = "role_change_approved", "Role change approved"
        ROLE_CHANGE_REJECTED = "role_change_rejected", "Role change rejected"
        ROLE_CHANGE_CANCELLED = "role_change_cancelled", "Role change cancelled"
        ROLE_CHANGE_EXPIRED = "role_change_expired", "Role change expired"
        ROLE_CHANGE_STARTED = "role_change_started", "Role change started"
        ROLE_CHANGE_RETRY_SCHEDULED = "role_change_retry_scheduled", "Role change waiting to retry"
        ROLE_CHANGE_REDISPATCHED = "role_change_redispatched", "Role change dispatched again"
        ROLE_CHANGE_RETURNED_TO_APPROVAL = (
            "role_change_returned_to_approval",
            "Role change returned to approval (policy changed before it ran)",
        )
        ROLE_CHANGE_SUCCEEDED = "role_change_succeeded", "Role change succeeded"
        ROLE_CHANGE_FAILED = "role_change_failed", "Role change failed"
        ROLE_CHANGE_LINKED = "role_change_linked", "Role change linked to Entra's audit event"
        ROLE_HOLDERS_REFRESHED = "role_holders_refreshed", "Role holders read from Entra"
        # Incident response: bulk operations (bulk.flow, bulk.services).
        BULK_OPERATION_PLANNED = "bulk_operation_planned", "Bulk operation dry run"
        BULK_OPERATION_PERSON_CONFIRMED = (
            "bulk_operation_person_confirmed",
            "Bulk operation: staff or break-glass person confirmed by an Admin",
        )
        BULK_OPERATION_REQUESTED = "bulk_operation_requested", "Bulk operation confirmed"
        BULK_OPERATION_APPROVED = "bulk_operation_approved", "Bulk operation approved"
        BULK_OPERATION_REJECTED = "bulk_operation_rejected", "Bulk operation rejected"
        BULK_OPERATION_CANCELLED = "bulk_operation_cancelled", "Bulk operation cancelled"
        BULK_OPERATION_EXPIRED = "bulk_operation_expired", "Bulk operation expired"
        BULK_OPERATION_STARTED = "bulk_operation_started", "Bulk operation started"
        BULK_OPERATION_RETRY_SCHEDULED = (
            "bulk_operation_retry_scheduled",
            "Bulk operation waiting to retry",
        )
        BULK_OPERATION_REDISPATCHED = (
            "bulk_operation_redispatched",
            "Bulk operation dispatched again",
        )
        BULK_OPERATION_RETURNED_TO_APPROVAL = (
            "bulk_operation_returned_to_approval",
            "Bulk operation returned to approval",
        )
        BULK_OPERATION_SUCCEEDED = "bulk_operation_succeeded", "Bulk operation succeeded"
        BULK_OPERATION_PARTIALLY_SUCCEEDED = (
            "bulk_operation_partially_succeeded",
            "Bulk operation partially succeeded",
        )
        BULK_OPERATION_FAILED = "bulk_operation_failed", "Bulk operation failed"
        BULK_OPERATION_PAUSED = "bulk_operation_paused", "Bulk operation paused"
        BULK_OPERATION_RESUMED = "bulk_operation_resumed", "Bulk operation resumed"
        BULK_OPERATION_RETRIED = "bulk_operation_retried", "Bulk operation: failed people retried"
        BULK_OPERATION_NOTIFIED = "bulk_operation_notified", "Bulk operation notice sent"

    # Set by audit.services before hashing (auto_now_add would overwrite the hashed value).
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Position in the hash chain: 1, 2, 3, ... with no gaps (audit.chain).
    seq = models.PositiveBigIntegerField(unique=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # How ``hash`` was made (audit.chain): 2, HMAC-SHA256 with AUDIT_CHAIN_KEY, for every new
    # event; 1, plain SHA-256, for the events written before the chain was keyed (migration
    # 0011). The database default is 2 as well, so a loader that writes rows directly (COPY in
    # bench/audit_bench_db.py) and hashes with audit.chain.event_hash stays valid.
    chain_version = models.PositiveSmallIntegerField(default=2, db_default=2)
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
    # Ties together the events of one HTTP request or one Celery task run (X-Request-ID when the
    # client or proxy sent a well-formed one, else an id the portal made; the task id in tasks).
    http_request_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = PortalEventQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (
            models.Index(fields=("kind", "created_at")),
            # History filters (audit.selectors) page by (created_at, id) within one condition.
            models.Index(fields=("created_at", "id"), name="audit_pe_time_id_idx"),
            models.Index(fields=("target_id", "created_at"), name="audit_pe_target_time_idx"),
            models.Index(fields=("actor_oid", "created_at"), name="audit_pe_actor_time_idx"),
            models.Index(fields=("request", "created_at"), name="audit_pe_request_time_idx"),
        )

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


class DirectoryAuditRecord(models.Model):
    """One Entra ``directoryAudit`` event, kept long after Entra drops it (7 to 30 days).

    Written only by ``audit.sync`` (insert, deduplicated by ``entra_id``); ``action_request`` and
    ``outside_portal`` are set by ``audit.correlation``; rows are removed only by
    ``audit.retention``. ``target_*`` describe the first target of type User (the person acted
    on); ``target_ids`` lists every target id (users, roles, groups).
    """

    class InitiatorKind(models.TextChoices):
        USER = "user", "User"
        APP = "app", "Application"

    entra_id = models.CharField(max_length=128, unique=True)
    activity_at = models.DateTimeField(db_index=True)
    category = models.CharField(max_length=64)
    activity = models.CharField(max_length=256)
    result = models.CharField(max_length=32, blank=True)
    result_reason = models.CharField(max_length=1024, blank=True)
    logged_by_service = models.CharField(max_length=128, blank=True)
    operation_type = models.CharField(max_length=64, blank=True)
    initiated_by_kind = models.CharField(max_length=8, choices=InitiatorKind.choices)
    # The user's object id, or the app's service principal id; the app's client id is apart.
    initiated_by_id = models.CharField(max_length=64, blank=True)
    initiated_by_name = models.CharField(max_length=256, blank=True)
    initiated_by_app_id = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=256, blank=True)
    target_upn = models.CharField(max_length=320, blank=True)
    target_ids = models.JSONField(default=list, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    # The whole event as Graph returned it (modified properties, additional details).
    raw = models.JSONField(default=dict)
    synced_at = models.DateTimeField(default=timezone.now)
    action_request = models.ForeignKey(
        "mfa.ActionRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="entra_events",
    )
    # An MFA, session or role change by someone other than the person themselves that no portal
    # request explains: someone acted directly in Entra (or with the portal's credentials).
    outside_portal = models.BooleanField(default=False, db_index=True)
    # The person behind the change, denormalised for the history's agent filter (one index range
    # scan instead of a lookup through the requests): the requester's object id when the record
    # is linked to a portal request, else the user Entra names as initiator, else "". Kept by
    # ``audit.correlation`` (and by ``save()`` below for rows written one at a time).
    agent_oid = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ("-activity_at", "-id")
        # Every history filter pages newest first by (activity_at, id) within one condition,
        # so each filterable column leads a composite index ending in the sort key.
        indexes = (
            models.Index(fields=("activity_at", "id"), name="audit_dar_time_id_idx"),
            models.Index(fields=("target_id", "activity_at"), name="audit_dar_target_time_idx"),
            models.Index(fields=("activity", "activity_at"), name="audit_dar_activity_time_idx"),
            models.Index(fields=("result", "activity_at"), name="audit_dar_result_time_idx"),
            models.Index(
                fields=("initiated_by_id", "activity_at"), name="audit_dar_initiator_time_idx"
            ),
            models.Index(
                fields=("action_request", "activity_at"), name="audit_dar_request_time_idx"
            ),
            models.Index(fields=("agent_oid", "activity_at"), name="audit_dar_agent_time_idx"),
            # Few rows are outside the portal: a partial index keeps the dashboard's flag cheap.
            models.Index(
                fields=("activity_at",),
                name="audit_dar_outside_time_idx",
                condition=models.Q(outside_portal=True),
            ),
        )

    def __str__(self) -> str:
        return f"{self.activity_at:%Y-%m-%d %H:%M:%S} {self.activity} on {self.target_name or '-'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, keeping ``agent_oid`` in step with the link (bulk writes bypass this: the sync's
        ``audit.correlation`` sets it itself)."""
        self.agent_oid = self.derived_agent_oid()
        super().save(*args, **kwargs)

    def derived_agent_oid(self, requester_oid: str | None = None) -> str:
        """What ``agent_oid`` must hold: ``requester_oid`` (the linked request's requester; looked
        up when not given) when linked, else the initiating user's object id, else ""."""
        if self.action_request_id is not None:
            if requester_oid is None:
                from django.contrib.auth import get_user_model

                # The Django user's username is the person's Entra object id (accounts.models).
                requester_oid = (
                    get_user_model()
                    .objects.filter(action_requests__pk=self.action_request_id)
                    .values_list("username", flat=True)
                    .first()
                )
            return requester_oid or ""
        if self.initiated_by_kind == self.InitiatorKind.USER:
            return self.initiated_by_id
        return ""


class AuditSyncState(models.Model):
    """The Entra audit sync's progress: one row (``AuditSyncState.load()``).

    ``watermark``: every event with ``activityDateTime`` up to it has been stored (a run starts
    at ``watermark - AUDIT_SYNC_OVERLAP_MINUTES``). It moves only when a run has read its last
    page. ``resume_link``: the ``@odata.nextLink`` of the next page of an unfinished run, saved in
    the same transaction as the page before it; ``run_high_water`` is the time that
    unfinished run started reading, which becomes the watermark when it ends. ``lease_owner`` /
    ``lease_expires_at``: the run holding the sync (audit.sync takes it with a conditional update).
    """

    SINGLETON_ID = 1

    watermark = models.DateTimeField(null=True, blank=True)
    resume_link = models.TextField(blank=True)
    run_high_water = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    events_ingested = models.PositiveBigIntegerField(default=0)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"audit sync state (watermark {self.watermark})"

    @classmethod
    def load(cls) -> AuditSyncState:
        """The one row, created on first use."""
        state, _ = cls.objects.get_or_create(pk=cls.SINGLETON_ID)
        return state
