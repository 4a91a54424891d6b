"""The execution-time policy of both flows, on Entra as it is when the worker is about to write
(issue 10, point 2): the engine's return to approval (``NeedsApproval``), and each flow's
``check_before_write`` reading the requester's and the approver's portal roles, their accounts
and the target's tier afresh.

Run inline (``execute`` in the test) through the real emulator and Graph client. Changes to who
holds a portal role are made in the emulator's tenant, as an Entra admin would make them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from audit.models import PortalEvent
from mfa import services
from mfa.flow import ACTION_REQUESTS
from mfa.models import ActionKind, ActionRequest, Tier
from outbox import engine
from outbox.errors import NeedsApproval
from outbox.flow import Flow as EngineFlow
from outbox.states import Status
from roles import catalog
from roles import services as role_services
from roles.flow import ROLE_CHANGES
from roles.models import HoldKind, RoleChange, RoleChangeRequest
from tests.mfa.action_requests import action_request_make, emulator_audit, target_profile
from tests.outbox.flows import FLOWS, Flow
from tests.personas import PERSONAS, Persona, portal_user

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
K = PortalEvent.Kind


def _engine_flow(flow: Flow) -> EngineFlow[Any]:
    return ACTION_REQUESTS if flow.model is ActionRequest else ROLE_CHANGES


def _drop_portal_role(tenant: Any, persona: Persona) -> None:
    """An Entra admin takes the persona's app role on the portal away."""
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments.pop(persona.oid, None)


def _give_portal_role(tenant: Any, object_id: str, value: str) -> None:
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments.setdefault(object_id, set()).add(value)


# --- the engine: back to awaiting approval ----------------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
def test_needs_approval_puts_the_request_back_and_sends_nothing(
    flow: Flow, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook that raises NeedsApproval before the first write: the row waits for approval again
    with its decision cleared (the event keeps who had approved), the flow's columns in
    ``updates`` written, the journal kept, the step that was about to write closed, the
    ``<prefix>_returned_to_approval`` event saying why; the task ends quietly and Graph saw no
    write."""
    engine_flow = _engine_flow(flow)
    updates = {"target_tier": Tier.PRIVILEGED} if flow.model is ActionRequest else {}

    def refuse(run: engine.Run[Any]) -> None:
        raise NeedsApproval("Sam became privileged: an approval is needed.", updates=updates)

    monkeypatch.setattr(engine_flow, "check_before_write", refuse)
    before = flow.writes(tenant)
    row = flow.create()
    # As if a Lead had approved it before.
    approver = portal_user(PERSONAS.other_admin)
    flow.backdate(row.pk, decided_by=approver, decided_by_name="Abel Admin", decision_comment="ok")

    flow.execute(row.pk)  # returns: no Deferred, no exception
    row = flow.get(row.pk)

    assert row.status == Status.AWAITING_APPROVAL
    assert row.decided_by_id is None and row.decided_by_name == "" and row.decided_at is None
    assert row.decision_comment == "" and row.enqueued_at is None and row.open_slot
    assert row.pending_writes == {} and row.completed_writes == []
    for name, value in updates.items():
        assert getattr(row, name) == value
    assert not [s for s in row.steps if s["state"] == "running"], row.steps
    assert row.steps[-1]["state"] == "waiting" and "approval" in row.steps[-1]["text"]
    assert flow.writes(tenant) == before, "nothing may be sent before the new approval"
    [event] = flow.events(row, engine_flow.events.returned_to_approval)
    assert event.detail["why"] == "Sam became privileged: an approval is needed."
    assert event.detail["previous_approval"]["by"] == "Abel Admin"
    assert event.new_value == {"status": Status.AWAITING_APPROVAL}
    # Nothing more to claim until someone approves it again.
    flow.execute(row.pk)
    assert flow.get(row.pk).status == Status.AWAITING_APPROVAL


def test_the_flows_name_their_return_to_approval_events() -> None:
    assert ACTION_REQUESTS.events.returned_to_approval == K.ACTION_RETURNED_TO_APPROVAL
    assert ROLE_CHANGES.events.returned_to_approval == K.ROLE_CHANGE_RETURNED_TO_APPROVAL


# --- helpdesk actions --------------------------------------------------------------------------


def _revokes(tenant: Any, oid: str = SAM.oid) -> int:
    return len(emulator_audit(tenant, target_id=oid, activity_contains="StsRefreshToken"))


def test_a_requester_who_lost_their_portal_role_is_refused_when_the_worker_runs(
    tenant: Any,
) -> None:
    row = action_request_make(ActionKind.REVOKE_SESSIONS)
    assert row.status == Status.PENDING
    before = _revokes(tenant)
    _drop_portal_role(tenant, PERSONAS.agent)  # her session still says Agent

    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.FAILED and row.error_code == "PolicyRefused"
    assert "no longer holds a helpdesk role" in row.error_message
    assert _revokes(tenant) == before


def test_a_requester_whose_account_was_disabled_is_refused_when_the_worker_runs(
    tenant: Any,
) -> None:
    row = action_request_make(ActionKind.REVOKE_SESSIONS)
    before = _revokes(tenant)
    with tenant.tenant.lock:
        tenant.tenant.users[PERSONAS.agent.oid]["accountEnabled"] = False

    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.FAILED and row.error_code == "PolicyRefused"
    assert "disabled" in row.error_message
    assert _revokes(tenant) == before


def test_an_approval_that_no_longer_fits_the_target_goes_back_to_approval(tenant: Any) -> None:
    """Leo (a Lead) approved an action on Priya; before it runs Priya is made a Lead of the
    portal. An action on a Lead needs an Admin: back to approval, then Ana's approval runs it."""
    aaron = portal_user(PERSONAS.privileged_agent)  # holds PAA: may act on privileged people
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=aaron, profile=target_profile(PRIYA)
    )
    assert row.status == Status.AWAITING_APPROVAL
    row = services.action_request_approve(
        action_request=row, approver=portal_user(PERSONAS.lead), comment="Checked."
    )
    assert row.status == Status.PENDING
    before = _revokes(tenant, PRIYA.oid)
    _give_portal_role(tenant, PRIYA.oid, "Helpdesk.Lead")

    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.AWAITING_APPROVAL and row.decided_by_id is None
    assert _revokes(tenant, PRIYA.oid) == before
    assert {"role_name": "Portal role: Lead", "how": "app role", "portal_role": "Lead"} in (
        row.target_roles
    )
    [event] = PortalEvent.objects.filter(request=row.pk, kind=K.ACTION_RETURNED_TO_APPROVAL)
    assert "Leo Lead no longer fits" in event.detail["why"]
    assert "only an Admin" in event.detail["why"]
    # A Lead may no longer approve it; an Admin may, and then it runs.
    with pytest.raises(services.NotAllowed, match="only an Admin"):
        services.action_request_approve(
            action_request=row, approver=portal_user(PERSONAS.other_lead), comment="ok"
        )
    services.action_request_approve(
        action_request=row, approver=portal_user(PERSONAS.admin), comment="Checked again."
    )
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    assert _revokes(tenant, PRIYA.oid) == before + 1


# --- role changes ------------------------------------------------------------------------------


def _pra_for_leo() -> RoleChangeRequest:
    """Ana asks for Privileged Role Administrator for Leo: it waits for a second Admin."""
    row = role_services.role_change_create(
        requester=portal_user(PERSONAS.admin),
        change=RoleChange.ADD,
        role_name=catalog.PRA,
        principal_id=PERSONAS.lead.oid,
        principal_type="user",
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Covers role administration during the audit.",
        ticket="REQ-4567",
        idempotency_key=uuid.uuid4().hex,
    )
    assert row.status == Status.AWAITING_APPROVAL
    return row


def _pra_held_by_leo(tenant: Any) -> bool:
    template = catalog.role_template(catalog.PRA)
    with tenant.tenant.lock:
        return any(
            a.get("principalId") == PERSONAS.lead.oid and a.get("roleDefinitionId") == template
            for a in tenant.tenant.role_assignments.values()
        )


def test_a_role_change_whose_requester_is_no_longer_an_admin_is_refused(tenant: Any) -> None:
    row = _pra_for_leo()
    row = role_services.role_change_approve(
        role_change=row, approver=portal_user(PERSONAS.other_admin), comment="Agreed."
    )
    _drop_portal_role(tenant, PERSONAS.admin)

    role_services.role_change_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.FAILED and row.error_code == "GuardRefused"
    assert "no longer holds the portal role Admin" in row.error_message
    assert not _pra_held_by_leo(tenant)


def test_a_role_change_whose_approver_is_no_longer_an_admin_goes_back_to_approval(
    tenant: Any,
) -> None:
    row = _pra_for_leo()
    row = role_services.role_change_approve(
        role_change=row, approver=portal_user(PERSONAS.other_admin), comment="Agreed."
    )
    _drop_portal_role(tenant, PERSONAS.other_admin)

    role_services.role_change_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.AWAITING_APPROVAL and row.decided_by_id is None
    assert not _pra_held_by_leo(tenant)
    [event] = [
        e
        for e in PortalEvent.objects.filter(kind=K.ROLE_CHANGE_RETURNED_TO_APPROVAL)
        if e.detail.get("role_change_id") == row.pk
    ]
    assert "Abel Admin no longer holds the portal role Admin" in event.detail["why"]
