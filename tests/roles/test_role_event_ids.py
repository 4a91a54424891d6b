"""Defect 4 of issue 11: Entra's role membership events name the *directoryRole object*, not the
role template, among their targets; the template id is in the member's ``Role.TemplateId``.

In a real tenant "Add member to role" looks like this (public samples of
``GET /auditLogs/directoryAudits``): the member first, with ``Role.ObjectID`` (the directoryRole's
own id), ``Role.DisplayName``, ``Role.TemplateId`` and ``Role.WellKnownObjectName`` among its
modified properties, then a ``Role`` target whose id is the directoryRole object id. Global
Administrator's object id and template id differ in every real tenant. The portal matched the
template id against the target ids, so a role change never linked to its event and a change made
outside the portal was never reported.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.correlation import explains
from audit.models import DirectoryAuditRecord
from audit.sources import PortalChange
from portal.graph_client import get_graph_client
from roles import catalog, page, services
from roles.catalog import GLOBAL_ADMIN, PAA
from roles.holders import read_role
from roles.models import HoldKind, RoleChange
from tests.personas import PERSONAS, portal_user
from tests.roles.role_changes import wait_final, wait_snapshot
from tests.roles.test_role_services import _direct_assignment_in_the_emulator, add

pytestmark = pytest.mark.django_db(transaction=True)

GA_TEMPLATE = "62e90394-69f5-4237-9190-012177145e10"
# A Global Administrator directoryRole object id of some tenant: not the template id.
GA_OBJECT = "a4d7c2e9-5b81-4f36-8c0a-3e9b1d6f7a25"
MEMBER = "e2b9c4f7-1a6d-4038-9e5b-d7a3f0c812e4"


def _real_shape_record(**overrides: Any) -> DirectoryAuditRecord:
    """An "Add member to role" record shaped as Entra writes it (not saved)."""
    raw = {
        "activityDisplayName": "Add member to role",
        "targetResources": [
            {
                "id": MEMBER,
                "type": "User",
                "modifiedProperties": [
                    {
                        "displayName": "Role.ObjectID",
                        "oldValue": None,
                        "newValue": f'"{GA_OBJECT}"',
                    },
                    {
                        "displayName": "Role.DisplayName",
                        "oldValue": None,
                        "newValue": '"Global Administrator"',
                    },
                    {
                        "displayName": "Role.TemplateId",
                        "oldValue": None,
                        "newValue": f'"{GA_TEMPLATE}"',
                    },
                    {
                        "displayName": "Role.WellKnownObjectName",
                        "oldValue": None,
                        "newValue": '"TenantAdmins"',
                    },
                ],
            },
            {"id": GA_OBJECT, "displayName": None, "type": "Role", "modifiedProperties": []},
        ],
    }
    fields: dict[str, Any] = {
        "entra_id": "Directory_test_1",
        "activity": "Add member to role",
        "activity_at": timezone.now(),
        "target_id": MEMBER,
        "target_ids": [MEMBER, GA_OBJECT],
        "initiated_by_kind": DirectoryAuditRecord.InitiatorKind.APP,
        "initiated_by_app_id": "x",
        "raw": raw,
        **overrides,
    }
    return DirectoryAuditRecord(**fields)


def test_the_rule_matches_the_template_in_role_template_id_not_the_role_target() -> None:
    record = _real_shape_record()
    change = PortalChange(
        pk=1,
        target_ids=frozenset({MEMBER, GA_TEMPLATE}),
        activities=frozenset({"Add member to role"}),
        started_at=timezone.now() - timedelta(minutes=1),
        finished_at=timezone.now(),
    )
    assert explains(change, record, client_id="x")
    # Another role's template is not named by the event.
    other = PortalChange(
        pk=2,
        target_ids=frozenset({MEMBER, catalog.role_template(PAA)}),
        activities=change.activities,
        started_at=change.started_at,
        finished_at=change.finished_at,
    )
    assert not explains(other, record, client_id="x")
    # Removals carry the role in the old values.
    removal = _real_shape_record(activity="Remove member from role")
    for prop in removal.raw["targetResources"][0]["modifiedProperties"]:
        prop["oldValue"], prop["newValue"] = prop["newValue"], None
    removing = PortalChange(
        pk=3,
        target_ids=change.target_ids,
        activities=frozenset({"Remove member from role"}),
        started_at=change.started_at,
        finished_at=change.finished_at,
    )
    assert explains(removing, removal, client_id="x")


def test_a_portal_change_links_and_an_outside_change_is_drift_with_real_role_ids(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    from audit.sync import entra_audit_sync

    ana = portal_user(PERSONAS.admin)
    ada, sam = PERSONAS.agent, PERSONAS.standard_target
    auth_admin = catalog.role_template(catalog.AUTH_ADMIN)
    paa = catalog.role_template(PAA)

    # Outside the portal (first, so that every read of the holders after it sees it): a
    # Global Administrator gives Ada PAA with Microsoft's own tools.
    ga = read_role(get_graph_client(), GLOBAL_ADMIN)[0]
    _direct_assignment_in_the_emulator(
        fresh_tenant, as_user=ga.principal_id, role=paa, principal=ada.oid
    )

    # Through the portal: a permanent assignment (roleAssignments, "Add member to role").
    row = wait_final(add(ana, catalog.AUTH_ADMIN, sam.oid, HoldKind.ACTIVE_PERMANENT))
    assert row.status == "succeeded", (row.error_code, row.steps)
    assert row.change == RoleChange.ADD
    entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    ours = DirectoryAuditRecord.objects.get(
        activity="Add member to role", target_id=sam.oid, activity_at__gte=row.started_at
    )
    # The Role target is the directoryRole object: an id of the tenant's own, not the template.
    role_target = next(t for t in ours.raw["targetResources"] if t["type"] == "Role")
    assert role_target["id"].lower() != auth_admin
    props = {
        p["displayName"]: p["newValue"]
        for p in ours.raw["targetResources"][0]["modifiedProperties"]
    }
    assert props["Role.TemplateId"] == f'"{auth_admin}"'
    assert props["Role.ObjectID"] == f'"{role_target["id"]}"'

    # The portal's change links to its event (and so is not "outside the portal").
    services.role_changes_correlate()
    row.refresh_from_db()
    assert ours.entra_id in row.entra_event_ids
    ours.refresh_from_db()
    assert not ours.outside_portal

    # The outside change is reported as drift, naming Ada and PAA.
    outside = DirectoryAuditRecord.objects.get(activity="Add member to role", target_id=ada.oid)
    assert outside.outside_portal
    assert paa not in {str(i).lower() for i in outside.target_ids}  # only in Role.TemplateId
    holders = wait_snapshot(services.role_holders_refresh_request(trigger="button", by=ana))
    _rows, warnings = page.role_rows(holders)
    drift = [w for w in warnings if w.code == "outside_portal"]
    assert len(drift) == 1, warnings
    assert "Ada Agent" in drift[0].text and PAA in drift[0].text
