"""mfa.services through the real emulator, the real graph client and a real Celery worker."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from audit.models import PortalEvent
from graph import methods as graph_methods
from mfa import policy, services
from mfa.models import ActionKind, ActionRequest, Status, Tier
from mfa.overrides import rate_override_grant
from mfa.policy import InvalidRequest, NotAllowed, RateLimited, TargetBusy, VerificationRequired
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import (
    TICKET,
    action_request_make,
    emulator_audit,
    manual_verification,
    new_key,
    target_profile,
    wait_final,
)
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target


def _event_kinds(row: ActionRequest) -> list[str]:
    return list(
        PortalEvent.objects.filter(request=row.pk).order_by("id").values_list("kind", flat=True)
    )


# --- outcomes through a real worker ------------------------------------------------------------


def test_reregistration_removes_every_method_default_last(tenant: Any, celery_worker: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    profile = target_profile(SAM)
    assert profile.tier == Tier.STANDARD
    before = graph_methods.list_methods(get_graph_client(), SAM.oid)
    deletable = [m for m in before if m.kind.deletable]
    assert len(deletable) >= 2

    row = action_request_make(
        ActionKind.REREGISTER, agent=agent, profile=profile, params={"revoke_sessions": True}
    )
    assert row.status == Status.PENDING
    row = wait_final(row.pk)

    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert {e["id"] for e in row.result["removed"]} == {m.id for m in deletable}
    # Authenticator is Sam's default: it can only go once the phone is gone.
    assert row.result["removed"][-1]["type"].endswith("microsoftAuthenticatorAuthenticationMethod")
    assert row.result["remaining"] == [] and row.result["failed"] == []
    assert row.result["sessions_revoked"]
    texts = [s["text"] for s in row.steps]
    assert any(
        t.startswith("Removing Microsoft Authenticator") and t.endswith("done") for t in texts
    )
    assert any(t == "Revoking sign-in sessions… done" for t in texts)
    after = graph_methods.list_methods(get_graph_client(), SAM.oid)
    assert [m for m in after if m.kind.deletable] == []
    assert row.open_slot is None and row.completed_writes and row.pending_writes == {}

    kinds = _event_kinds(row)
    assert kinds[0] == PortalEvent.Kind.ACTION_REQUESTED
    assert PortalEvent.Kind.ACTION_STARTED in kinds
    assert kinds.count(PortalEvent.Kind.ACTION_STEP) == len(deletable) + 1
    assert PortalEvent.Kind.ACTION_SUCCEEDED in kinds
    # The target and the manager are told, in plain words, with whom to call.
    assert row.notified_at is not None
    recipients = sorted(address for m in mail.outbox for address in m.to)
    assert profile.user.mail in recipients and profile.manager is not None
    assert profile.manager.mail in recipients
    notice = next(m for m in mail.outbox if profile.user.mail in m.to)
    assert "Removed sign-in method: Microsoft Authenticator" in notice.body
    assert "+44 20 7946 0000" in notice.body and TICKET in notice.body


def test_one_failed_delete_is_a_partial_success(tenant: Any, celery_worker: Any) -> None:
    tenant.faults.add_fail_next(
        "DELETE",
        r"/microsoftAuthenticatorMethods/",
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    agent = portal_user(PERSONAS.agent)
    row = wait_final(
        action_request_make(ActionKind.REREGISTER, agent=agent, profile=target_profile(SAM)).pk
    )

    assert row.status == Status.PARTIALLY_SUCCEEDED
    assert [e["type"] for e in row.result["removed"]] == [
        "microsoft.graph.phoneAuthenticationMethod"
    ]
    (failure,) = row.result["failed"]
    assert failure["code"] == "Authorization_RequestDenied"
    assert failure["request_id"]
    assert any(r.startswith("Microsoft Authenticator") for r in row.result["remaining"])
    assert row.error_code == "Authorization_RequestDenied" and row.error_request_id
    assert any(
        s["state"] == "failed" and "Insufficient privileges" in s["detail"] for s in row.steps
    )
    assert PortalEvent.Kind.ACTION_PARTIALLY_SUCCEEDED in _event_kinds(row)


def test_a_delete_refused_as_the_default_is_retried_last(tenant: Any, celery_worker: Any) -> None:
    # Graph refuses to delete the default method while others remain (400): the method goes to
    # the end of the queue and is tried once more when the others are gone.
    tenant.faults.add_fail_next(
        "DELETE",
        r"/phoneMethods/",
        400,
        "badRequest",
        "Cannot delete default method with other methods configured.",
    )
    agent = portal_user(PERSONAS.agent)
    row = wait_final(
        action_request_make(ActionKind.REREGISTER, agent=agent, profile=target_profile(SAM)).pk
    )
    assert row.status == Status.SUCCEEDED, (row.error_code, row.steps)
    refused = [s["text"] for s in row.steps if "trying again after the others" in s["text"]]
    # The phone (injected refusal), then Authenticator: the default, refused while the phone
    # was still there. Both went on the second try.
    assert [t.split(" (")[0] for t in refused] == [
        "Removing Phone",
        "Removing Microsoft Authenticator",
    ]
    assert [e["type"].split(".")[-1] for e in row.result["removed"]] == [
        "phoneAuthenticationMethod",
        "microsoftAuthenticatorAuthenticationMethod",
    ]


def test_throttled_then_succeeds_after_retry_after(tenant: Any, celery_worker: Any) -> None:
    # More 429s than the client retries on its own: the task must wait and come back.
    tenant.faults.add_fail_next(
        "POST", r"/revokeSignInSessions$", 429, "TooManyRequests", "Too many requests.", count=5
    )
    agent = portal_user(PERSONAS.agent)
    before = len(emulator_audit(tenant, target_id=SAM.oid, activity_contains="StsRefreshToken"))
    row = wait_final(
        action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=target_profile(SAM)).pk
    )

    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    assert row.attempts == 2
    waiting = [s for s in row.steps if s["state"] == "waiting"]
    assert any(s["text"] == "Waiting for Graph (throttled), retrying in 1 s" for s in waiting)
    assert "TooManyRequests" in waiting[-1]["detail"]
    kinds = _event_kinds(row)
    assert kinds.count(PortalEvent.Kind.ACTION_STARTED) == 2
    assert PortalEvent.Kind.ACTION_RETRY_SCHEDULED in kinds
    revokes = emulator_audit(tenant, target_id=SAM.oid, activity_contains="StsRefreshToken")
    assert len(revokes) == before + 1


@override_settings(PORTAL_ACTION_MAX_ATTEMPTS=2)
def test_throttled_past_the_retry_budget_fails_with_graphs_error(
    tenant: Any, celery_worker: Any
) -> None:
    tenant.faults.add_fail_next(
        "POST", r"/revokeSignInSessions$", 429, "TooManyRequests", "Too many requests.", count=10
    )
    agent = portal_user(PERSONAS.agent)
    row = wait_final(
        action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=target_profile(SAM)).pk
    )
    assert row.status == Status.FAILED
    assert row.error_code == "TooManyRequests" and row.attempts == 2


def test_permanent_graph_error_fails_with_code_message_and_request_id(
    tenant: Any, celery_worker: Any
) -> None:
    tenant.faults.add_fail_next(
        "GET",
        r"/authentication/methods$",
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    agent = portal_user(PERSONAS.agent)
    row = wait_final(
        action_request_make(ActionKind.REREGISTER, agent=agent, profile=target_profile(SAM)).pk
    )
    assert row.status == Status.FAILED
    assert row.error_code == "Authorization_RequestDenied"
    assert row.error_message == "Insufficient privileges to complete the operation."
    assert row.error_request_id
    assert row.attempts == 1 and row.open_slot is None
    assert row.notified_at is None  # nothing changed: nobody is alarmed


def test_set_mfa_state_and_delete_one_method(tenant: Any, celery_worker: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    profile = target_profile(SAM)
    row = wait_final(
        action_request_make(
            ActionKind.SET_MFA_STATE, agent=agent, profile=profile, params={"state": "enforced"}
        ).pk
    )
    assert row.status == Status.SUCCEEDED, row.error_message
    assert row.result == {"before": "disabled", "after": "enforced"}

    phone = next(m for m in graph_methods.list_methods(get_graph_client(), SAM.oid) if m.phone_type)
    params = {"method_id": phone.id, "method_type": phone.odata_type, "method_label": "Phone"}
    row = wait_final(
        action_request_make(
            ActionKind.DELETE_METHOD, agent=agent, profile=profile, params=params
        ).pk
    )
    assert row.status == Status.SUCCEEDED, row.error_message
    remaining = graph_methods.list_methods(get_graph_client(), SAM.oid)
    assert phone.id not in {m.id for m in remaining}


# --- approvals ----------------------------------------------------------------------------------


def test_privileged_target_waits_for_a_second_person(tenant: Any, celery_worker: Any) -> None:
    # Aaron holds Privileged Authentication Administrator: Entra's tiering lets him act on Priya.
    agent = portal_user(PERSONAS.privileged_agent)
    lead = portal_user(PERSONAS.lead)
    profile = target_profile(PRIYA)
    assert profile.tier == Tier.PRIVILEGED
    # Ada holds no PAA: her request is escalated to Aaron, not refused (mfa.escalations).
    escalated = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=portal_user(PERSONAS.agent), profile=profile
    )
    assert escalated.status == Status.ESCALATED and escalated.escalated_to == ["Aaron Agent"]
    services.action_request_cancel(action_request=escalated, by=portal_user(PERSONAS.agent))
    row = action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile)
    assert row.status == Status.AWAITING_APPROVAL and row.enqueued_at is None
    assert row.target_roles[0]["role_name"] == "Authentication Administrator"

    with pytest.raises(NotAllowed):
        services.action_request_approve(action_request=row, approver=agent, comment="")
    row = services.action_request_approve(action_request=row, approver=lead, comment="Checked")
    assert row.status in {Status.PENDING, Status.RUNNING, Status.SUCCEEDED}
    assert row.decided_by_name == "Leo Lead"
    row = wait_final(row.pk)
    assert row.status == Status.SUCCEEDED
    # The approvers' notice (a task of its own) may be recorded before or after the approval.
    kinds = [k for k in _event_kinds(row) if k != PortalEvent.Kind.WAITING_NOTIFIED]
    assert kinds[:2] == [PortalEvent.Kind.ACTION_REQUESTED, PortalEvent.Kind.ACTION_APPROVED]
    with pytest.raises(InvalidRequest):
        services.action_request_approve(action_request=row, approver=lead, comment="again")


@override_settings(PORTAL_MIRROR_ENTRA_TIERING=False)
def test_rejection_and_self_approval(tenant: Any) -> None:
    # Without the mirrored tiering a lead may request on a privileged person, never approve it.
    lead = portal_user(PERSONAS.lead)
    other_lead = portal_user(PERSONAS.other_lead)
    profile = target_profile(PRIYA)
    before = len(emulator_audit(tenant, target_id=PRIYA.oid, activity_contains="StsRefreshToken"))
    row = action_request_make(ActionKind.REVOKE_SESSIONS, agent=lead, profile=profile)
    with pytest.raises(NotAllowed, match="your own request"):
        services.action_request_approve(action_request=row, approver=lead, comment="mine")
    with pytest.raises(InvalidRequest, match="Say why"):
        services.action_request_reject(action_request=row, approver=other_lead, comment=" ")
    row = services.action_request_reject(
        action_request=row, approver=other_lead, comment="No ticket from the security team"
    )
    assert row.status == Status.REJECTED and row.open_slot is None
    assert row.decision_comment == "No ticket from the security team"
    assert PortalEvent.Kind.ACTION_REJECTED in _event_kinds(row)
    after = len(emulator_audit(tenant, target_id=PRIYA.oid, activity_contains="StsRefreshToken"))
    assert after == before


def test_unapproved_request_expires(tenant: Any) -> None:
    agent = portal_user(PERSONAS.privileged_agent)
    lead = portal_user(PERSONAS.lead)
    profile = target_profile(PRIYA)
    stale = action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile)
    ActionRequest.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(minutes=241)
    )
    fresh = action_request_make(
        ActionKind.SET_MFA_STATE, agent=agent, profile=profile, params={"state": "enforced"}
    )
    assert services.requests_expire_stale() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Status.EXPIRED and fresh.status == Status.AWAITING_APPROVAL
    assert PortalEvent.Kind.ACTION_EXPIRED in _event_kinds(stale)
    with pytest.raises(InvalidRequest):
        services.action_request_approve(action_request=stale, approver=lead, comment="late")
    # Approving after the deadline, before beat noticed, expires it too.
    ActionRequest.objects.filter(pk=fresh.pk).update(
        created_at=timezone.now() - timedelta(minutes=241)
    )
    with pytest.raises(InvalidRequest, match="expired"):
        services.action_request_approve(action_request=fresh, approver=lead, comment="late")
    fresh.refresh_from_db()
    assert fresh.status == Status.EXPIRED


# --- refusals -------------------------------------------------------------------------------------


def test_verification_missing_expired_or_someone_elses_is_refused(tenant: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    other_agent = portal_user(PERSONAS.privileged_agent)
    profile = target_profile(SAM)
    other_profile = target_profile(PERSONAS.outsider)
    with pytest.raises(VerificationRequired, match="Verify the caller"):
        action_request_make(ActionKind.REREGISTER, agent=agent, profile=profile, verification=None)
    theirs = manual_verification(other_agent, profile)
    with pytest.raises(VerificationRequired, match="another agent"):
        action_request_make(
            ActionKind.REREGISTER, agent=agent, profile=profile, verification=theirs
        )
    elsewhere = manual_verification(agent, other_profile)
    with pytest.raises(VerificationRequired, match="another person"):
        action_request_make(
            ActionKind.REREGISTER, agent=agent, profile=profile, verification=elsewhere
        )
    old = manual_verification(agent, profile)
    old.verified_at = timezone.now() - timedelta(minutes=11)
    old.save(update_fields=["verified_at"])
    with pytest.raises(VerificationRequired, match="more than 10 minutes old"):
        action_request_make(ActionKind.REREGISTER, agent=agent, profile=profile, verification=old)
    assert not ActionRequest.objects.exists()
    # Revoking sessions needs no verification.
    assert (
        action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile).status
        == Status.PENDING
    )


def test_reason_ticket_and_tap_policy_are_checked(tenant: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    profile = target_profile(SAM)
    with pytest.raises(InvalidRequest, match="reason"):
        action_request_make(
            ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile, reason="because"
        )
    with pytest.raises(InvalidRequest, match="ticket reference"):
        action_request_make(
            ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile, ticket="see email"
        )
    # The seeded policy allows 10..480 minutes, multi-use passes included.
    with pytest.raises(InvalidRequest, match="10 to 480 minutes"):
        action_request_make(
            ActionKind.ISSUE_TAP,
            agent=agent,
            profile=profile,
            params={"lifetime_minutes": 600, "usable_once": True},
        )
    tenant.tenant.tap_policy["isUsableOnce"] = True
    policy.tap_policy(get_graph_client(), use_cache=False)
    with pytest.raises(InvalidRequest, match="one-time passes only"):
        action_request_make(
            ActionKind.ISSUE_TAP,
            agent=agent,
            profile=profile,
            params={"lifetime_minutes": 60, "usable_once": False},
        )
    assert not ActionRequest.objects.exists()


def test_same_idempotency_key_makes_one_request_and_one_graph_write(
    tenant: Any, celery_worker: Any
) -> None:
    agent = portal_user(PERSONAS.agent)
    profile = target_profile(SAM)
    before = len(emulator_audit(tenant, target_id=SAM.oid, activity_contains="StsRefreshToken"))
    key = new_key()
    first = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile, idempotency_key=key
    )
    second = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile, idempotency_key=key
    )
    assert second.pk == first.pk
    assert wait_final(first.pk).status == Status.SUCCEEDED
    third = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile, idempotency_key=key
    )
    assert third.pk == first.pk and ActionRequest.objects.count() == 1
    after = len(emulator_audit(tenant, target_id=SAM.oid, activity_contains="StsRefreshToken"))
    assert after == before + 1
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.ACTION_REQUESTED).count() == 1


def test_two_agents_at_the_same_moment_make_one_request(
    tenant: Any, transactional_db: None
) -> None:
    agents = [portal_user(PERSONAS.agent), portal_user(PERSONAS.privileged_agent)]
    profile = target_profile(SAM)
    barrier = threading.Barrier(len(agents))
    outcomes: list[Any] = []

    def submit(agent: Any) -> None:
        try:
            barrier.wait()
            outcomes.append(
                action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=profile)
            )
        except Exception as exc:  # collected and checked below
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    made = [o for o in outcomes if isinstance(o, ActionRequest)]
    busy = [o for o in outcomes if isinstance(o, TargetBusy)]
    assert len(made) == 1 and len(busy) == 1, outcomes
    # Told at once (issue 10): either while the other was being recorded (no request to show
    # yet) or after, naming it.
    assert busy[0].existing is None or busy[0].existing.pk == made[0].pk
    assert ActionRequest.objects.count() == 1
    # Another family on the same person is not blocked.
    agent = agents[0]
    assert action_request_make(
        ActionKind.SET_MFA_STATE, agent=agent, profile=profile, params={"state": "enabled"}
    ).pk


@override_settings(PORTAL_AGENT_RATE_LIMIT=2)
def test_rate_limit_and_a_leads_override(tenant: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    lead = portal_user(PERSONAS.lead)
    other_agent = portal_user(PERSONAS.privileged_agent)
    sam = target_profile(SAM)
    action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent, profile=sam)
    action_request_make(
        ActionKind.SET_MFA_STATE, agent=agent, profile=sam, params={"state": "enforced"}
    )
    with pytest.raises(RateLimited) as refused:
        action_request_make(ActionKind.REREGISTER, agent=agent, profile=sam)
    assert (refused.value.count, refused.value.limit) == (2, 2)
    # Overrides are grants of a few requests (tests/mfa/test_rate_limit.py has the rules).
    with pytest.raises(NotAllowed):
        rate_override_grant(lead=other_agent, agent=agent, comment="incident")
    with pytest.raises(NotAllowed):
        rate_override_grant(lead=agent, agent=agent, comment="incident")
    rate_override_grant(lead=lead, agent=agent, comment="incident")
    row = action_request_make(ActionKind.REREGISTER, agent=agent, profile=sam)
    assert row.rate_override_by_id == lead.pk
    override = PortalEvent.objects.get(kind=PortalEvent.Kind.RATE_OVERRIDE, request=row.pk)
    assert override.actor_id == lead.pk and override.detail["agent"] == "Ada Agent"


def test_cancel_before_it_runs(tenant: Any) -> None:
    agent = portal_user(PERSONAS.privileged_agent)
    outsider = portal_user(PERSONAS.outsider)
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=agent, profile=target_profile(PRIYA)
    )
    with pytest.raises(NotAllowed):
        services.action_request_cancel(action_request=row, by=outsider)
    row = services.action_request_cancel(action_request=row, by=agent)
    assert row.status == Status.CANCELLED and row.open_slot is None
    with pytest.raises(InvalidRequest):
        services.action_request_cancel(action_request=row, by=agent)
