"""Directory role administration through the real HTTPS emulator, the real Graph client and a
real Celery worker: PIM eligibility with an end, group-held roles, approval and self-approval,
the last-Global-Administrator and last-PAA guards, drift found from a change made directly in the
emulator, and the tiering that follows Entra's.
"""

from __future__ import annotations

import time
from datetime import UTC, timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import DirectoryAuditRecord, PortalEvent
from entra_emulator.seed import GROUP_IDS, HELPDESK_STAFF_GROUP, ROLE_ASSIGNABLE_GROUP
from mfa import policy
from outbox.errors import InvalidRequest, NotAllowed
from outbox.states import Status
from portal.graph_client import get_graph_client
from roles import catalog, page, services, tiering
from roles.catalog import GLOBAL_ADMIN, PAA
from roles.forms import new_idempotency_key
from roles.holders import Holding, active_people, read_role, read_role_holders
from roles.models import HoldKind, RoleChange, RoleChangeRequest
from tests.personas import PERSONAS, portal_user
from tests.roles.role_changes import wait_final, wait_snapshot

pytestmark = pytest.mark.django_db(transaction=True)

AUTH_ADMIN = catalog.AUTH_ADMIN
AUTH_POLICY_ADMIN = catalog.AUTH_POLICY_ADMIN


def add(requester: Any, role: str, principal_id: str, kind: str, **extra: Any) -> Any:
    return services.role_change_create(
        requester=requester,
        change=RoleChange.ADD,
        role_name=role,
        principal_id=principal_id,
        principal_type=extra.pop("principal_type", "user"),
        hold_kind=kind,
        justification=extra.pop("justification", "Joins the identity operations rota."),
        ticket=extra.pop("ticket", "INC0012345"),
        idempotency_key=new_idempotency_key(),
        **extra,
    )


def remove(requester: Any, role: str, holding: Holding) -> RoleChangeRequest:
    return services.role_change_create(
        requester=requester,
        change=RoleChange.REMOVE,
        role_name=role,
        principal_id=holding.principal_id,
        principal_type=holding.principal_type,
        hold_kind=holding.how,
        justification="Left the team; access no longer needed.",
        ticket="",
        idempotency_key=new_idempotency_key(),
    )


def test_eligible_holder_with_an_end_date_is_made_through_pim(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    ends = timezone.now() + timedelta(days=10)
    row = add(ana, AUTH_ADMIN, sam.oid, HoldKind.ELIGIBLE_UNTIL, ends_at=ends)
    assert row.status == Status.PENDING and not row.needs_approval
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert row.graph_object_id

    # Entra (the emulator) holds the eligibility with its end, made by the portal's app.
    schedules = [
        s for s in fresh_tenant.tenant.eligibility_schedules.values() if s["principalId"] == sam.oid
    ]
    assert len(schedules) == 1
    assert schedules[0]["roleDefinitionId"] == catalog.role_template(AUTH_ADMIN)
    end_text = schedules[0]["scheduleInfo"]["expiration"]["endDateTime"]
    assert end_text.startswith(ends.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))

    # The holders read afterwards show it, with start and end, and warn that it ends soon.
    snapshot = services.role_holders_refresh_request(trigger="button", by=ana)
    holders = wait_snapshot(snapshot)
    holding = next(h for h in holders.of(AUTH_ADMIN) if h.principal_id == sam.oid)
    assert holding.how == "eligible" and holding.start is not None
    assert holding.end is not None and abs((holding.end - ends).total_seconds()) < 60
    _rows, warnings = page.role_rows(holders)
    assert any(w.code == "expiring" and "Sam Standard" in w.text for w in warnings)
    kinds = list(PortalEvent.objects.filter(target_id=sam.oid).values_list("kind", flat=True))
    assert PortalEvent.Kind.ROLE_CHANGE_REQUESTED in kinds
    assert PortalEvent.Kind.ROLE_CHANGE_SUCCEEDED in kinds


def test_group_held_role_expands_members_to_people(fresh_tenant: Any, celery_worker: Any) -> None:
    ana = portal_user(PERSONAS.admin)
    group_id = GROUP_IDS[ROLE_ASSIGNABLE_GROUP]
    members = sorted(fresh_tenant.tenant.group_members[group_id])
    assert members
    row = add(ana, AUTH_POLICY_ADMIN, group_id, HoldKind.ACTIVE_PERMANENT, principal_type="group")
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    assert row.principal_name == ROLE_ASSIGNABLE_GROUP

    holders = read_role_holders(get_graph_client())
    holding = next(h for h in holders.of(AUTH_POLICY_ADMIN) if h.principal_id == group_id)
    assert holding.is_group and holding.how == "active"
    assert sorted(m.id for m in holding.members) == members
    assert set(members) <= active_people(holders.of(AUTH_POLICY_ADMIN))

    # A group that is not role-assignable cannot be chosen.
    with pytest.raises(InvalidRequest, match="role-assignable"):
        add(
            ana,
            AUTH_ADMIN,
            GROUP_IDS[HELPDESK_STAFF_GROUP],
            HoldKind.ACTIVE_PERMANENT,
            principal_type="group",
        )


def test_granting_paa_needs_a_second_admin_and_self_approval_is_refused(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    ana = portal_user(PERSONAS.admin)
    abel = portal_user(PERSONAS.other_admin)
    lead = portal_user(PERSONAS.lead)
    sam = PERSONAS.standard_target
    row = add(
        ana, PAA, sam.oid, HoldKind.ELIGIBLE_UNTIL, ends_at=timezone.now() + timedelta(days=30)
    )
    assert row.status == Status.AWAITING_APPROVAL and row.needs_approval

    with pytest.raises(NotAllowed, match="your own change"):
        services.role_change_approve(role_change=row, approver=ana)
    with pytest.raises(NotAllowed, match="Admin"):
        services.role_change_approve(role_change=row, approver=lead)
    time.sleep(1.0)
    row.refresh_from_db()
    assert row.status == Status.AWAITING_APPROVAL  # nothing ran

    row = services.role_change_approve(role_change=row, approver=abel, comment="Agreed.")
    assert row.decided_by_name == "Abel Admin"
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    assert any(
        s["principalId"] == sam.oid
        for s in fresh_tenant.tenant.eligibility_schedules.values()
        if s["roleDefinitionId"] == catalog.role_template(PAA)
    )
    # Nobody changes their own roles through the portal, nor approves a change of them.
    with pytest.raises(NotAllowed, match="own directory roles"):
        add(ana, AUTH_ADMIN, PERSONAS.admin.oid, HoldKind.ACTIVE_PERMANENT)


def test_the_last_global_administrator_can_never_be_removed(
    fresh_tenant: Any, celery_worker: Any, settings: SettingsWrapper
) -> None:
    ana = portal_user(PERSONAS.admin)
    holdings = read_role(get_graph_client(), GLOBAL_ADMIN)
    assert len(holdings) == 2
    # Read-only by default: no change at all.
    with pytest.raises(NotAllowed, match="read-only"):
        remove(ana, GLOBAL_ADMIN, holdings[0])

    settings.ROLES_READ_ONLY = []
    first = remove(ana, GLOBAL_ADMIN, holdings[0])
    # While the first removal is open, the second is already refused: both would leave none.
    with pytest.raises(services.GuardRefused, match="last Global Administrator"):
        remove(ana, GLOBAL_ADMIN, holdings[1])
    first = wait_final(first)
    assert first.status == Status.SUCCEEDED, (first.error_code, first.error_message)
    with pytest.raises(services.GuardRefused, match="last Global Administrator"):
        remove(ana, GLOBAL_ADMIN, holdings[1])
    # Even read-only, the guard speaks first: the message says why, not just "read-only".
    settings.ROLES_READ_ONLY = [GLOBAL_ADMIN]
    with pytest.raises(services.GuardRefused):
        remove(ana, GLOBAL_ADMIN, holdings[1])
    assert len(read_role(get_graph_client(), GLOBAL_ADMIN)) == 1


def test_a_removal_leaving_no_active_paa_holder_is_refused(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    ana = portal_user(PERSONAS.admin)
    client = get_graph_client()
    holdings = read_role(client, PAA)
    active = [h for h in holdings if h.how == "active"]
    assert len(active) == 2
    aaron = next(h for h in active if h.principal_id == PERSONAS.privileged_agent.oid)
    other = next(h for h in active if h is not aaron)
    row = wait_final(remove(ana, PAA, aaron))
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    # An eligibility does not count: someone must be able to reset an admin's MFA right now.
    add(
        ana,
        PAA,
        PERSONAS.standard_target.oid,
        HoldKind.ELIGIBLE_UNTIL,
        ends_at=timezone.now() + timedelta(days=5),
    )
    with pytest.raises(services.GuardRefused, match="reset an administrator's MFA"):
        remove(ana, PAA, other)
    assert active_people(read_role(client, PAA)) == {other.principal_id}


def _direct_assignment_in_the_emulator(
    server: Any, *, as_user: str, role: str, principal: str
) -> None:
    """An assignment made in Entra directly (not through the portal), by a person signed in to
    Microsoft's own tools: a delegated token for ``as_user``."""
    user = server.tenant.users[as_user]
    token = server.tokens.issue_user_access_token(
        # A first-party admin tool (Azure PowerShell), not the portal.
        client_id="1950a258-227b-4e31-a9cf-717495945fc2",
        user=user,
        audience="https://graph.microsoft.com",
        scopes=["RoleManagement.ReadWrite.Directory"],
    )
    session = requests.Session()
    session.trust_env = False
    answer = session.post(
        f"{server.base_url.rstrip('/')}/v1.0/roleManagement/directory/roleAssignments",
        json={"roleDefinitionId": role, "principalId": principal, "directoryScopeId": "/"},
        headers={"Authorization": f"Bearer {token}"},
        verify=str(server.ca_path),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def test_drift_is_found_from_an_assignment_made_directly_in_the_emulator(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    from audit.sync import entra_audit_sync

    ana = portal_user(PERSONAS.admin)
    ga = read_role(get_graph_client(), GLOBAL_ADMIN)[0]
    ada = PERSONAS.agent
    _direct_assignment_in_the_emulator(
        fresh_tenant, as_user=ga.principal_id, role=catalog.role_template(PAA), principal=ada.oid
    )
    # And one change through the portal, which must not count as drift.
    portal_row = wait_final(
        add(ana, AUTH_ADMIN, PERSONAS.standard_target.oid, HoldKind.ACTIVE_PERMANENT)
    )
    assert portal_row.status == Status.SUCCEEDED

    entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    outside = DirectoryAuditRecord.objects.filter(
        activity="Add member to role", outside_portal=True, target_ids__isnull=False
    )
    assert any(ada.oid in (r.target_ids or []) for r in outside)

    holders = wait_snapshot(services.role_holders_refresh_request(trigger="button", by=ana))
    _rows, warnings = page.role_rows(holders)
    drift = [w for w in warnings if w.code == "outside_portal"]
    assert len(drift) == 1, warnings
    assert "Ada Agent" in drift[0].text and PAA in drift[0].text
    # The portal's own change was linked to Entra's event, and is not drift. A refresh links at
    # its end; the one the change itself queued may have ended before the sync above, so link
    # once more now (idempotent) rather than race it.
    services.role_changes_correlate()
    portal_row.refresh_from_db()
    assert len(portal_row.entra_event_ids) == 1
    linked = DirectoryAuditRecord.objects.get(entra_id=portal_row.entra_event_ids[0])
    assert linked.activity == "Add member to role" and not linked.outside_portal
    # Ada now holds PAA in the tenant, so the mirrored tiering lets her act on privileged people.
    assert tiering.agent_holds_paa(portal_user(ada), use_cache=False)


def test_tiering_follows_entra_and_blocks_approval_after_paa_is_lost(
    fresh_tenant: Any, celery_worker: Any, settings: SettingsWrapper
) -> None:
    from mfa import services as mfa_services
    from mfa.models import ActionKind, ActionRequest, Tier
    from tests.mfa.action_requests import action_request_make

    aaron = portal_user(PERSONAS.privileged_agent)
    ada = portal_user(PERSONAS.agent)
    lead = portal_user(PERSONAS.lead)
    ana = portal_user(PERSONAS.admin)
    assert tiering.agent_holds_paa(aaron) is True
    assert tiering.agent_holds_paa(ada) is False

    client = get_graph_client()
    priya = policy.target_profile(client, PERSONAS.privileged_target.oid, use_cache=False)
    sam = policy.target_profile(client, PERSONAS.standard_target.oid, use_cache=False)
    assert priya.privileged and not sam.privileged
    # Ada may not carry it out herself: every action is offered as an escalation.
    assert policy.allowed_actions(ada, priya) == list(ActionKind.values)
    assert ActionKind.REVOKE_SESSIONS in policy.allowed_actions(ada, sam)
    assert ActionKind.REVOKE_SESSIONS in policy.allowed_actions(aaron, priya)
    from mfa import escalations

    assert escalations.needs_escalation(ada, privileged=True)
    settings.PORTAL_MIRROR_ENTRA_TIERING = False
    assert ActionKind.REVOKE_SESSIONS in policy.allowed_actions(ada, priya)
    settings.PORTAL_MIRROR_ENTRA_TIERING = True

    pending = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=aaron,
        profile=priya,
        reason="Caller reports a stolen laptop.",
    )
    assert pending.status == Status.AWAITING_APPROVAL and pending.target_tier == Tier.PRIVILEGED

    # Aaron loses PAA (through the portal: the cache of his answer is dropped at once).
    holding = next(
        h for h in read_role(client, PAA) if h.principal_id == PERSONAS.privileged_agent.oid
    )
    assert wait_final(remove(ana, PAA, holding)).status == Status.SUCCEEDED
    assert tiering.agent_holds_paa(aaron) is False
    with pytest.raises(NotAllowed, match="no longer holds"):
        mfa_services.action_request_approve(action_request=pending, approver=lead, comment="ok")
    assert ActionRequest.objects.get(pk=pending.pk).status == Status.AWAITING_APPROVAL
    rejected = mfa_services.action_request_reject(
        action_request=pending, approver=lead, comment="Aaron no longer holds PAA."
    )
    assert rejected.status == Status.REJECTED


def test_a_graph_failure_fails_closed_for_tiering(fresh_tenant: Any) -> None:
    emulator_faults = fresh_tenant
    aaron = portal_user(PERSONAS.privileged_agent)
    assert tiering.agent_holds_paa(aaron, use_cache=False) is True
    emulator_faults.faults.add_fail_next(
        "GET", "roleManagement", 403, "Authorization_RequestDenied", "denied", count=5
    )
    # Graph refuses: the answer is "no" (and is not cached), never "yes".
    assert tiering.agent_holds_paa(aaron, use_cache=False) is False
    emulator_faults.faults.reset()
    assert tiering.agent_holds_paa(aaron) is True


def test_active_until_a_date_goes_through_pim_and_is_removed_with_admin_remove(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    from audit.sync import entra_audit_sync

    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    ends = timezone.now() + timedelta(days=9)
    row = wait_final(add(ana, AUTH_ADMIN, sam.oid, HoldKind.ACTIVE_UNTIL, ends_at=ends))
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert any("Active until" in (s.get("detail") or "") for s in row.steps), row.steps

    # Entra (the emulator) holds an active assignment that ends, made by a PIM adminAssign.
    tenant = fresh_tenant.tenant
    made = [a for a in tenant.role_assignments.values() if a["principalId"] == sam.oid]
    assert len(made) == 1
    end_text = made[0]["_scheduleInfo"]["expiration"]["endDateTime"]
    assert end_text.startswith(ends.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
    pim = [r for r in tenant.eligibility_requests.values() if r.get("_kind") == "active"]
    assert [(r["action"], r["principalId"]) for r in pim] == [("adminAssign", sam.oid)]
    assert row.graph_object_id == pim[0]["id"]

    # The holders show it active with its end and warn that it ends within 14 days; the
    # permanent assignments of the seed stay permanent.
    holders = wait_snapshot(services.role_holders_refresh_request(trigger="button", by=ana))
    holding = next(h for h in holders.of(AUTH_ADMIN) if h.principal_id == sam.oid)
    assert holding.how == "active" and holding.is_time_bound_active
    assert holding.end is not None and abs((holding.end - ends).total_seconds()) < 60
    assert all(h.end is None for h in holders.of(PAA) if h.how == "active")
    _rows, warnings = page.role_rows(holders)
    expiring = [w for w in warnings if w.code == "expiring"]
    assert len(expiring) == 1, warnings
    assert "Sam Standard's active assignment of Authentication Administrator" in expiring[0].text
    # Linked to Entra's PIM audit event, so it is not drift.
    entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    services.role_changes_correlate()
    row.refresh_from_db()
    # PIM's own event first, then the directory's, initiated by MS-PIM (tests/roles/
    # test_pim_attribution.py).
    assert len(row.entra_event_ids) == 2
    linked = DirectoryAuditRecord.objects.get(entra_id=row.entra_event_ids[0])
    assert linked.activity == "Add member to role in PIM completed (timebound)"
    assert not [w for w in page.role_rows(holders)[1] if w.code == "outside_portal"]

    # Removed through PIM (adminRemove), not by deleting the assignment.
    gone = wait_final(remove(ana, AUTH_ADMIN, holding))
    assert gone.status == Status.SUCCEEDED, (gone.error_code, gone.error_message, gone.steps)
    assert not [a for a in tenant.role_assignments.values() if a["principalId"] == sam.oid]
    pim = [r for r in tenant.eligibility_requests.values() if r.get("_kind") == "active"]
    assert sorted(r["action"] for r in pim) == ["adminAssign", "adminRemove"]
    removal = next(r for r in pim if r["action"] == "adminRemove")
    assert gone.graph_object_id == removal["id"] and removal["status"] == "Revoked"
    holders = read_role_holders(get_graph_client())
    assert not [h for h in holders.of(AUTH_ADMIN) if h.principal_id == sam.oid]


def test_an_assignment_made_again_directly_after_a_pim_removal_is_permanent(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    """The end of an active assignment comes from its principal's newest PIM request: after a
    PIM removal, an assignment made through roleAssignments has no end."""
    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    ends = timezone.now() + timedelta(days=40)
    assert (
        wait_final(add(ana, AUTH_ADMIN, sam.oid, HoldKind.ACTIVE_UNTIL, ends_at=ends)).status
        == Status.SUCCEEDED
    )
    client = get_graph_client()
    holding = next(h for h in read_role(client, AUTH_ADMIN) if h.principal_id == sam.oid)
    assert holding.end is not None
    # 40 days away: shown with its end, but no "ends soon" warning.
    holders = read_role_holders(client)
    assert not [w for w in page.role_rows(holders)[1] if w.code == "expiring"]
    assert wait_final(remove(ana, AUTH_ADMIN, holding)).status == Status.SUCCEEDED
    again = wait_final(add(ana, AUTH_ADMIN, sam.oid, HoldKind.ACTIVE_PERMANENT))
    assert again.status == Status.SUCCEEDED, (again.error_code, again.error_message)
    holding = next(h for h in read_role(client, AUTH_ADMIN) if h.principal_id == sam.oid)
    assert holding.how == "active" and holding.end is None and not holding.is_time_bound_active
