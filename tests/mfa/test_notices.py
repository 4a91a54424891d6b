"""Notices (issue 13, "Approvals that people notice", bug 3): separate texts for a person and for
their manager; what waits for whom; the approvers' email and the webhook post, retried, with no
secret in it."""

from __future__ import annotations

import json
import smtplib
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import timezone

from accounts.navigation import nav_items_for, waiting_counts
from accounts.roles import portal_roles_of
from audit.models import PortalEvent
from audit.services import portal_event_record
from mfa import notifications, waiting, webhook
from mfa.models import ActionKind, ActionRequest, Status
from mfa.notifications import describe_changes, waiting_notice, when_text
from tests.mfa.action_requests import action_request_make, target_profile
from tests.personas import PERSONAS, portal_user
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REREGISTERED = {
    "removed": [{"label": "Microsoft Authenticator"}, {"label": "Phone +44 7700 900123"}],
    "sessions_revoked": "2026-12-02T10:00:00+00:00",
}


def _row(kind: str, result: dict[str, Any], status: str = Status.SUCCEEDED) -> ActionRequest:
    return ActionRequest(
        kind=kind,
        status=status,
        result=result,
        target_name="Sam Standard",
        target_upn=PERSONAS.standard_target.upn,
    )


@pytest.mark.parametrize(
    ("kind", "result", "status"),
    [
        (ActionKind.REREGISTER, REREGISTERED, Status.SUCCEEDED),
        (ActionKind.DELETE_METHOD, {"removed": [{"label": "Phone"}]}, Status.SUCCEEDED),
        (ActionKind.REVOKE_SESSIONS, {"sessions_revoked": "2026-12-02T10:00"}, Status.SUCCEEDED),
        (
            ActionKind.ISSUE_TAP,
            {
                "usable_once": True,
                "valid_from": "2026-12-02T09:05:00+00:00",
                "lifetime_minutes": 60,
            },
            Status.SUCCEEDED,
        ),
        (ActionKind.ISSUE_TAP, {}, Status.FAILED),
        (ActionKind.SET_MFA_STATE, {"before": "Disabled", "after": "Enforced"}, Status.SUCCEEDED),
    ],
)
def test_the_manager_reads_about_the_person_and_the_person_about_themself(
    kind: str, result: dict[str, Any], status: str
) -> None:
    row = _row(kind, result, status)
    to_person = describe_changes(row, audience="person")
    to_manager = describe_changes(row, audience="manager")
    assert to_person and len(to_person) == len(to_manager)
    assert all("you" in s.lower() or s.startswith("Removed sign-in method") for s in to_person)
    for sentence in to_manager:
        # Never the second person to someone who is not the target: the person is named.
        assert " you" not in f" {sentence.lower()}" and "your" not in sentence.lower(), sentence
        assert "Sam Standard" in sentence or sentence.startswith("Removed sign-in method: ")


def test_manager_sentences_for_a_reregistration() -> None:
    text = describe_changes(_row(ActionKind.REREGISTER, REREGISTERED), audience="manager")
    assert text == [
        "Removed sign-in method: Microsoft Authenticator",
        "Removed sign-in method: Phone +44 7700 900123",
        "Sam Standard will be asked to register their sign-in methods again the next time they "
        "sign in.",
        "Sam Standard was signed out of every app and browser and will have to sign in again.",
    ]
    with pytest.raises(ValueError):
        describe_changes(_row(ActionKind.REREGISTER, REREGISTERED), audience="boss")


def test_dates_have_no_leading_zero_and_fit_one_line() -> None:
    assert when_text("2026-12-03T09:05:00+00:00") == "3 Dec 2026, 09:05 UTC"


# --- what waits, and for whom ---------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    """An incoming webhook on loopback: answers the statuses queued in ``answers`` (then 200),
    keeps every JSON body in ``bodies``."""

    bodies: list[dict[str, Any]] = []
    answers: list[int] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        status = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def hook(settings: Any) -> Iterator[type[_Hook]]:
    _Hook.bodies, _Hook.answers = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.PORTAL_NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    settings.PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS = 0.2
    settings.PORTAL_BASE_URL = "https://helpdesk.example"
    yield _Hook
    server.shutdown()


def test_an_action_waiting_for_approval_tells_each_approver_and_the_channel(
    tenant: Any, celery_worker: Any, hook: type[_Hook]
) -> None:
    lead, other_lead, admin = (
        portal_user(PERSONAS.lead),
        portal_user(PERSONAS.other_lead),
        portal_user(PERSONAS.admin),
    )
    aaron = portal_user(PERSONAS.privileged_agent)
    hook.answers = [503]  # the first post fails: Celery retries it
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=aaron,
        profile=target_profile(PERSONAS.privileged_target),
        reason="Lost laptop with the session still open on it",
    )
    assert row.status == Status.AWAITING_APPROVAL

    # What waits, for whom: the Leads and the Admin, never the requester.
    for user in (lead, other_lead, admin):
        assert [r.pk for r in waiting.waiting_for(user).approvals] == [row.pk]
        assert waiting_counts(user)["mfa:approvals"] == 1
    assert waiting.waiting_for(aaron).approvals == []
    links = {
        link.label: link.count
        for link in nav_items_for(portal_roles_of(lead), waiting_counts(lead))
    }
    assert links["Approvals"] == 1 and links["Home"] == 0

    mailed = wait_for(
        lambda: [m for m in mail.outbox if m.subject.startswith("Approval waiting")] or None,
        timeout=30,
        what="the approvers' email",
    )
    addresses = sorted(a for m in mailed for a in m.to)
    assert addresses == sorted([PERSONAS.lead.upn, PERSONAS.other_lead.upn, PERSONAS.admin.upn])
    body = mailed[0].body
    assert "Revoke sign-in sessions" in body and "Priya Privileged" in body
    assert f"https://helpdesk.example/approvals/#appr-{row.pk}" in body
    assert "Lost laptop" not in body  # the reason stays in the portal

    posts = wait_for(
        lambda: hook.bodies if len(hook.bodies) >= 2 else None, timeout=30, what="retry"
    )
    assert posts[0] == posts[1]
    card = posts[1]["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    text = json.dumps(posts[1])
    assert "Priya Privileged" in text and "Lost laptop" not in text
    assert card["actions"][0]["url"] == f"https://helpdesk.example/approvals/#appr-{row.pk}"

    notified = wait_for(
        lambda: PortalEvent.objects.filter(kind="waiting_notified", request=row.pk).first(),
        timeout=10,
        what="the notice's event",
    )
    assert sorted(notified.detail["mailed"]) == ["Ana Admin", "Lena Lead", "Leo Lead"]
    assert notified.detail["webhook"] == "queued" and notified.detail["failed"] == []


def test_a_webhook_that_keeps_failing_is_recorded_not_raised(
    tenant: Any, celery_worker: Any, hook: type[_Hook], settings: Any
) -> None:
    settings.PORTAL_NOTIFY_WEBHOOK_ATTEMPTS = 2
    hook.answers = [500, 500, 500]
    portal_user(PERSONAS.lead)
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=portal_user(PERSONAS.privileged_agent),
        profile=target_profile(PERSONAS.privileged_target),
    )
    wait_for(lambda: len(hook.bodies) >= 2 or None, timeout=30, what="two attempts")
    failed = wait_for(
        lambda: (
            [
                e
                for e in PortalEvent.objects.filter(kind="waiting_notified", request=row.pk)
                if e.detail.get("webhook") == "failed"
            ]
            or None
        ),
        timeout=10,
        what="the failure's event",
    )
    assert failed[0].detail["failed"] == ["webhook (HTTP 500, after 2 attempts)"]
    assert ActionRequest.objects.get(pk=row.pk).status == Status.AWAITING_APPROVAL


def test_slack_gets_text_and_teams_a_card(settings: Any) -> None:
    notice = webhook.Notice(
        heading="Approval waiting: Revoke sign-in sessions for Priya Privileged",
        what="Revoke sign-in sessions",
        person="Priya Privileged (priya.privileged@contoso.example)",
        asked_by="Aaron Agent",
        ticket="INC0012345",
        expires=when_text(timezone.now()),
        who_acts="a Lead or an Admin",
        url="https://helpdesk.example/approvals/#appr-1",
    )
    settings.PORTAL_NOTIFY_WEBHOOK_FORMAT = "auto"
    assert webhook.webhook_format("https://hooks.slack.com/services/T/B/X") == "slack"
    assert (
        webhook.webhook_format("https://prod-1.westeurope.logic.azure.com/workflows/x") == "teams"
    )
    slack = webhook.payload(notice, fmt="slack")
    assert (
        set(slack) == {"text"} and "<https://helpdesk.example/approvals/#appr-1|" in slack["text"]
    )
    teams = webhook.payload(notice, fmt="teams")
    assert teams["type"] == "message"
    facts = teams["attachments"][0]["content"]["body"][1]["facts"]
    assert {"title": "Ticket", "value": "INC0012345"} in facts


def test_a_role_grant_waits_for_the_other_admins_only(tenant: Any) -> None:
    from roles.models import HoldKind, PrincipalType, RoleChangeRequest

    ana, abel = portal_user(PERSONAS.admin), portal_user(PERSONAS.other_admin)
    lead = portal_user(PERSONAS.lead)
    row = RoleChangeRequest.objects.create(
        change="add",
        status=Status.AWAITING_APPROVAL,
        role_template_id="0",
        role_name="Privileged Authentication Administrator",
        principal_id=PERSONAS.standard_target.oid,
        principal_type=PrincipalType.USER,
        principal_name="Sam Standard",
        principal_upn=PERSONAS.standard_target.upn,
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Covering the night shift",
        requester=ana,
        requester_name="Ana Admin",
        needs_approval=True,
        idempotency_key="grant-1",
    )
    assert [r.pk for r in waiting.waiting_for(abel).role_grants] == [row.pk]
    assert waiting.waiting_for(ana).role_grants == []
    assert waiting.waiting_for(lead).role_grants == []
    assert [u.pk for u in waiting.who_can_act(row)] == [abel.pk]
    notice = waiting_notice(row)
    assert notice.what == "Privileged Authentication Administrator: Active, permanent"
    assert notice.url.endswith(f"/approvals/#grant-{row.pk}")
    (item,) = waiting.waiting_for(abel).items()
    assert item.kind == "role_grant" and item.title.startswith("Privileged Authentication")


class BrokenMail(BaseEmailBackend):
    """A mail server that refuses everything."""

    def send_messages(self, email_messages: Any) -> int:
        raise smtplib.SMTPServerDisconnected("the mail server went away")


def test_a_mail_failure_is_recorded_and_the_request_goes_on_waiting(
    tenant: Any, settings: Any
) -> None:
    portal_user(PERSONAS.lead)
    settings.PORTAL_NOTIFY_WEBHOOK_URL = ""
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=portal_user(PERSONAS.privileged_agent),
        profile=target_profile(PERSONAS.privileged_target),
    )
    settings.EMAIL_BACKEND = "tests.mfa.test_notices.BrokenMail"
    # The task's body, as the worker runs it: no exception out of it.
    assert notifications.waiting_notify(ref=waiting.ref_of(row), status=row.status) == []
    # Once per entry: a second report of the same one is absorbed.
    assert notifications.waiting_notify(ref=waiting.ref_of(row), status=row.status) == []
    assert ActionRequest.objects.get(pk=row.pk).status == Status.AWAITING_APPROVAL
    (event,) = PortalEvent.objects.filter(kind="waiting_notified", request=row.pk)
    assert event.detail["mailed"] == []
    assert event.detail["failed"] == ["mail to Leo Lead (SMTPServerDisconnected)"]
    # A request that no longer waits is not announced.
    ActionRequest.objects.filter(pk=row.pk).update(status=Status.CANCELLED)
    assert notifications.waiting_notify(ref=waiting.ref_of(row), status="cancelled") == []


def test_a_request_sent_back_to_approval_is_announced_again(
    tenant: Any, celery_worker: Any, settings: Any
) -> None:
    settings.PORTAL_NOTIFY_WEBHOOK_URL = ""
    portal_user(PERSONAS.lead)
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=portal_user(PERSONAS.privileged_agent),
        profile=target_profile(PERSONAS.privileged_target),
    )

    def told(times: int) -> list[Any] | None:
        found = [m for m in mail.outbox if m.subject.startswith("Approval waiting")]
        return found if len(found) >= times else None

    wait_for(lambda: told(1), timeout=30, what="the first notice")
    # What the engine does when the execution-time check sends it back (an UPDATE and an event).
    with transaction.atomic():
        ActionRequest.objects.filter(pk=row.pk).update(
            updated_at=timezone.now() + timedelta(seconds=1)
        )
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_RETURNED_TO_APPROVAL,
            action_request_id=row.pk,
            detail={"reason": "The person's tier rose"},
        )
    assert len(wait_for(lambda: told(2), timeout=30, what="the second notice") or []) == 2


def test_an_escalation_tells_its_takers_then_once_taken_its_approvers(
    tenant: Any, celery_worker: Any, settings: Any
) -> None:
    from mfa import escalations

    settings.PORTAL_NOTIFY_WEBHOOK_URL = ""
    portal_user(PERSONAS.lead)
    aaron = portal_user(PERSONAS.privileged_agent)
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=portal_user(PERSONAS.agent),
        profile=target_profile(PERSONAS.privileged_target),
    )
    assert row.status == Status.ESCALATED
    assert [u.pk for u in waiting.who_can_act(row)] == [aaron.pk]
    assert waiting_counts(aaron)["mfa:escalations"] == 1
    (taker_mail,) = wait_for(
        lambda: [m for m in mail.outbox if m.subject.startswith("Escalation waiting")] or None,
        timeout=30,
        what="the taker's email",
    )
    assert taker_mail.to == [PERSONAS.privileged_agent.upn]
    assert f"/escalations/#esc-{row.pk}" in taker_mail.body

    escalations.escalation_take(action_request=row, taker=aaron, comment="Taking it")
    (approver_mail,) = wait_for(
        lambda: [m for m in mail.outbox if m.subject.startswith("Approval waiting")] or None,
        timeout=30,
        what="the approver's email",
    )
    assert approver_mail.to == [PERSONAS.lead.upn]
    assert waiting_counts(aaron)["mfa:escalations"] == 0
