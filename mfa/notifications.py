"""The notice a person (and their manager) gets when the helpdesk changed their sign-in.

An account-takeover attempt through the helpdesk is most often noticed by the real person: so
every finished request that changed something mails the target (and, with PORTAL_NOTIFY_MANAGER,
their manager) a plain-text notice of what changed, when, under which ticket, and whom to call if
they did not ask for it. The notice never contains a Temporary Access Pass or any other secret:
the templates receive only the ``changes`` sentences built here from the request's result.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from audit.models import PortalEvent
from audit.services import portal_event_record
from mfa.models import ActionKind, ActionRequest, Status

logger = logging.getLogger(__name__)

_NOTIFY_STATUSES = (Status.SUCCEEDED, Status.PARTIALLY_SUCCEEDED, Status.FAILED)


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%d %b %Y %H:%M %Z")
    return ""


def describe_changes(row: ActionRequest) -> list[str]:
    """Plain sentences, in the second person, of what the request changed on the account."""
    result = row.result or {}
    changes: list[str] = []
    if row.kind in (ActionKind.REREGISTER, ActionKind.DELETE_METHOD):
        for entry in result.get("removed") or []:
            changes.append(f"Removed sign-in method: {entry.get('label', 'a method')}")
        if row.kind == ActionKind.REREGISTER and result.get("removed"):
            changes.append(
                "You will be asked to register your sign-in methods again the next time you "
                "sign in."
            )
    if result.get("sessions_revoked"):
        changes.append(
            "You were signed out of every app and browser: you will have to sign in again."
        )
    if row.kind == ActionKind.ISSUE_TAP:
        if row.status == Status.SUCCEEDED:
            kind = "one-time" if result.get("usable_once") else "multi-use"
            changes.append(
                f"A {kind} Temporary Access Pass was issued for your account, valid from "
                f"{_when(result.get('valid_from'))} for {result.get('lifetime_minutes')} minutes. "
                "The service desk gives it to you by phone only; it is never sent by email."
            )
        else:
            changes.append(
                "A Temporary Access Pass may have been issued for your account (the request did "
                "not complete normally)."
            )
    if row.kind == ActionKind.SET_MFA_STATE and result.get("after"):
        changes.append(
            f"Per-user multi-factor authentication changed from {result.get('before') or 'unknown'}"
            f" to {result.get('after')}."
        )
    return changes


def action_request_notify(*, request_id: int) -> bool:
    """Send the completion notice of request ``request_id`` once (a re-run never mails twice).

    Does nothing (returns False) for a request that is not finished, changed nothing, has no
    recipient, or was notified before. Mail failures are logged and recorded in a PortalEvent;
    they never raise: the action itself is done.
    """
    now = timezone.now()
    claimed = ActionRequest.objects.filter(
        pk=request_id, status__in=_NOTIFY_STATUSES, notified_at__isnull=True
    ).update(notified_at=now)
    if not claimed:
        return False
    row = ActionRequest.objects.get(pk=request_id)
    changes = describe_changes(row)
    recipients = [r for r in row.notify_to or [] if r.get("address")]
    if not changes or not recipients:
        return False
    sent: list[str] = []
    failed: list[str] = []
    for recipient in recipients:
        template = (
            "mfa/email/action_notice_manager.txt"
            if recipient.get("kind") == "manager"
            else "mfa/email/action_notice_target.txt"
        )
        context = {
            "recipient_name": recipient.get("name") or "",
            "target_name": row.target_name,
            "target_upn": row.target_upn,
            "changes": changes,
            "when": _when(row.finished_at or now),
            "ticket": row.ticket,
            "partial": row.status != Status.SUCCEEDED,
            "contact": settings.PORTAL_HELPDESK_CONTACT,
            "reference": str(row.public_id),
        }
        subject = f"Your sign-in settings were changed by the service desk ({row.ticket})"
        if recipient.get("kind") == "manager":
            subject = f"Sign-in settings of {row.target_name} were changed ({row.ticket})"
        try:
            EmailMessage(
                subject=subject,
                body=render_to_string(template, context),
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[recipient["address"]],
            ).send(fail_silently=False)
        except Exception as exc:  # SMTP, template or backend: log and go on
            logger.warning(
                "completion notice for request %s to the %s failed: %s",
                row.pk,
                recipient.get("kind"),
                type(exc).__name__,
            )
            failed.append(str(recipient.get("kind")))
        else:
            sent.append(str(recipient.get("kind")))
    with transaction.atomic():
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_NOTIFIED,
            action_request_id=row.pk,
            target_id=row.target_id,
            target_name=row.target_name,
            ticket=row.ticket,
            detail={"sent_to": sent, "failed": failed},
        )
    return bool(sent)
