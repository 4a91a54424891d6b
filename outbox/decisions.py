"""Deciding a durable request: take an escalation (or refuse it), approve, reject, cancel, and
expiry of escalations and approvals that waited too long. Each writes the flow's PortalEvent in
the same transaction as the change."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import display_name_of
from audit.services import portal_event_record
from outbox.errors import InvalidRequest
from outbox.flow import Flow, enqueue_on_commit
from outbox.inputs import DECISION_COMMENT_MAX_LENGTH
from outbox.models import DurableRequest
from outbox.states import CANCELLABLE_STATUSES, DECISION_STATUSES, STATUS_PHRASES, Status

R = TypeVar("R", bound=DurableRequest)


def expire_if_due(flow: Flow[R], row: R, now: datetime) -> bool:
    """Expire an escalated or awaiting request whose window has passed (own transaction)."""
    waiting = row.status
    if waiting not in DECISION_STATUSES or now <= row.approval_expires_at():
        return False
    with transaction.atomic():
        done = flow.model._default_manager.filter(pk=row.pk, status=waiting).update(
            status=Status.EXPIRED, finished_at=now, open_slot=None, updated_at=now
        )
        if done:
            portal_event_record(
                kind=flow.events.expired,
                old_value={"status": waiting},
                new_value={"status": Status.EXPIRED},
                detail=flow.event_detail(
                    row, approval_ttl_minutes=settings.PORTAL_APPROVAL_TTL_MINUTES
                ),
                **flow.event_fields(row),
            )
    row.refresh_from_db()
    return bool(done)


def expire_stale(flow: Flow[Any]) -> int:
    """Expire the requests that waited for approval (or for someone to take their escalation)
    longer than ``PORTAL_APPROVAL_TTL_MINUTES``. Returns how many (each with the flow's
    ``expired`` event)."""
    now = timezone.now()
    cutoff = now - timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)
    awaiting = flow.model._default_manager.filter(
        status__in=DECISION_STATUSES, created_at__lt=cutoff
    )
    return sum(1 for row in awaiting if expire_if_due(flow, row, now))


def decide(
    flow: Flow[R],
    *,
    row: R,
    approver: Any,
    comment: str,
    approve: bool,
    http_request: HttpRequest | None,
) -> R:
    """Approve (``pending``, task enqueued on commit) or reject (final) a request
    ``awaiting_approval``. Raises NotAllowed from the flow's checks; InvalidRequest for a
    comment too long, a rejection without one, a request no longer awaiting approval, or one
    whose approval window has passed (it is then marked ``expired``)."""
    noun = flow.noun
    if row.status == Status.ESCALATED:
        raise InvalidRequest(
            f"This {noun} is escalated: one of the people it was escalated to must take it on "
            "before anyone approves or rejects it."
        )
    flow.check_may_decide(approver, row)
    if approve:
        flow.check_may_approve(approver, row)
    text = (comment or "").strip()
    if len(text) > DECISION_COMMENT_MAX_LENGTH:
        raise InvalidRequest(
            f"The comment is longer than {DECISION_COMMENT_MAX_LENGTH} characters."
        )
    if not approve and not text:
        raise InvalidRequest(f"Say why you reject the {noun}: the {flow.reader} will read it.")
    now = timezone.now()
    row = flow.model._default_manager.get(pk=row.pk)
    if expire_if_due(flow, row, now):
        raise InvalidRequest(
            f"This {noun} waited longer than {settings.PORTAL_APPROVAL_TTL_MINUTES} minutes for "
            "approval and has expired."
        )
    new_status = Status.PENDING if approve else Status.REJECTED
    changes: dict[str, Any] = {
        "status": new_status,
        "decided_by": approver,
        "decided_by_name": display_name_of(approver),
        "decision_comment": text,
        "decided_at": now,
        "updated_at": now,
    }
    if approve:
        changes["enqueued_at"] = now
    else:
        changes.update(finished_at=now, open_slot=None)
    with transaction.atomic():
        done = flow.model._default_manager.filter(
            pk=row.pk, status=Status.AWAITING_APPROVAL
        ).update(**changes)
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(f"This {noun} {STATUS_PHRASES[row.status]}: nothing to decide.")
        portal_event_record(
            kind=flow.events.approved if approve else flow.events.rejected,
            actor=approver,
            request=http_request,
            old_value={"status": Status.AWAITING_APPROVAL},
            new_value={"status": new_status},
            detail=flow.event_detail(row, comment=text, requester=row.requester_name),
            **flow.event_fields(row),
        )
        if approve:
            enqueue_on_commit(flow, row.pk)
    row.refresh_from_db()
    return row


def cancel(flow: Flow[R], *, row: R, by: Any, http_request: HttpRequest | None) -> R:
    """Cancel a request that has not started (``awaiting_approval`` or ``pending``). Raises
    NotAllowed from the flow's check, or InvalidRequest when it is already running or final."""
    flow.check_may_cancel(by, row)
    now = timezone.now()
    with transaction.atomic():
        old = flow.model._default_manager.get(pk=row.pk).status
        done = flow.model._default_manager.filter(
            pk=row.pk, status__in=CANCELLABLE_STATUSES
        ).update(status=Status.CANCELLED, finished_at=now, open_slot=None, updated_at=now)
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(
                f"This {flow.noun} {STATUS_PHRASES[row.status]}: it can no longer be cancelled."
            )
        portal_event_record(
            kind=flow.events.cancelled,
            actor=by,
            request=http_request,
            old_value={"status": old},
            new_value={"status": Status.CANCELLED},
            detail=flow.event_detail(row),
            **flow.event_fields(row),
        )
    row.refresh_from_db()
    return row


def take(
    flow: Flow[R],
    *,
    row: R,
    taker: Any,
    comment: str,
    accept: bool,
    http_request: HttpRequest | None,
) -> R:
    """Take an ``escalated`` request on (it goes to the flow's :meth:`Flow.status_after_take`,
    ``awaiting_approval`` by default, or ``pending`` with its task enqueued on commit) or refuse
    it (``rejected``, final, the taker recorded as the one who decided). Raises NotAllowed from
    the flow's :meth:`Flow.check_may_take`; InvalidRequest for a comment too long, a refusal
    without one, a request no longer escalated, or one that waited too long (it is then marked
    ``expired``)."""
    if not (flow.events.taken and flow.events.refused):
        raise InvalidRequest(f"This kind of {flow.noun} has no escalations.")
    flow.check_may_take(taker, row)
    noun = flow.noun
    text = (comment or "").strip()
    if len(text) > DECISION_COMMENT_MAX_LENGTH:
        raise InvalidRequest(
            f"The comment is longer than {DECISION_COMMENT_MAX_LENGTH} characters."
        )
    if not accept and not text:
        raise InvalidRequest(f"Say why you refuse the {noun}: the {flow.reader} will read it.")
    now = timezone.now()
    row = flow.model._default_manager.get(pk=row.pk)
    if expire_if_due(flow, row, now):
        raise InvalidRequest(
            f"This escalation waited longer than {settings.PORTAL_APPROVAL_TTL_MINUTES} minutes "
            "to be taken and has expired."
        )
    changes: dict[str, Any] = {
        **flow.take_fields(row, taker, text, now),
        "updated_at": now,
    }
    if accept:
        new_status = flow.status_after_take(row)
        changes["status"] = new_status
        if new_status == Status.PENDING:
            changes["enqueued_at"] = now
    else:
        new_status = Status.REJECTED
        changes.update(
            status=new_status,
            decided_by=taker,
            decided_by_name=display_name_of(taker),
            decision_comment=text,
            decided_at=now,
            finished_at=now,
            open_slot=None,
        )
    with transaction.atomic():
        done = flow.model._default_manager.filter(pk=row.pk, status=Status.ESCALATED).update(
            **changes
        )
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(
                f"This {noun} {STATUS_PHRASES[row.status]}: it is no longer waiting for someone "
                "to take it."
            )
        portal_event_record(
            kind=flow.events.taken if accept else flow.events.refused,
            actor=taker,
            request=http_request,
            old_value={"status": Status.ESCALATED},
            new_value={"status": new_status},
            detail=flow.event_detail(row, comment=text, requester=row.requester_name),
            **flow.event_fields(row),
        )
        if new_status == Status.PENDING:
            enqueue_on_commit(flow, row.pk)
        row.refresh_from_db()
        if accept:
            flow.on_taken(row)
    return row
