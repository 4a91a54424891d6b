"""Defect 6 of issue 11: PIM and the directory are asynchronous. A role change Graph accepted is
read back with backoff until it shows (a visible "Provisioning in Entra" step), never sent again,
up to ``ROLES_PROPAGATION_TIMEOUT_SECONDS``; past that it ends "not yet visible; check Entra".

The emulator's propagation delays (``server.set_propagation``) are on for these tests only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from outbox.states import Status
from roles import catalog
from roles.models import HoldKind
from tests.personas import PERSONAS, portal_user
from tests.roles.role_changes import wait_final
from tests.roles.test_role_services import add

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lagging(fresh_tenant: Any, settings: SettingsWrapper) -> Iterator[Any]:
    """The emulator with propagation switchable (switched off again after the test), and quick
    retries on the portal's side."""
    settings.PORTAL_RETRY_BACKOFF_SECONDS = 0.5
    try:
        yield fresh_tenant
    finally:
        fresh_tenant.set_propagation(
            pim_seconds=0, role_assignment_seconds=0, method_deletion_seconds=0
        )


def _texts(row: Any) -> list[str]:
    return [str(s["text"]) for s in row.steps]


def test_a_pim_assignment_is_polled_until_provisioned_and_sent_once(
    lagging: Any, celery_worker: Any
) -> None:
    lagging.set_propagation(pim_seconds=3)
    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    row = wait_final(
        add(
            ana,
            catalog.AUTH_ADMIN,
            sam.oid,
            HoldKind.ACTIVE_UNTIL,
            ends_at=timezone.now() + timedelta(days=9),
        ),
        timeout=90,
    )
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    texts = _texts(row)
    # The request was first pending in PIM, then provisioned: a visible provisioning step.
    assert any("PendingProvisioning" in (s.get("detail") or "") for s in row.steps), row.steps
    assert any(t.startswith("Provisioning in Entra") for t in texts), texts
    assert row.attempts >= 2
    # One adminAssign only: the polls never sent it again.
    tenant = lagging.tenant
    pim = [r for r in tenant.eligibility_requests.values() if r.get("_kind") == "active"]
    assert [(r["action"], r["principalId"]) for r in pim] == [("adminAssign", sam.oid)]
    assert pim[0]["status"] == "Provisioned" or pim[0].get("_finalStatus") == "Provisioned"
    assert row.graph_object_id == pim[0]["id"]


def test_a_direct_assignment_is_polled_until_the_directory_shows_it(
    lagging: Any, celery_worker: Any
) -> None:
    lagging.set_propagation(role_assignment_seconds=2)
    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    row = wait_final(add(ana, catalog.AUTH_ADMIN, sam.oid, HoldKind.ACTIVE_PERMANENT), timeout=90)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert any(t.startswith("Provisioning in Entra") for t in _texts(row)), row.steps
    made = [a for a in lagging.tenant.role_assignments.values() if a["principalId"] == sam.oid]
    assert len(made) == 1


def test_past_the_limit_the_change_says_it_is_not_visible_yet(
    lagging: Any, celery_worker: Any, settings: SettingsWrapper
) -> None:
    settings.ROLES_PROPAGATION_TIMEOUT_SECONDS = 2
    lagging.set_propagation(pim_seconds=60)
    ana = portal_user(PERSONAS.admin)
    sam = PERSONAS.standard_target
    row = wait_final(
        add(
            ana,
            catalog.AUTH_ADMIN,
            sam.oid,
            HoldKind.ACTIVE_UNTIL,
            ends_at=timezone.now() + timedelta(days=9),
        ),
        timeout=60,
    )
    assert row.status == Status.FAILED
    assert row.error_code == "NotYetVisible"
    assert "does not show it yet after" in row.error_message and "check Entra" in row.error_message
    assert any(t.startswith("Not yet visible after") for t in _texts(row)), row.steps
    pim = [r for r in lagging.tenant.eligibility_requests.values() if r.get("_kind") == "active"]
    assert len(pim) == 1  # never sent again


def test_the_emulator_answers_pending_provisioning_then_provisioned(lagging: Any) -> None:
    """The emulator side alone: the request is PendingProvisioning and its schedule absent until
    the delay has passed."""
    import time

    from tests.emulator.graph_caller import GraphCaller, app_token

    lagging.set_propagation(pim_seconds=1.5)
    graph = GraphCaller(lagging, app_token(lagging))
    base = "/roleManagement/directory"
    eligible = catalog.role_template(catalog.AUTH_POLICY_ADMIN)
    sam = PERSONAS.standard_target.oid
    answer = graph.post(
        f"{base}/roleEligibilityScheduleRequests",
        json={
            "action": "adminAssign",
            "roleDefinitionId": eligible,
            "principalId": sam,
            "directoryScopeId": "/",
            "justification": "test",
            "scheduleInfo": {
                "startDateTime": timezone.now().isoformat(),
                "expiration": {
                    "type": "afterDateTime",
                    "endDateTime": (timezone.now() + timedelta(days=3)).isoformat(),
                },
            },
        },
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "PendingProvisioning"
    filt = {"$filter": f"principalId eq '{sam}' and roleDefinitionId eq '{eligible}'"}
    assert graph.get(f"{base}/roleEligibilitySchedules", params=filt).json()["value"] == []
    time.sleep(1.7)
    assert len(graph.get(f"{base}/roleEligibilitySchedules", params=filt).json()["value"]) == 1
    request = graph.get(f"{base}/roleEligibilityScheduleRequests/{answer.json()['id']}").json()
    assert request["status"] == "Provisioned" and request["completedDateTime"]
