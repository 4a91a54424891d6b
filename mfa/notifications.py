"""The notices the portal mails: to a person (and their manager) when the helpdesk changed their
sign-in, and to the people a request starts waiting for.

An account-takeover attempt through the helpdesk is most often noticed by the real person: so
every finished request that changed something mails the target (and, with PORTAL_NOTIFY_MANAGER,
their manager) a plain-text notice of what changed, when, under which ticket, and whom to call if
they did not ask for it. The person reads about their own account ("you"); the manager reads the
same facts about the person by name (:func:`describe_changes`, ``audience``). The notice never
contains a Temporary Access Pass or any other secret: the templates receive only the ``changes``
sentences built here from the request's result.

:func:`notify_waiting` tells the approvers of a request awaiting approval, the takers of an
escalation and the second Admin of a role grant that it waits for them: an email each and, with
PORTAL_NOTIFY_WEBHOOK_URL, a post to the team's channel (mfa.webhook), through Celery tasks.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.roles import Role, display_name_of, portal_roles_of
from audit.models import PortalEvent
from audit.services import portal_event_record
from mfa import waiting, webhook
from mfa.models import ActionKind, ActionRequest
from mfa.policy import target_portal_roles
from outbox.states import Status
from roles.models import RoleChangeRequest

logger = logging.getLogger(__name__)

_NOTIFY_STATUSES = (Status.SUCCEEDED, Status.PARTIALLY_SUCCEEDED, Status.FAILED)
_AUDIENCES = ("person", "manager")


def when_text(value: Any) -> str:
    """A moment as the portal writes it, on one line in the portal's time zone, without a
    leading zero on the day: "3 Dec 2026, 14:05 UTC"."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        local = timezone.localtime(value)
        return f"{local.day} {local:%b %Y, %H:%M %Z}"
    return ""


def _mfa_state(value: Any) -> str:
    return str(value or "unknown").lower()


def describe_changes(row: ActionRequest, *, audience: str = "person") -> list[str]:
    """Plain sentences of what the request changed on the account: to the person themself
    (``audience="person"``, second person) or to their manager (``"manager"``, about the person
    by name), for every action kind."""
    if audience not in _AUDIENCES:
        raise ValueError(f"audience must be one of {_AUDIENCES}, not {audience!r}")
    to_person = audience == "person"
    name = row.target_name or row.target_upn
    result = row.result or {}
    changes: list[str] = []
    removed = [entry.get("label", "a method") for entry in result.get("removed") or []]
    if row.kind in (ActionKind.REREGISTER, ActionKind.DELETE_METHOD):
        # Neutral wording: the same line reads right to the person and to their manager.
        changes.extend(f"Removed sign-in method: {label}" for label in removed)
        if row.kind == ActionKind.REREGISTER and removed:
            changes.append(
                "You will be asked to register your sign-in methods again the next time you "
                "sign in."
                if to_person
                else f"{name} will be asked to register their sign-in methods again the next "
                "time they sign in."
            )
    if result.get("sessions_revoked"):
        changes.append(
            "You were signed out of every app and browser: you will have to sign in again."
            if to_person
            else f"{name} was signed out of every app and browser and will have to sign in again."
        )
    if row.kind == ActionKind.ISSUE_TAP:
        if row.status == Status.SUCCEEDED:
            kind = "one-time" if result.get("usable_once") else "multi-use"
            valid = (
                f"valid from {when_text(result.get('valid_from'))} for "
                f"{result.get('lifetime_minutes')} minutes"
            )
            changes.append(
                f"A {kind} Temporary Access Pass was issued for your account, {valid}. The "
                "service desk gives it to you by phone only; it is never sent by email."
                if to_person
                else f"A {kind} Temporary Access Pass was issued for {name}'s account, {valid}. "
                f"The service desk gives it to {name} by phone only; it is never sent by email."
            )
        else:
            changes.append(
                "A Temporary Access Pass may have been issued for your account (the request did "
                "not complete normally)."
                if to_person
                else f"A Temporary Access Pass may have been issued for {name}'s account (the "
                "request did not complete normally)."
            )
    if row.kind == ActionKind.SET_MFA_STATE and result.get("after"):
        before, after = _mfa_state(result.get("before")), _mfa_state(result.get("after"))
        changes.append(
            f"Per-user multi-factor authentication on your account changed from {before} to "
            f"{after}."
            if to_person
            else f"Per-user multi-factor authentication on {name}'s account changed from "
            f"{before} to {after}."
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
    recipients = [r for r in row.notify_to or [] if r.get("address")]
    if not describe_changes(row) or not recipients:
        return False
    sent: list[str] = []
    failed: list[str] = []
    for recipient in recipients:
        to_manager = recipient.get("kind") == "manager"
        template = (
            "mfa/email/action_notice_manager.txt"
            if to_manager
            else "mfa/email/action_notice_target.txt"
        )
        context = {
            "changes": describe_changes(row, audience="manager" if to_manager else "person"),
            "recipient_name": recipient.get("name") or "",
            "target_name": row.target_name,
            "target_upn": row.target_upn,
            "when": when_text(row.finished_at or now),
            "ticket": row.ticket,
            "partial": row.status != Status.SUCCEEDED,
            "contact": settings.PORTAL_HELPDESK_CONTACT,
            "reference": str(row.public_id),
        }
        subject = f"Your sign-in settings were changed by the service desk ({row.ticket})"
        if to_manager:
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


# --- notices of what starts waiting for someone (approvals, role grants, escalations) ----------

WAITING_NOTIFIED = PortalEvent.Kind.WAITING_NOTIFIED
# One notice per (request, waiting state) even when two code paths report the same entry.
_DEDUP_SECONDS = 120


def notify_waiting(action_request: ActionRequest | RoleChangeRequest) -> None:
    """Tell whoever can act on ``action_request`` now that it waits for them: an email to each
    (approvers for ``awaiting_approval``, takers for ``escalated``; Admins other than the
    requester for a role grant) and, with ``PORTAL_NOTIFY_WEBHOOK_URL``, one post to the team's
    channel.

    Sends nothing itself: the Celery task ``mfa.tasks.waiting_notify`` is enqueued once the
    current transaction commits (nothing is sent for a request that rolled back). Never raises:
    a broker, mail or webhook failure is logged and recorded as a ``waiting_notified`` event
    naming what failed; the request itself goes on waiting.
    """
    try:
        ref = waiting.ref_of(action_request)
        status = str(action_request.status)
        transaction.on_commit(lambda: _waiting_enqueue(ref, status))
    except Exception as exc:  # never let a notice break the request that waits
        logger.warning("could not plan the waiting notice: %s", type(exc).__name__)


def _waiting_enqueue(ref: str, status: str) -> None:
    from mfa import tasks

    try:
        tasks.waiting_notify.apply_async(args=(ref, status), queue="sync")
    except Exception as exc:  # broker down: record it, never fail the request that waits
        logger.warning("could not enqueue the waiting notice of %s: %s", ref, type(exc).__name__)
        row = waiting.row_of(ref)
        if row is not None:
            waiting_event_record(
                row, detail={"status": status, "failed": [f"queue ({type(exc).__name__})"]}
            )


def _who_acts(row: ActionRequest | RoleChangeRequest) -> str:
    if isinstance(row, RoleChangeRequest):
        return "a second portal Admin"
    if row.status == Status.ESCALATED:
        return (
            ", ".join(row.escalated_to or [])
            or "a holder of Privileged Authentication Administrator"
        )
    if Role.ADMIN in target_portal_roles(row) or portal_roles_of(row.requester) & {
        Role.LEAD,
        Role.ADMIN,
    }:
        return "an Admin"
    return "a Lead or an Admin"


def _absolute(path: str) -> str:
    """``path`` on PORTAL_BASE_URL; the bare path when the portal's address is not set."""
    base = str(getattr(settings, "PORTAL_BASE_URL", "") or "").rstrip("/")
    return f"{base}{path}"


def waiting_notice(row: ActionRequest | RoleChangeRequest) -> webhook.Notice:
    """What the notice says about ``row``: only what finds it (no reason, code or pass)."""
    expires = when_text(row.approval_expires_at())
    if isinstance(row, RoleChangeRequest):
        what = f"{row.role_name}: {waiting.hold_text(row)}"
        person = row.principal_name + (f" ({row.principal_upn})" if row.principal_upn else "")
        return webhook.Notice(
            heading=f"Role grant waiting for a second Admin: {row.role_name} for "
            f"{row.principal_name}",
            what=what,
            person=person,
            asked_by=row.requester_name,
            ticket=row.ticket,
            expires=expires,
            who_acts=_who_acts(row),
            url=_absolute(f"{reverse('mfa:approvals')}#grant-{row.pk}"),
        )
    if row.status == Status.ESCALATED:
        heading = f"Escalation waiting: {row.get_kind_display()} for {row.target_name}"
        try:
            url = _absolute(f"{reverse('mfa:escalations')}#esc-{row.pk}")
        except NoReverseMatch:
            url = _absolute("/")
    else:
        heading = f"Approval waiting: {row.get_kind_display()} for {row.target_name}"
        url = _absolute(f"{reverse('mfa:approvals')}#appr-{row.pk}")
    return webhook.Notice(
        heading=heading,
        what=row.get_kind_display(),
        person=f"{row.target_name} ({row.target_upn})",
        asked_by=row.requester_name,
        ticket=row.ticket,
        expires=expires,
        who_acts=_who_acts(row),
        url=url,
    )


def waiting_event_record(row: ActionRequest | RoleChangeRequest, *, detail: dict[str, Any]) -> None:
    """Record what a waiting notice did (who was mailed, what failed) as a ``waiting_notified``
    PortalEvent: History shows a failure where people look."""
    if isinstance(row, RoleChangeRequest):
        fields: dict[str, Any] = {
            "target_id": row.principal_id,
            "target_name": row.principal_name,
            "ticket": row.ticket,
            "detail": {"role_change": str(row.public_id), "role_change_id": row.pk, **detail},
        }
    else:
        fields = {
            "action_request_id": row.pk,
            "target_id": row.target_id,
            "target_name": row.target_name,
            "ticket": row.ticket,
            "detail": detail,
        }
    with transaction.atomic():
        portal_event_record(kind=WAITING_NOTIFIED, **fields)


def waiting_notify(*, ref: str, status: str) -> list[str]:
    """The body of ``mfa.tasks.waiting_notify``: mail everyone ``ref`` waits for (if it still
    waits in ``status``), enqueue the webhook post, record what happened. Returns the addresses
    mailed. Never raises for a mail failure."""
    row = waiting.row_of(ref)
    if row is None or str(row.status) != status:
        return []
    # The same entry into the same state, reported twice (a receiver and a service), is told
    # once; a later entry (sent back to approval) has another ``updated_at`` and is told again.
    stamp = row.updated_at.isoformat() if row.updated_at else ""
    if not cache.add(f"mfa:waiting-notice:{ref}:{status}:{stamp}", 1, timeout=_DEDUP_SECONDS):
        return []
    notice = waiting_notice(row)
    people = waiting.who_can_act(row)
    mailed: list[str] = []
    failed: list[str] = []
    for person in people if settings.PORTAL_NOTIFY_APPROVERS else []:
        address = waiting.address_of(person)
        if not address:
            continue
        body = render_to_string(
            "mfa/email/waiting_notice.txt",
            {
                "notice": notice,
                "recipient_name": display_name_of(person),
                "contact": settings.PORTAL_HELPDESK_CONTACT,
            },
        )
        try:
            EmailMessage(
                subject=notice.heading,
                body=body,
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[address],
            ).send(fail_silently=False)
        except Exception as exc:  # SMTP, backend: record it and go on with the others
            logger.warning(
                "waiting notice of %s to one approver failed: %s", ref, type(exc).__name__
            )
            failed.append(f"mail to {display_name_of(person)} ({type(exc).__name__})")
        else:
            mailed.append(display_name_of(person))
    hook = "off"
    if settings.PORTAL_NOTIFY_WEBHOOK_URL:
        from mfa import tasks

        try:
            tasks.waiting_webhook_post.apply_async(args=(ref, notice.as_dict()), queue="sync")
        except Exception as exc:  # broker down: say so
            failed.append(f"webhook ({type(exc).__name__})")
            hook = "not sent"
        else:
            hook = "queued"
    waiting_event_record(
        row,
        detail={
            "status": status,
            "mailed": mailed,
            "failed": failed,
            "webhook": hook,
            **({} if people else {"nobody": "no portal user can act on it now"}),
        },
    )
    return mailed
