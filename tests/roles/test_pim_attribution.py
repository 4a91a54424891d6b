"""Defect 5 of issue 11: for a change the portal makes through a PIM request, Entra writes two
events: PIM's "Add member to role in PIM completed (...)", initiated by the portal's app, and the
directory's own "Add member to role", initiated by the MS-PIM service. The second was flagged
"outside the portal"; it is the portal's change too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.correlation import explains
from audit.models import DirectoryAuditRecord
from roles import catalog, page, services
from roles.audit_sources import portal_change
from roles.models import HoldKind
from tests.personas import PERSONAS, portal_user
from tests.roles.role_changes import wait_final, wait_snapshot
from tests.roles.test_role_services import add, remove

pytestmark = pytest.mark.django_db(transaction=True)

# MS-PIM's well-known appId.
MS_PIM_APP_ID = "01fc33a7-78ba-4d2f-a4b7-768e336e890e"


def is_ms_pim(record: DirectoryAuditRecord) -> bool:
    return record.initiated_by_app_id == MS_PIM_APP_ID or record.initiated_by_name == "MS-PIM"


def test_both_events_of_a_pim_change_are_the_portals(fresh_tenant: Any, celery_worker: Any) -> None:
    from audit.sync import entra_audit_sync

    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    row = wait_final(
        add(
            ana,
            catalog.AUTH_ADMIN,
            sam.oid,
            HoldKind.ACTIVE_UNTIL,
            ends_at=timezone.now() + timedelta(days=9),
        )
    )
    assert row.status == "succeeded", (row.error_code, row.steps)

    entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    assert row.started_at is not None
    mine = [
        r
        for r in DirectoryAuditRecord.objects.filter(
            activity_at__gte=row.started_at - timedelta(minutes=1)
        )
        if sam.oid in (r.target_ids or [])
    ]
    by_pim = [r for r in mine if r.activity == "Add member to role"]
    completed = [r for r in mine if r.activity == "Add member to role in PIM completed (timebound)"]
    # The emulator writes both, as Entra does: the directory's one initiated by MS-PIM.
    assert len(by_pim) == 1 and len(completed) == 1, [r.activity for r in mine]
    assert is_ms_pim(by_pim[0])
    assert by_pim[0].raw["initiatedBy"]["app"]["appId"] == MS_PIM_APP_ID
    assert by_pim[0].raw["initiatedBy"]["app"]["displayName"] == "MS-PIM"
    # Neither is "outside the portal": the change explains both...
    for record in (*by_pim, *completed):
        record.refresh_from_db()
        assert not record.outside_portal, record.activity
        assert explains(portal_change(row), record)
    # ... and links both, PIM's own first.
    services.role_changes_correlate()
    row.refresh_from_db()
    assert row.entra_event_ids == [completed[0].entra_id, by_pim[0].entra_id]
    holders = wait_snapshot(services.role_holders_refresh_request(trigger="button", by=ana))
    assert not [w for w in page.role_rows(holders)[1] if w.code == "outside_portal"]

    # The removal through PIM (adminRemove) writes the pair again; both are the removal's.
    holding = next(h for h in holders.of(catalog.AUTH_ADMIN) if h.principal_id == sam.oid)
    gone = wait_final(remove(ana, catalog.AUTH_ADMIN, holding))
    assert gone.status == "succeeded", (gone.error_code, gone.steps)
    entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    (removal,) = [
        r
        for r in DirectoryAuditRecord.objects.filter(activity="Remove member from role")
        if sam.oid in (r.target_ids or [])
    ]
    assert is_ms_pim(removal) and not removal.outside_portal


def test_an_ms_pim_event_is_not_claimed_by_a_change_made_without_pim(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    """A permanent assignment goes through roleAssignments, not PIM: an MS-PIM "Add member to
    role" for the same person and role (someone's PIM request elsewhere) is not the portal's."""
    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    row = wait_final(add(ana, catalog.AUTH_ADMIN, sam.oid, HoldKind.ACTIVE_PERMANENT))
    assert row.status == "succeeded", (row.error_code, row.steps)
    template = catalog.role_template(catalog.AUTH_ADMIN)
    record = DirectoryAuditRecord(
        entra_id="Directory_ms_pim_elsewhere",
        activity="Add member to role",
        activity_at=row.finished_at or timezone.now(),
        target_id=sam.oid,
        target_ids=[sam.oid, "5b9a4c7e-0000-4000-8000-000000000001"],
        initiated_by_kind=DirectoryAuditRecord.InitiatorKind.APP,
        initiated_by_name="MS-PIM",
        initiated_by_app_id=MS_PIM_APP_ID,
        raw={
            "targetResources": [
                {
                    "id": sam.oid,
                    "modifiedProperties": [
                        {"displayName": "Role.TemplateId", "newValue": f'"{template}"'}
                    ],
                }
            ]
        },
    )
    assert not explains(portal_change(row), record)
