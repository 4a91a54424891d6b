"""The tenant's licence (free, P1, P2): without P2, every PIM API is refused as Entra refuses it.

Entra's answer for PIM in a tenant without Microsoft Entra ID P2: 400 AadPremiumLicenseRequired
(docs silent on the code; see entra_emulator/licensing.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from entra_emulator.licensing import PIM_REFUSAL_CODE, is_pim_path, licence_refusal
from entra_emulator.seed import PERSONAS
from entra_emulator.seed_security import HELPDESK_ADMINISTRATOR, USER_ADMINISTRATOR
from tests.emulator.graph_caller import GraphCaller, app_token

BASE = "/roleManagement/directory"
SAM = PERSONAS["sam.standard"]["id"]
PIM_READS = (
    f"{BASE}/roleEligibilitySchedules",
    f"{BASE}/roleEligibilityScheduleRequests",
    f"{BASE}/roleAssignmentScheduleRequests",
)


@pytest.fixture
def server(fresh_tenant: Any) -> Iterator[Any]:
    fresh_tenant.throttle.configure(enabled=False)
    try:
        yield fresh_tenant
    finally:
        # The emulator is shared by the test worker: always give it P2 back.
        fresh_tenant.set_licence("p2")


@pytest.fixture
def graph(server: Any) -> GraphCaller:
    return GraphCaller(server, app_token(server))


def test_pim_paths_are_recognised() -> None:
    for path in (
        f"{BASE}/roleEligibilitySchedules",
        f"{BASE}/roleEligibilitySchedules/abc",
        f"{BASE}/roleEligibilityScheduleRequests",
        f"{BASE}/roleEligibilityScheduleInstances",
        f"{BASE}/roleAssignmentSchedules",
        f"{BASE}/roleAssignmentScheduleInstances",
        f"{BASE}/roleAssignmentScheduleRequests/x",
        f"{BASE}/roleEligibilitySchedules/filterByCurrentUser(on='principal')",
        "/policies/roleManagementPolicies",
        "/policies/roleManagementPolicyAssignments",
    ):
        assert is_pim_path(path), path
    for path in (f"{BASE}/roleAssignments", f"{BASE}/roleDefinitions", "/users"):
        assert not is_pim_path(path), path
    assert licence_refusal("p2", f"{BASE}/roleEligibilitySchedules") is None
    assert licence_refusal("p1", f"{BASE}/roleAssignments") is None


def _pim_request(action: str = "adminAssign") -> dict[str, Any]:
    return {
        "action": action,
        "roleDefinitionId": USER_ADMINISTRATOR,
        "principalId": SAM,
        "directoryScopeId": "/",
        "justification": "Project cover",
        "scheduleInfo": {
            "startDateTime": datetime.now(UTC).isoformat(),
            "expiration": {"type": "noExpiration"},
        },
    }


@pytest.mark.parametrize("licence", ["free", "p1"])
def test_without_p2_every_pim_call_is_refused(
    server: Any, graph: GraphCaller, licence: str
) -> None:
    server.set_licence(licence)
    for path in PIM_READS:
        answer = graph.get(path, params={"$filter": f"principalId eq '{SAM}'"})
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == PIM_REFUSAL_CODE
        assert "P2" in error["message"]
        assert answer.headers.get("request-id")
    before = len(server.tenant.audit_events)
    for path in (
        f"{BASE}/roleEligibilityScheduleRequests",
        f"{BASE}/roleAssignmentScheduleRequests",
    ):
        answer = graph.post(path, json=_pim_request())
        assert answer.status_code == 400 and answer.json()["error"]["code"] == PIM_REFUSAL_CODE
    # Refused: nothing was written.
    assert len(server.tenant.audit_events) == before
    server.set_licence("p2")
    assert (
        graph.get(
            f"{BASE}/roleEligibilitySchedules", params={"$filter": f"principalId eq '{SAM}'"}
        ).json()["value"]
        == []
    )


@pytest.mark.parametrize("licence", ["free", "p1"])
def test_without_p2_active_role_assignments_still_answer(
    server: Any, graph: GraphCaller, licence: str
) -> None:
    server.set_licence(licence)
    listed = graph.get(f"{BASE}/roleAssignments", params={"$filter": f"principalId eq '{SAM}'"})
    assert listed.status_code == 200, listed.text
    created = graph.post(
        f"{BASE}/roleAssignments",
        json={
            "roleDefinitionId": HELPDESK_ADMINISTRATOR,
            "principalId": SAM,
            "directoryScopeId": "/",
        },
    )
    assert created.status_code == 201, created.text
    assert graph.get(f"{BASE}/roleDefinitions").status_code == 200


def test_pim_refused_inside_a_batch(server: Any, graph: GraphCaller) -> None:
    server.set_licence("p1")
    answer = graph.post(
        "/$batch",
        json={
            "requests": [
                {
                    "id": "1",
                    "method": "GET",
                    "url": f"{BASE}/roleEligibilitySchedules?$filter=principalId eq '{SAM}'",
                }
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    inner = answer.json()["responses"][0]
    assert inner["status"] == 400 and inner["body"]["error"]["code"] == PIM_REFUSAL_CODE


def test_p2_serves_pim(server: Any, graph: GraphCaller) -> None:
    server.set_licence("p2")
    answer = graph.get(f"{BASE}/roleEligibilitySchedules")
    assert answer.status_code == 200, answer.text
