"""Notices of bulk operations: to the approvers when one waits for them, and to the starter and
the approver when one ends (an email each, through the portal's mail path as
``mfa.notifications``; and, with PORTAL_NOTIFY_WEBHOOK_URL, one post to the team's channel).
Never raises: a failure is logged and recorded with the ``bulk_operation_notified`` event.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.roles import BULK_APPROVER_ROLES, display_name_of, has_role
from audit.models import PortalEvent
from audit.services import portal_event_record
from bulk.flow import BULK_OPERATIONS, operation_detail
from bulk.models import BulkOperation
from mfa import webhook
from mfa.notifications import when_text
from mfa.waiting import address_of
from outbox.states import STATUS_PHRASES

logger = logging.getLogger(__name__)


def _url(op: BulkOperation) -> str:
    try:
        path = reverse("bulk:operation_detail", kwargs={"public_id": op.public_id})
    except NoReverseMatch:
        path = f"/bulk/{op.public_id}/"
    base = str(settings.PORTAL_BASE_URL or "")
    return f"{base}{path}" if base else path


def _what(op: BulkOperation) -> str:
    return " and ".join(op.action_labels()) or "Bulk operation"


def _send(
    op: BulkOperation, people: list[Any], *, subject: str, lines: list[str], notice: Any
) -> tuple[list[str], list[str], str]:
    mailed: list[str] = []
    failed: list[str] = []
    body = "\n".join([*lines, "", f"Open it: {_url(op)}", "", settings.PORTAL_HELPDESK_CONTACT])
    for person in people:
        address = address_of(person)
        if not address:
            continue
        try:
            EmailMessage(
                subject=subject,
                body=f"Hello {display_name_of(person)},\n\n{body}\n",
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[address],
            ).send(fail_silently=False)
        except Exception as exc:  # SMTP, backend: record it, go on with the others
            logger.warning("bulk notice of %s failed: %s", op.pk, type(exc).__name__)
            failed.append(f"mail to {display_name_of(person)} ({type(exc).__name__})")
        else:
            mailed.append(display_name_of(person))
    hook = "off"
    if settings.PORTAL_NOTIFY_WEBHOOK_URL:
        try:
            webhook.post(notice)
        except Exception as exc:  # network, refused: say so (the notice is not essential)
            logger.warning("bulk webhook of %s failed: %s", op.pk, type(exc).__name__)
            failed.append(f"webhook ({type(exc).__name__})")
            hook = "failed"
        else:
            hook = "sent"
    return mailed, failed, hook


def _record(op: BulkOperation, **detail: Any) -> None:
    with transaction.atomic():
        portal_event_record(
            kind=PortalEvent.Kind.BULK_OPERATION_NOTIFIED,
            detail=operation_detail(op, **detail),
            **BULK_OPERATIONS.event_fields(op),
        )


def notify_finished(*, operation_id: int) -> list[str]:
    """Tell the starter and the approver that operation ``operation_id`` has ended, once (a
    re-run never mails twice). Returns the names mailed."""
    claimed = BulkOperation.objects.filter(
        pk=operation_id, finished_at__isnull=False, notified_at__isnull=True
    ).update(notified_at=timezone.now())
    if not claimed:
        return []
    op = BulkOperation.objects.select_related("requester", "decided_by").get(pk=operation_id)
    people = [op.requester] + ([op.decided_by] if op.decided_by is not None else [])
    phrase = STATUS_PHRASES.get(op.status, op.status)
    subject = f"Bulk operation {phrase}: {op.source_label} ({op.ticket})"
    lines = [
        f"The bulk operation {_what(op)} on {op.source_label} {phrase}.",
        f"Done: {op.done}. Failed: {op.failed}. Not done: {op.left}.",
        f"Ticket: {op.ticket}. Started by {op.requester_name}"
        + (f", approved by {op.decided_by_name}." if op.decided_by_name else "."),
        f"Ended: {when_text(op.finished_at)}.",
    ]
    notice = webhook.Notice(
        heading=f"Bulk operation {phrase}: {_what(op)}",
        what=_what(op),
        person=f"{op.source_label}: {op.done} done, {op.failed} failed, {op.left} not done",
        asked_by=op.requester_name,
        ticket=op.ticket,
        expires="",
        who_acts="",
        url=_url(op),
    )
    try:
        mailed, failed, hook = _send(op, people, subject=subject, lines=lines, notice=notice)
        _record(op, notice="finished", mailed=mailed, failed=failed, webhook=hook)
    except Exception as exc:  # never let a notice break the operation
        logger.warning("bulk notice of %s failed: %s", op.pk, type(exc).__name__)
        return []
    return mailed


def notify_approvers(*, operation_id: int) -> list[str]:
    """Tell the people who may approve operation ``operation_id`` (Leads, Responders, Admins;
    not the starter) that it waits for them. Returns the names mailed."""
    op = BulkOperation.objects.get(pk=operation_id)
    if not settings.PORTAL_NOTIFY_APPROVERS:
        return []
    users = (
        get_user_model()
        .objects.filter(is_active=True, portal_profile__isnull=False)
        .exclude(pk=op.requester_id)
        .select_related("portal_profile")
        .order_by("pk")
    )
    people = [u for u in users if has_role(u, *BULK_APPROVER_ROLES)]
    expires = op.approval_expires_at()
    lines = [
        f"{op.requester_name} asks to run {_what(op)} on {op.included_count} people "
        f"({op.source_label}).",
        *op.dry_run.get("approval_reasons", []),
        f"Reason: {op.reason}",
        f"Ticket: {op.ticket}. It waits until {when_text(expires)}.",
    ]
    notice = webhook.Notice(
        heading=f"Approval waiting: bulk {_what(op)} on {op.included_count} people",
        what=_what(op),
        person=op.source_label,
        asked_by=op.requester_name,
        ticket=op.ticket,
        expires=when_text(expires),
        who_acts="a Lead, a Responder or an Admin (not the starter)",
        url=_url(op),
    )
    try:
        mailed, failed, hook = _send(op, people, subject=notice.heading, lines=lines, notice=notice)
        _record(op, notice="waiting", mailed=mailed, failed=failed, webhook=hook)
    except Exception as exc:  # never let a notice break the operation
        logger.warning("bulk approval notice of %s failed: %s", op.pk, type(exc).__name__)
        return []
    return mailed
