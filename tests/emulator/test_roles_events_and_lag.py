"""The emulator's role events in Entra's shape (directoryRole object ids, Role.TemplateId, the
MS-PIM event of a PIM-made assignment) and its read-after-write lag of role assignments and
method deletions (``Tenant.propagation``), read through Graph as the portal reads it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entra_emulator.roles_events import MS_PIM_APP_ID, directory_role_id
from entra_emulator.seed import PERSONAS
from entra_emulator.seed_security import AUTHENTICATION_ADMINISTRATOR, GLOBAL_ADMINISTRATOR
from tests.emulator.graph_caller import GraphCaller, app_token

SAM = PERSONAS["sam.standard"]["id"]
BASE = "/roleManagement/directory"


@pytest.fixture
def server(fresh_tenant: Any) -> Iterator[Any]:
    fresh_tenant.throttle.configure(enabled=False)
    try:
        yield fresh_tenant
    finally:
        fresh_tenant.set_propagation(
            pim_seconds=0, role_assignment_seconds=0, method_deletion_seconds=0
        )


@pytest.fixture
def graph(server: Any) -> GraphCaller:
    return GraphCaller(server, app_token(server))


def _events(server: Any, since: int) -> list[dict[str, Any]]:
    with server.tenant.lock:
        return list(server.tenant.audit_events[since:])


def test_directory_role_object_ids_are_not_template_ids(server: Any) -> None:
    definitions = server.tenant.role_definitions
    for template in (GLOBAL_ADMINISTRATOR, AUTHENTICATION_ADMINISTRATOR):
        assert directory_role_id(definitions[template]) != template


def test_add_member_to_role_names_the_directory_role_and_the_template(
    server: Any, graph: GraphCaller
) -> None:
    start = len(server.tenant.audit_events)
    body = {"roleDefinitionId": AUTHENTICATION_ADMINISTRATOR, "principalId": SAM}
    made = graph.post(f"{BASE}/roleAssignments", json={**body, "directoryScopeId": "/"})
    assert made.status_code == 201, made.text
    assert graph.delete(f"{BASE}/roleAssignments/{made.json()['id']}").status_code == 204
    added, removed = _events(server, start)
    object_id = directory_role_id(server.tenant.role_definitions[AUTHENTICATION_ADMINISTRATOR])
    for event, values in ((added, "newValue"), (removed, "oldValue")):
        member, role = event["targetResources"]
        assert member["id"] == SAM and role == {**role, "id": object_id, "type": "Role"}
        props = {p["displayName"]: p[values] for p in member["modifiedProperties"]}
        assert props["Role.ObjectID"] == f'"{object_id}"'
        assert props["Role.TemplateId"] == f'"{AUTHENTICATION_ADMINISTRATOR}"'
        assert props["Role.DisplayName"] == '"Authentication Administrator"'
        assert "Role.WellKnownObjectName" in props
    assert [e["activityDisplayName"] for e in (added, removed)] == [
        "Add member to role",
        "Remove member from role",
    ]


def test_a_pim_active_assignment_writes_the_ms_pim_event_too(
    server: Any, graph: GraphCaller
) -> None:
    start = len(server.tenant.audit_events)
    end = datetime.now(UTC) + timedelta(days=2)
    answer = graph.post(
        f"{BASE}/roleAssignmentScheduleRequests",
        json={
            "action": "adminAssign",
            "roleDefinitionId": AUTHENTICATION_ADMINISTRATOR,
            "principalId": SAM,
            "directoryScopeId": "/",
            "justification": "test",
            "scheduleInfo": {
                "startDateTime": datetime.now(UTC).isoformat(),
                "expiration": {"type": "afterDateTime", "endDateTime": end.isoformat()},
            },
        },
    )
    assert answer.status_code == 201, answer.text
    by_directory, by_pim = _events(server, start)
    assert by_directory["activityDisplayName"] == "Add member to role"
    assert by_directory["loggedByService"] == "Core Directory"
    assert by_directory["initiatedBy"]["app"]["appId"] == MS_PIM_APP_ID
    assert by_directory["initiatedBy"]["app"]["displayName"] == "MS-PIM"
    assert by_pim["activityDisplayName"] == "Add member to role in PIM completed (timebound)"
    assert by_pim["loggedByService"] == "PIM"
    assert by_pim["initiatedBy"]["app"]["appId"] != MS_PIM_APP_ID


def test_a_role_assignment_shows_and_goes_only_after_the_directory_delay(
    server: Any, graph: GraphCaller
) -> None:
    server.set_propagation(role_assignment_seconds=1.5)
    made = graph.post(
        f"{BASE}/roleAssignments",
        json={
            "roleDefinitionId": AUTHENTICATION_ADMINISTRATOR,
            "principalId": SAM,
            "directoryScopeId": "/",
        },
    )
    assert made.status_code == 201, made.text
    filt = {"$filter": f"principalId eq '{SAM}'"}

    def listed() -> bool:
        items = graph.get(f"{BASE}/roleAssignments", params=filt).json()["value"]
        return any(a["id"] == made.json()["id"] for a in items)

    assert not listed()
    time.sleep(1.7)
    assert listed()
    assert graph.delete(f"{BASE}/roleAssignments/{made.json()['id']}").status_code == 204
    assert listed()  # still read for a while...
    assert graph.delete(f"{BASE}/roleAssignments/{made.json()['id']}").status_code == 404
    time.sleep(1.7)
    assert not listed()  # ... then gone


def test_a_deleted_method_is_still_listed_for_the_delay(server: Any, graph: GraphCaller) -> None:
    server.set_propagation(method_deletion_seconds=1.5)
    methods = graph.get(f"/users/{SAM}/authentication/methods").json()["value"]
    phone = next(m for m in methods if m["@odata.type"].endswith("phoneAuthenticationMethod"))
    path = f"/users/{SAM}/authentication/phoneMethods/{phone['id']}"
    assert graph.delete(path).status_code == 204

    def ids() -> set[str]:
        return {m["id"] for m in graph.get(f"/users/{SAM}/authentication/methods").json()["value"]}

    assert phone["id"] in ids()
    assert graph.get(path).status_code == 200
    assert graph.delete(path).status_code == 404  # writes see the truth at once
    time.sleep(1.7)
    assert phone["id"] not in ids()
