"""Escalation instead of a dead end (issue 13): an agent without PAA facing a privileged person
raises an escalation; a PAA holder takes it on (or refuses it); then the usual approval and run.
Through the real service, the real emulator and a real Celery worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import PortalEvent
from mfa import escalations, policy, services
from mfa.models import ActionKind, ActionRequest, Status
from mfa.policy import InvalidRequest, NotAllowed
from tests.mfa.action_requests import (
    action_request_make,
    code_verification,
    target_profile,
    wait_final,
)
from tests.personas import PAA, PERSONAS, portal_user

PRIYA = PERSONAS.privileged_target
SAM = PERSONAS.standard_target


def _kinds(row: ActionRequest) -> list[str]:
    """The request's own transitions (not the notices that something waits, helper C's)."""
    return list(
        PortalEvent.objects.filter(request=row.pk)
        .exclude(kind="waiting_notified")
        .order_by("id")
        .values_list("kind", flat=True)
    )


def _escalate(kind: str = ActionKind.REREGISTER) -> ActionRequest:
    ada = portal_user(PERSONAS.agent)
    profile = target_profile(PRIYA)
    verification = code_verification(ada, profile) if ActionKind.needs_verification(kind) else None
    return action_request_make(kind, agent=ada, profile=profile, verification=verification)


def test_an_agent_without_paa_is_offered_every_action_as_an_escalation(tenant: Any) -> None:
    ada = portal_user(PERSONAS.agent)
    priya = target_profile(PRIYA)
    assert policy.allowed_actions(ada, priya) == list(ActionKind.values)
    notice = escalations.escalation_notice(ada, priya)
    assert notice.startswith("Escalate to Aaron Agent:"), notice
    # Aaron holds PAA: nothing to escalate, the usual approval.
    assert escalations.escalation_notice(portal_user(PERSONAS.privileged_agent), priya) == ""
    assert escalations.escalation_notice(ada, target_profile(SAM)) == ""


def test_escalation_is_taken_approved_and_run(tenant: Any, celery_worker: Any) -> None:
    aaron = portal_user(PERSONAS.privileged_agent)
    leo = portal_user(PERSONAS.lead)
    ada = portal_user(PERSONAS.agent)
    row = _escalate()
    assert row.status == Status.ESCALATED and row.enqueued_at is None
    assert row.escalated_to == ["Aaron Agent"] and row.verification is not None
    assert _kinds(row) == [PortalEvent.Kind.ACTION_REQUESTED, escalations.EVENT_ESCALATED]

    # The queue: Aaron's, never the requester's, nor a lead's without PAA.
    assert list(escalations.waiting_for(aaron)) == [row]
    assert list(escalations.waiting_for(ada)) == []
    assert list(escalations.waiting_for(leo)) == []
    # Nobody approves an escalation nobody took; the requester does not take their own.
    with pytest.raises(InvalidRequest, match="must take it on before anyone approves"):
        services.action_request_approve(action_request=row, approver=leo, comment="ok")
    with pytest.raises(NotAllowed, match="You raised this escalation"):
        escalations.escalation_take(action_request=row, taker=ada)
    with pytest.raises(NotAllowed, match=PAA):
        escalations.escalation_take(action_request=row, taker=leo)

    row = escalations.escalation_take(action_request=row, taker=aaron, comment="Mine.")
    assert row.status == Status.AWAITING_APPROVAL and row.taken_by_name == "Aaron Agent"
    assert row.taken_at is not None and row.take_comment == "Mine."
    # The approval's window counts from the take, not from the escalation.
    ttl = timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)
    assert row.approval_expires_at() == row.taken_at + ttl
    assert list(escalations.waiting_for(aaron)) == []
    with pytest.raises(InvalidRequest, match="no longer waiting"):
        escalations.escalation_take(action_request=row, taker=aaron)
    # The one who took it on does not approve it either.
    with pytest.raises(NotAllowed):
        services.action_request_approve(action_request=row, approver=aaron, comment="ok")

    row = services.action_request_approve(action_request=row, approver=leo, comment="Checked")
    row = wait_final(row.pk)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    kinds = _kinds(row)
    assert kinds[:4] == [
        PortalEvent.Kind.ACTION_REQUESTED,
        escalations.EVENT_ESCALATED,
        escalations.EVENT_TAKEN,
        PortalEvent.Kind.ACTION_APPROVED,
    ]
    assert PortalEvent.Kind.ACTION_SUCCEEDED in kinds


def test_a_refusal_needs_a_reason_and_is_final(tenant: Any) -> None:
    aaron = portal_user(PERSONAS.privileged_agent)
    row = _escalate(ActionKind.REVOKE_SESSIONS)
    with pytest.raises(InvalidRequest, match="Say why"):
        escalations.escalation_refuse(action_request=row, taker=aaron, comment=" ")
    row = escalations.escalation_refuse(
        action_request=row, taker=aaron, comment="Priya is on leave: call her manager first."
    )
    assert row.status == Status.REJECTED and row.decided_by_name == "Aaron Agent"
    assert row.open_slot is None and row.decision_comment.startswith("Priya is on leave")
    assert _kinds(row)[-1] == escalations.EVENT_REFUSED


def test_an_escalation_may_be_cancelled_and_expires(tenant: Any) -> None:
    ada = portal_user(PERSONAS.agent)
    row = _escalate(ActionKind.REVOKE_SESSIONS)
    row = services.action_request_cancel(action_request=row, by=ada)
    assert row.status == Status.CANCELLED

    row = _escalate(ActionKind.REVOKE_SESSIONS)
    ActionRequest.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert services.requests_expire_stale() == 1
    row.refresh_from_db()
    assert row.status == Status.EXPIRED
    with pytest.raises(InvalidRequest):
        escalations.escalation_take(
            action_request=row, taker=portal_user(PERSONAS.privileged_agent)
        )


def test_the_taker_losing_paa_before_the_run_stops_it(tenant: Any, celery_worker: Any) -> None:
    aaron = portal_user(PERSONAS.privileged_agent)
    row = _escalate(ActionKind.REVOKE_SESSIONS)
    row = escalations.escalation_take(action_request=row, taker=aaron)
    # Aaron's PAA is removed in Entra after he took it on: the worker reads Entra afresh.
    with tenant.tenant.lock:
        for key, assignment in list(tenant.tenant.role_assignments.items()):
            if assignment.get("principalId") == PERSONAS.privileged_agent.oid:
                del tenant.tenant.role_assignments[key]
    row = services.action_request_approve(
        action_request=row, approver=portal_user(PERSONAS.lead), comment="ok"
    )
    row = wait_final(row.pk)
    assert row.status == Status.FAILED and row.error_code == "PolicyRefused"
    assert PAA in row.error_message and "Aaron Agent" in row.error_message


def test_nobody_to_take_it_is_still_a_refusal(tenant: Any) -> None:
    with tenant.tenant.lock:
        for key, assignment in list(tenant.tenant.role_assignments.items()):
            if assignment.get("principalId") == PERSONAS.privileged_agent.oid:
                del tenant.tenant.role_assignments[key]
    ada = portal_user(PERSONAS.agent)
    with pytest.raises(NotAllowed, match="nobody could take an escalation"):
        policy.check_may_request(ada, target_profile(PRIYA), ActionKind.REVOKE_SESSIONS)
