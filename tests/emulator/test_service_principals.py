"""The portal's service principal: its app roles, and who holds them (appRoleAssignedTo)."""

from __future__ import annotations

from typing import Any

import pytest

from entra_emulator.seed import (
    CLIENT_ID,
    GROUP_IDS,
    HELPDESK_LEADS_GROUP,
    PERSONAS,
    READER_CLIENT_ID,
    READER_CLIENT_SECRET,
)
from tests.emulator.graph_caller import GraphCaller, app_token

AARON = PERSONAS["aaron.agent"]["id"]
SP = f"/servicePrincipals(appId='{CLIENT_ID}')"


@pytest.fixture
def graph(fresh_tenant: Any) -> GraphCaller:
    fresh_tenant.throttle.configure(enabled=False)
    return GraphCaller(fresh_tenant, app_token(fresh_tenant))


def test_app_roles_and_assignments_by_app_id(graph: GraphCaller, fresh_tenant: Any) -> None:
    sp = graph.call("GET", SP, params={"$select": "id,appId,appRoles"})
    assert sp.status_code == 200, sp.text
    body = sp.json()
    assert body["appId"] == CLIENT_ID and "displayName" not in body
    roles = {r["value"]: r["id"] for r in body["appRoles"]}
    assert set(roles) == {"Helpdesk.Agent", "Helpdesk.Lead", "Helpdesk.Admin", "Helpdesk.Responder"}

    # A group assignment is listed as the group (the caller expands it).
    group = GROUP_IDS[HELPDESK_LEADS_GROUP]
    fresh_tenant.tenant.app_role_assignments[group] = {"Helpdesk.Lead"}
    listed = graph.call("GET", f"{SP}/appRoleAssignedTo", params={"$top": "2"})
    assert listed.status_code == 200, listed.text
    items = list(listed.json()["value"])
    link = listed.json().get("@odata.nextLink")
    while link:  # paging works through the alternate-key path
        page = graph.session.get(link, timeout=30).json()
        items.extend(page["value"])
        link = page.get("@odata.nextLink")
    aaron = [i for i in items if i["principalId"] == AARON]
    assert [(i["principalType"], i["appRoleId"]) for i in aaron] == [
        ("User", roles["Helpdesk.Agent"])
    ]
    assert aaron[0]["principalDisplayName"] == "Aaron Agent"
    assert aaron[0]["resourceId"] == body["id"]
    assert {(i["principalType"], i["appRoleId"]) for i in items if i["principalId"] == group} == {
        ("Group", roles["Helpdesk.Lead"])
    }
    by_id = graph.call("GET", f"/servicePrincipals/{body['id']}/appRoleAssignedTo")
    assert len(by_id.json()["value"]) == len(items)


def test_unknown_app_and_missing_permission(graph: GraphCaller, fresh_tenant: Any) -> None:
    missing = graph.call("GET", "/servicePrincipals(appId='00000000-0000-0000-0000-00000000abcd')")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"
    reader = GraphCaller(
        fresh_tenant,
        app_token(fresh_tenant, client_id=READER_CLIENT_ID, client_secret=READER_CLIENT_SECRET),
    )
    refused = reader.call("GET", f"{SP}/appRoleAssignedTo")
    assert refused.status_code == 403
