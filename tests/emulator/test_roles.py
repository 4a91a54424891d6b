"""Directory roles: definitions, assignments (users and role-assignable groups), PIM requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entra_emulator.graph_core import GraphHttpError
from entra_emulator.roles_api import assignment_id, normalise_schedule, schedule_end
from entra_emulator.seed import GROUP_IDS, PERSONAS, PROTECTED_GROUP, ROLE_ASSIGNABLE_GROUP
from entra_emulator.seed_security import (
    AUTHENTICATION_ADMINISTRATOR,
    HELPDESK_ADMINISTRATOR,
    PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
    SECURITY_ADMINISTRATOR,
    USER_ADMINISTRATOR,
)
from tests.emulator.graph_caller import GraphCaller, app_token

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SAM = PERSONAS["sam.standard"]["id"]
AARON = PERSONAS["aaron.agent"]["id"]
BASE = "/roleManagement/directory"


def test_assignment_ids_look_like_entras() -> None:
    first = assignment_id(HELPDESK_ADMINISTRATOR, SAM)
    assert first.endswith("-1") and len(first) == 46
    assert first == assignment_id(HELPDESK_ADMINISTRATOR, SAM)
    assert first != assignment_id(HELPDESK_ADMINISTRATOR, AARON)


def test_schedules_are_validated_and_their_end_computed() -> None:
    info, end = normalise_schedule(
        {
            "startDateTime": NOW.isoformat(),
            "expiration": {"type": "afterDuration", "duration": "PT8H"},
        },
        NOW,
    )
    assert end == NOW + timedelta(hours=8) and schedule_end(info) == end
    info, end = normalise_schedule(None, NOW)
    assert end is None and info["expiration"]["type"] == "noExpiration"
    for bad in (
        {"expiration": {"type": "afterDateTime"}},
        {
            "expiration": {
                "type": "afterDateTime",
                "endDateTime": (NOW - timedelta(days=1)).isoformat(),
            }
        },
        {"expiration": {"type": "afterDuration", "duration": "eight hours"}},
        {"expiration": {"type": "sometimes"}},
    ):
        with pytest.raises(GraphHttpError):
            normalise_schedule(bad, NOW)


@pytest.fixture
def server(fresh_tenant: Any) -> Any:
    fresh_tenant.throttle.configure(enabled=False)
    return fresh_tenant


@pytest.fixture
def graph(server: Any) -> GraphCaller:
    return GraphCaller(server, app_token(server))


def test_role_definitions_filter_by_id_not_by_template_id(graph: GraphCaller) -> None:
    # unifiedRoleDefinition supports $filter on id, displayName and isBuiltIn only
    # (learn.microsoft.com/graph/api/resources/unifiedroledefinition): templateId is refused.
    refused = graph.get(
        f"{BASE}/roleDefinitions",
        params={"$filter": f"templateId eq '{PRIVILEGED_AUTHENTICATION_ADMINISTRATOR}'"},
    )
    assert refused.status_code == 400, refused.text
    assert "templateId" in refused.json()["error"]["message"]
    answer = graph.get(
        f"{BASE}/roleDefinitions",
        params={"$filter": f"id eq '{PRIVILEGED_AUTHENTICATION_ADMINISTRATOR}'"},
    )
    assert answer.status_code == 200, answer.text
    [definition] = answer.json()["value"]
    assert definition["displayName"] == "Privileged Authentication Administrator"
    assert definition["id"] == PRIVILEGED_AUTHENTICATION_ADMINISTRATOR
    by_name = graph.get(
        f"{BASE}/roleDefinitions", params={"$filter": "displayName eq 'Helpdesk Administrator'"}
    )
    assert [d["id"] for d in by_name.json()["value"]] == [HELPDESK_ADMINISTRATOR]
    assert graph.get(f"{BASE}/roleDefinitions/{HELPDESK_ADMINISTRATOR}").status_code == 200


def test_role_holders_expand_to_users_and_groups(graph: GraphCaller) -> None:
    holders = graph.get(
        f"{BASE}/roleAssignments",
        params={
            "$filter": f"roleDefinitionId eq '{PRIVILEGED_AUTHENTICATION_ADMINISTRATOR}'",
            "$expand": "principal",
        },
    ).json()["value"]
    principals = {h["principal"]["id"]: h["principal"] for h in holders}
    assert AARON in principals
    assert principals[AARON]["@odata.type"] == "#microsoft.graph.user"
    group_id = GROUP_IDS[ROLE_ASSIGNABLE_GROUP]
    via_group_all = graph.get(
        f"{BASE}/roleAssignments",
        params={"$filter": f"principalId eq '{group_id}'", "$expand": "principal"},
    ).json()["value"]
    assert {a["roleDefinitionId"] for a in via_group_all} == {
        SECURITY_ADMINISTRATOR,
        AUTHENTICATION_ADMINISTRATOR,
    }
    via_group = via_group_all[0]
    assert via_group["principal"]["@odata.type"] == "#microsoft.graph.group"
    assert via_group["principal"]["isAssignableToRole"] is True


def test_assign_and_remove_a_role(server: Any, graph: GraphCaller) -> None:
    body = {"roleDefinitionId": HELPDESK_ADMINISTRATOR, "principalId": SAM, "directoryScopeId": "/"}
    created = graph.post(f"{BASE}/roleAssignments", json=body)
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    duplicate = graph.post(f"{BASE}/roleAssignments", json=body)
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["code"] == "Request_BadRequest"
    listed = graph.get(
        f"{BASE}/roleAssignments", params={"$filter": f"principalId eq '{SAM}'"}
    ).json()["value"]
    assert [a["id"] for a in listed] == [new_id]
    assert graph.delete(f"{BASE}/roleAssignments/{new_id}").status_code == 204
    assert graph.get(f"{BASE}/roleAssignments/{new_id}").status_code == 404
    assert graph.delete(f"{BASE}/roleAssignments/{new_id}").status_code == 404
    activities = [e["activityDisplayName"] for e in server.tenant.audit_events[-2:]]
    assert activities == ["Add member to role", "Remove member from role"]
    added = server.tenant.audit_events[-2]
    assert added["category"] == "RoleManagement"
    assert added["targetResources"][0]["id"] == SAM
    assert added["initiatedBy"]["app"]["appId"]


def test_assignments_refuse_unknown_roles_and_plain_groups(graph: GraphCaller) -> None:
    unknown_role = graph.post(
        f"{BASE}/roleAssignments",
        json={
            "roleDefinitionId": "00000000-0000-0000-0000-000000000001",
            "principalId": SAM,
            "directoryScopeId": "/",
        },
    )
    assert unknown_role.status_code == 404
    plain_group = graph.post(
        f"{BASE}/roleAssignments",
        json={
            "roleDefinitionId": HELPDESK_ADMINISTRATOR,
            "principalId": GROUP_IDS[PROTECTED_GROUP],
            "directoryScopeId": "/",
        },
    )
    assert plain_group.status_code == 400
    no_scope = graph.post(
        f"{BASE}/roleAssignments",
        json={"roleDefinitionId": HELPDESK_ADMINISTRATOR, "principalId": SAM},
    )
    assert no_scope.status_code == 400


def test_eligibility_requests_create_and_remove_schedules(server: Any, graph: GraphCaller) -> None:
    end = datetime.now(UTC) + timedelta(days=30)
    request = {
        "action": "adminAssign",
        "roleDefinitionId": USER_ADMINISTRATOR,
        "principalId": SAM,
        "directoryScopeId": "/",
        "justification": "Project cover",
        "scheduleInfo": {
            "startDateTime": datetime.now(UTC).isoformat(),
            "expiration": {"type": "afterDateTime", "endDateTime": end.isoformat()},
        },
    }
    created = graph.post(f"{BASE}/roleEligibilityScheduleRequests", json=request)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "Provisioned"
    schedules = graph.get(
        f"{BASE}/roleEligibilitySchedules",
        params={"$filter": f"principalId eq '{SAM}'", "$expand": "principal"},
    ).json()["value"]
    assert len(schedules) == 1
    assert schedules[0]["scheduleInfo"]["expiration"]["type"] == "afterDateTime"
    assert schedules[0]["principal"]["userPrincipalName"] == PERSONAS["sam.standard"]["upn"]
    again = graph.post(f"{BASE}/roleEligibilityScheduleRequests", json=request)
    assert again.status_code == 400 and again.json()["error"]["code"] == "RoleAssignmentExists"

    removed = graph.post(
        f"{BASE}/roleEligibilityScheduleRequests", json={**request, "action": "adminRemove"}
    )
    assert removed.status_code == 201 and removed.json()["status"] == "Revoked"
    assert (
        graph.get(
            f"{BASE}/roleEligibilitySchedules", params={"$filter": f"principalId eq '{SAM}'"}
        ).json()["value"]
        == []
    )
    missing = graph.post(
        f"{BASE}/roleEligibilityScheduleRequests", json={**request, "action": "adminRemove"}
    )
    assert missing.json()["error"]["code"] == "RoleAssignmentDoesNotExist"
    activities = [e["activityDisplayName"] for e in server.tenant.audit_events[-2:]]
    assert activities == [
        "Add eligible member to role in PIM completed (timebound)",
        "Remove eligible member from role in PIM completed (timebound)",
    ]
    assert server.tenant.audit_events[-1]["loggedByService"] == "PIM"


def test_seeded_eligibility_and_time_bound_active_assignment(graph: GraphCaller) -> None:
    seeded = graph.get(f"{BASE}/roleEligibilitySchedules").json()["value"]
    assert any(s["scheduleInfo"]["expiration"]["endDateTime"] for s in seeded)
    end = datetime.now(UTC) + timedelta(hours=4)
    body = {
        "action": "adminAssign",
        "roleDefinitionId": HELPDESK_ADMINISTRATOR,
        "principalId": SAM,
        "directoryScopeId": "/",
        "scheduleInfo": {"expiration": {"type": "afterDateTime", "endDateTime": end.isoformat()}},
    }
    refused = graph.post(f"{BASE}/roleAssignmentScheduleRequests", json=body)
    assert refused.json()["error"]["code"] == "RoleAssignmentRequestPolicyValidationFailed"
    created = graph.post(
        f"{BASE}/roleAssignmentScheduleRequests", json={**body, "justification": "Incident 42"}
    )
    assert created.status_code == 201, created.text
    active = graph.get(
        f"{BASE}/roleAssignments", params={"$filter": f"principalId eq '{SAM}'"}
    ).json()["value"]
    assert [a["roleDefinitionId"] for a in active] == [HELPDESK_ADMINISTRATOR]
    assert "_scheduleInfo" not in active[0]
