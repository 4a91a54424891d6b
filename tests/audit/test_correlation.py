"""Linking Entra's audit events to portal requests, and marking changes made outside the portal.

Requests are made and run through mfa.services against the real emulator; Entra's events come
back through the real sync.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit import sync
from audit.correlation import SESSIONS_REVOKED, correlate_period, is_role_membership
from audit.models import DirectoryAuditRecord
from graph import BudgetRate, GraphClient
from graph import roles as graph_roles
from graph import sessions as graph_sessions
from mfa import services
from mfa.models import ActionKind, ActionRequest, Status
from portal.graph_client import get_graph_client, graph_config_from_settings
from tests.emulator.graph_caller import GraphCaller, delegated_token
from tests.mfa.action_requests import action_request_make, new_key
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target
AARON = PERSONAS.privileged_agent


@pytest.fixture
def client() -> GraphClient:
    config = dataclasses.replace(
        graph_config_from_settings(),
        budgets={"reports": BudgetRate(1000, 1), "identity": BudgetRate(1000, 1)},
        budget_prefix="graph:budget:audit-tests",
    )
    return GraphClient(config).with_priority("sync")


def _run_request(kind: str, **params: Any) -> ActionRequest:
    """Make a request as Ada through mfa.services and run it here (no worker needed)."""
    row = action_request_make(kind, params=params)
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    return row


def _recent(client: GraphClient) -> sync.SyncResult:
    return sync.entra_audit_sync(client=client, since=timezone.now() - timedelta(hours=1))


def _sessions_revoked_on_sam() -> list[DirectoryAuditRecord]:
    return list(
        DirectoryAuditRecord.objects.filter(
            activity=SESSIONS_REVOKED,
            target_id=SAM.oid,
            activity_at__gte=timezone.now() - timedelta(hours=1),
        ).order_by("activity_at")
    )


def test_entra_events_of_a_portal_request_are_linked_to_it(
    tenant: Any, client: GraphClient
) -> None:
    revoke = _run_request(ActionKind.REVOKE_SESSIONS)
    reregister = _run_request(ActionKind.REREGISTER)
    result = _recent(client)

    (sessions,) = _sessions_revoked_on_sam()
    assert sessions.action_request_id == revoke.pk and not sessions.outside_portal
    assert sessions.initiated_by_kind == "app"
    removed = list(DirectoryAuditRecord.objects.filter(action_request=reregister))
    # One "Admin deleted security info" per method the request removed, all linked to it.
    assert len(removed) == len(reregister.result["removed"]) >= 2
    assert {r.activity for r in removed} == {"Admin deleted security info"}
    assert not any(r.outside_portal for r in removed)
    assert result.linked == 1 + len(removed)


def test_change_made_directly_in_entra_is_outside_the_portal(
    tenant: Any, client: GraphClient
) -> None:
    # Aaron (a Privileged Authentication Administrator) revokes Sam's sessions with his own
    # delegated token, not through the portal.
    token = delegated_token(tenant, AARON.oid, ["User.ReadWrite.All"])
    answer = GraphCaller(tenant, token).post(f"/users/{SAM.oid}/revokeSignInSessions")
    assert answer.status_code in (200, 204), answer.text
    _recent(client)

    (record,) = _sessions_revoked_on_sam()
    assert record.initiated_by_kind == "user" and record.initiated_by_id == AARON.oid
    assert record.outside_portal and record.action_request_id is None


def test_portal_app_change_without_a_request_is_outside_the_portal(
    tenant: Any, client: GraphClient
) -> None:
    # The portal's own credentials, but no portal request behind the call.
    graph_sessions.revoke_sign_in_sessions(get_graph_client(), SAM.oid)
    _recent(client)
    (record,) = _sessions_revoked_on_sam()
    assert record.initiated_by_kind == "app" and record.outside_portal


def test_event_outside_the_requests_time_window_is_not_linked(
    tenant: Any, client: GraphClient
) -> None:
    revoke = _run_request(ActionKind.REVOKE_SESSIONS)
    # Pretend the request ran three hours ago: today's event cannot be its record.
    earlier = timezone.now() - timedelta(hours=3)
    ActionRequest.objects.filter(pk=revoke.pk).update(
        started_at=earlier, finished_at=earlier + timedelta(minutes=1)
    )
    _recent(client)
    (record,) = _sessions_revoked_on_sam()
    assert record.action_request_id is None and record.outside_portal

    # Put the times back: correlating the period again links it (idempotent, deterministic).
    ActionRequest.objects.filter(pk=revoke.pk).update(
        started_at=revoke.started_at, finished_at=revoke.finished_at
    )
    again = correlate_period(since=timezone.now() - timedelta(hours=1))
    record.refresh_from_db()
    assert record.action_request_id == revoke.pk and not record.outside_portal
    assert again.linked == 1


def test_request_of_another_kind_does_not_claim_the_event(tenant: Any, client: GraphClient) -> None:
    # A TAP was issued through the portal; sessions were revoked directly: only the TAP's
    # "Admin registered security info" belongs to the request.
    tap = _run_request(ActionKind.ISSUE_TAP, lifetime_minutes=60, usable_once=True)
    graph_sessions.revoke_sign_in_sessions(get_graph_client(), SAM.oid)
    _recent(client)
    assert {r.activity for r in DirectoryAuditRecord.objects.filter(action_request=tap)} == {
        "Admin registered security info"
    }
    (sessions,) = _sessions_revoked_on_sam()
    assert sessions.outside_portal


def test_self_service_and_seeded_history_are_classified(tenant: Any, client: GraphClient) -> None:
    sync.entra_audit_sync(client=client, since=timezone.now() - timedelta(days=60))
    own = DirectoryAuditRecord.objects.filter(activity="User registered security info")
    assert own.exists() and not own.filter(outside_portal=True).exists()
    # Role membership changes (direct and PIM), made by an admin in Entra.
    roles = DirectoryAuditRecord.objects.filter(category="RoleManagement")
    assert roles.exists() and all(is_role_membership(r.activity) for r in roles)
    assert not roles.filter(outside_portal=False).exists()
    # The seeded helpdesk history predates the portal's database: nothing explains it.
    admin = DirectoryAuditRecord.objects.filter(activity="Admin deleted security info")
    assert admin.exists() and all(r.outside_portal for r in admin)


HELPDESK_ADMIN_TEMPLATE = "729827e3-9c14-49f7-bb1b-9608f156bbb8"


def test_role_change_made_through_the_portal_is_not_outside(
    tenant: Any, client: GraphClient
) -> None:
    from roles.models import RoleChangeRequest

    graph = get_graph_client()
    definition = graph_roles.get_role_definition_by_template(graph, HELPDESK_ADMIN_TEMPLATE)
    assert definition is not None
    # The portal's role change (row made directly: only its principal, role and run times
    # matter here), then the Graph call it made, then one made by the same app with no row.
    started = timezone.now()
    graph_roles.create_role_assignment(
        graph, role_definition_id=definition.id, principal_id=SAM.oid
    )
    RoleChangeRequest.objects.create(
        change="add",
        status=Status.SUCCEEDED,
        role_template_id=HELPDESK_ADMIN_TEMPLATE,
        role_name="Helpdesk Administrator",
        principal_id=SAM.oid,
        principal_type="user",
        principal_name=SAM.display_name,
        hold_kind="active_permanent",
        justification="Covering the service desk rota",
        requester=portal_user(PERSONAS.admin),
        requester_name="Ana Admin",
        idempotency_key=new_key(),
        started_at=started,
        finished_at=timezone.now(),
    )
    other = PERSONAS.agent.oid
    graph_roles.create_role_assignment(graph, role_definition_id=definition.id, principal_id=other)
    _recent(client)

    assert not _role_added(SAM.oid, started).outside_portal
    assert _role_added(other, started).outside_portal


def _role_added(principal: str, since: Any) -> DirectoryAuditRecord:
    (record,) = [
        r
        for r in DirectoryAuditRecord.objects.filter(
            activity="Add member to role", activity_at__gte=since
        )
        if principal in r.target_ids
    ]
    return record
