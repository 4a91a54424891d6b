"""Users, managers and memberships over HTTPS, and the seed behind them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
import requests

from entra_emulator.seed import (
    GROUP_IDS,
    GUEST_UPN,
    PERSONAS,
    ROLE_ASSIGNABLE_GROUP,
    build_tenant,
    persona_oid,
)
from entra_emulator.server import EmulatorServer
from tests.emulator.conftest import app_token, graph_get, http

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture(scope="module")
def token(emulator_server: EmulatorServer) -> str:
    return app_token(emulator_server)


def get(emu: EmulatorServer, token: str, path: str, **params: str) -> requests.Response:
    return graph_get(emu, path, token, params=params or None)


def test_list_defaults_to_100_users_with_the_default_properties(
    emu: EmulatorServer, token: str
) -> None:
    body = get(emu, token, "/users").json()
    assert len(body["value"]) == 100 and "@odata.nextLink" in body
    assert body["@odata.context"].endswith("/v1.0/$metadata#users")
    first = body["value"][0]
    assert {"id", "displayName", "userPrincipalName", "mail"} <= set(first)
    assert "accountEnabled" not in first and "department" not in first
    selected = get(
        emu, token, "/users", **{"$select": "id,accountEnabled,department", "$top": "5"}
    ).json()["value"]
    assert all(set(u) == {"id", "accountEnabled", "department"} for u in selected)


def test_paging_through_next_link_returns_every_user_once(emu: EmulatorServer, token: str) -> None:
    seen: list[str] = []
    url = f"{emu.base_url}/v1.0/users?$top=37&$select=id"
    pages = 0
    while url:
        answer = http(emu).get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen.extend(u["id"] for u in body["value"])
        url = body.get("@odata.nextLink")
        pages += 1
    assert len(seen) == len(set(seen)) == len(emu.tenant.users) == 200
    assert pages == 6
    # A skip token only continues its own query.
    answer = get(emu, token, "/users", **{"$top": "37", "$skiptoken": "garbage"})
    assert answer.status_code == 400


def test_top_is_bounded(emu: EmulatorServer, token: str) -> None:
    assert get(emu, token, "/users", **{"$top": "999"}).status_code == 200
    answer = get(emu, token, "/users", **{"$top": "1000"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "Request_BadRequest"


def test_filter_startswith_and_quote_escaping(emu: EmulatorServer, token: str) -> None:
    body = get(
        emu, token, "/users", **{"$filter": "startswith(displayName,'ada a')", "$select": "id"}
    ).json()
    assert [u["id"] for u in body["value"]] == [PERSONAS["ada.agent"]["id"]]
    obriens = [u for u in emu.tenant.users.values() if u["surname"].startswith("O'")]
    assert obriens, "the seed has surnames with an apostrophe"
    body = get(
        emu,
        token,
        "/users",
        **{"$filter": "startswith(surname,'O''')", "$select": "id", "$top": "999"},
    ).json()
    assert {u["id"] for u in body["value"]} == {u["id"] for u in obriens}
    for prop, value in (
        ("userPrincipalName", "leo.lead@"),
        ("mail", "LENA."),
        ("surname", "Privileged"),
    ):
        answer = get(emu, token, "/users", **{"$filter": f"startswith({prop},'{value}')"})
        assert len(answer.json()["value"]) == 1, prop
    malformed = get(emu, token, "/users", **{"$filter": "startswith(displayName,'ada"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "Request_BadRequest"


def test_advanced_filters_need_consistency_level_and_count(emu: EmulatorServer, token: str) -> None:
    params = {"$filter": "endswith(mail,'@fabrikam.example')"}
    refused = get(emu, token, "/users", **params)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"
    answer = graph_get(emu, "/users", token, params={**params, "$count": "true"}, headers=EVENTUAL)
    assert answer.status_code == 200 and answer.json()["@odata.count"] == 1


def test_search_needs_the_consistency_header(emu: EmulatorServer, token: str) -> None:
    params = {"$search": '"displayName:lead" OR "userPrincipalName:lead"', "$select": "id"}
    refused = get(emu, token, "/users", **params)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "Request_UnsupportedQuery"
    assert "ConsistencyLevel: eventual" in error["message"]
    answer = graph_get(emu, "/users", token, params={**params, "$count": "true"}, headers=EVENTUAL)
    assert answer.status_code == 200
    ids = {u["id"] for u in answer.json()["value"]}
    assert {PERSONAS["leo.lead"]["id"], PERSONAS["lena.lead"]["id"]} <= ids
    assert answer.json()["@odata.count"] == len(ids)
    both = graph_get(
        emu,
        "/users",
        token,
        headers=EVENTUAL,
        params={"$search": '"displayName:lena" AND "displayName:lead"'},
    ).json()["value"]
    assert [u["displayName"] for u in both] == ["Lena Lead"]
    count_only = get(emu, token, "/users", **{"$count": "true"})
    assert count_only.status_code == 400
    unsupported = graph_get(
        emu, "/users", token, headers=EVENTUAL, params={"$search": '"accountEnabled:true"'}
    )
    assert unsupported.status_code == 400


def test_get_user_by_id_upn_and_guest_upn(emu: EmulatorServer, token: str) -> None:
    sam = PERSONAS["sam.standard"]
    by_id = get(emu, token, f"/users/{sam['id']}", **{"$select": "id,accountEnabled"}).json()
    assert by_id == {
        "@odata.context": by_id["@odata.context"],
        "id": sam["id"],
        "accountEnabled": True,
    }
    by_upn = get(emu, token, f"/users/{quote(sam['upn'].upper())}").json()
    assert by_upn["id"] == sam["id"]
    guest = get(
        emu, token, f"/users/{quote(GUEST_UPN, safe='@')}", **{"$select": "id,userType"}
    ).json()
    assert guest["userType"] == "Guest"
    missing = get(emu, token, "/users/nobody@contoso-demo.onmicrosoft.com")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_manager(emu: EmulatorServer, token: str) -> None:
    sam = PERSONAS["sam.standard"]
    manager = get(
        emu, token, f"/users/{sam['id']}/manager", **{"$select": "id,displayName,mail"}
    ).json()
    assert manager["@odata.type"] == "#microsoft.graph.user"
    assert manager["id"] == emu.tenant.managers[sam["id"]] and manager["mail"]
    ceo = next(u for u in emu.tenant.users if u not in emu.tenant.managers)
    answer = get(emu, token, f"/users/{ceo}/manager")
    assert answer.status_code == 404


def test_transitive_member_of_sees_nested_and_role_assignable_groups(
    emu: EmulatorServer, token: str
) -> None:
    leo = PERSONAS["leo.lead"]["id"]
    groups = get(emu, token, f"/users/{leo}/transitiveMemberOf").json()["value"]
    names = {g["displayName"] for g in groups if g["@odata.type"] == "#microsoft.graph.group"}
    assert {"Helpdesk Leads", "Helpdesk Staff"} <= names
    operator = next(iter(emu.tenant.group_members[GROUP_IDS[ROLE_ASSIGNABLE_GROUP]]))
    held = get(emu, token, f"/users/{operator}/transitiveMemberOf").json()["value"]
    role_group = next(g for g in held if g["id"] == GROUP_IDS[ROLE_ASSIGNABLE_GROUP])
    assert role_group["isAssignableToRole"] is True
    only_groups = get(emu, token, f"/users/{leo}/transitiveMemberOf/microsoft.graph.group")
    assert all(g["@odata.type"] == "#microsoft.graph.group" for g in only_groups.json()["value"])
    direct = get(emu, token, f"/users/{leo}/memberOf").json()["value"]
    assert {g["displayName"] for g in direct} >= {"Helpdesk Leads"}
    assert "Helpdesk Staff" not in {g["displayName"] for g in direct}


def test_group_members(emu: EmulatorServer, token: str) -> None:
    staff = GROUP_IDS["Helpdesk Staff"]
    members = get(emu, token, f"/groups/{staff}/members").json()["value"]
    types = {m["@odata.type"] for m in members}
    assert types == {"#microsoft.graph.user", "#microsoft.graph.group"}
    everyone = get(emu, token, f"/groups/{staff}/transitiveMembers").json()["value"]
    assert PERSONAS["leo.lead"]["id"] in {m["id"] for m in everyone}
    assert (
        get(emu, token, "/groups/00000000-0000-0000-0000-000000000000/members").status_code == 404
    )
    assignable = get(emu, token, "/groups", **{"$filter": "isAssignableToRole eq true"}).json()[
        "value"
    ]
    assert [g["id"] for g in assignable] == [GROUP_IDS[ROLE_ASSIGNABLE_GROUP]]


# --- the seed -----------------------------------------------------------------------------------


def test_seed_is_deterministic_and_holds_the_personas() -> None:
    first = build_tenant(users=120, seed=3, with_security=False)
    second = build_tenant(users=120, seed=3, with_security=False)
    assert first.users == second.users and first.managers == second.managers
    assert len(first.users) == 120
    for prefix, persona in PERSONAS.items():
        user = first.users[persona["id"]]
        assert (
            user["userPrincipalName"] == persona["upn"] == f"{prefix}@contoso-demo.onmicrosoft.com"
        )
        assert persona["id"] == persona_oid(persona["upn"])
        assert first.app_role_assignments.get(persona["id"], set()) == set(persona["app_roles"])
    assert any(not u["accountEnabled"] for u in first.users.values())
    assert first.users[persona_oid(GUEST_UPN)]["userType"] == "Guest"


def test_managers_form_a_tree() -> None:
    tenant = build_tenant(users=500, with_security=False)
    for user_id in tenant.users:
        seen = set()
        current: Any = user_id
        while current in tenant.managers:
            assert current not in seen, "manager cycle"
            seen.add(current)
            current = tenant.managers[current]
            assert current in tenant.users


def test_100k_users_seed_in_seconds() -> None:
    started = time.monotonic()
    tenant = build_tenant(users=100_000)
    assert len(tenant.users) == 100_000
    assert time.monotonic() - started < 30
