"""Notices of bulk operations: the approvers are mailed when one waits for them, the starter and
the approver when it ends (once, however often the end is reported), and the webhook posts."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import override_settings

from audit.models import PortalEvent
from bulk import services
from bulk.notifications import notify_approvers, notify_finished
from tests.bulk.support import group_standard_ids, plan, rita, run
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db


def test_the_starter_and_the_approver_are_told_once_when_it_ends(
    tenant: Any, django_capture_on_commit_callbacks: Any
) -> None:
    leo = portal_user(PERSONAS.lead)
    with override_settings(PORTAL_BULK_APPROVAL_THRESHOLD=1):
        with django_capture_on_commit_callbacks(execute=True):
            op = services.confirm(plan(group_standard_ids(tenant, 2)), by=rita())
    waiting = [m for m in mail.outbox if m.subject.startswith("Approval waiting: bulk")]
    to = {a for m in waiting for a in m.to}
    assert PERSONAS.lead.upn in to and PERSONAS.responder.upn not in to  # never the starter
    assert PERSONAS.agent.upn not in to  # an Agent does not approve bulk operations
    mail.outbox.clear()
    op = services.approve(op, by=leo)
    with django_capture_on_commit_callbacks(execute=True):
        op = run(op)
    done = [m for m in mail.outbox if m.subject.startswith("Bulk operation has succeeded")]
    assert sorted(a for m in done for a in m.to) == sorted(
        [PERSONAS.responder.upn, PERSONAS.lead.upn]
    )
    assert "Done: 2. Failed: 0. Not done: 0." in done[0].body
    assert notify_finished(operation_id=op.pk) == []  # told once
    assert PortalEvent.objects.filter(kind="bulk_operation_notified").count() == 2


def test_the_webhook_posts_the_notice(tenant: Any, monkeypatch: Any) -> None:
    from mfa import webhook

    posted: list[Any] = []

    def post(notice: Any) -> int:
        posted.append(notice)
        return 200

    monkeypatch.setattr(webhook, "post", post)
    with override_settings(
        PORTAL_NOTIFY_WEBHOOK_URL="https://hooks.example/x", PORTAL_BULK_APPROVAL_THRESHOLD=0
    ):
        op = services.confirm(plan(group_standard_ids(tenant, 1)), by=rita())
        notify_approvers(operation_id=op.pk)
    assert posted and posted[0].heading.startswith("Approval waiting: bulk")
    assert str(op.public_id) in posted[0].url
