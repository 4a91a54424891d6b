"""``$select`` and ``$filter`` naming a property Graph does not have answer 400, as Graph does.

The property names come from Microsoft's v1.0 metadata (entra_emulator/graph_schema.json, built
by entra_emulator/graph_schema_build.py from /work/shared/graph/v1.0.csdl) and, for the two beta
resources, from their beta reference pages (entra_emulator/graph_schema.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from entra_emulator import graph_schema_build
from entra_emulator.graph_core import registered_routes
from entra_emulator.server import EmulatorServer, load_route_modules
from tests.emulator.conftest import app_token, graph_get, http

CSDL = Path("/work/shared/graph/v1.0.csdl")
EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture(scope="module")
def token(emulator_server: EmulatorServer) -> str:
    return app_token(emulator_server)


@pytest.fixture(scope="module")
def user_id(emulator_server: EmulatorServer, token: str) -> str:
    answer = graph_get(emulator_server, "/users", token, params={"$select": "id", "$top": "1"})
    return str(answer.json()["value"][0]["id"])


def _get(emu: EmulatorServer, token: str, path: str, **params: str) -> requests.Response:
    return graph_get(emu, path, token, params=params)


def _refused(answer: requests.Response, code: str, name: str, type_name: str) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert f"Could not find a property named '{name}' on type '{type_name}'" in error["message"]


def test_select_of_an_unknown_user_property_is_refused(
    emu: EmulatorServer, token: str, user_id: str
) -> None:
    _refused(
        _get(emu, token, "/users", **{"$select": "id,perUserMfaState"}),
        "BadRequest",
        "perUserMfaState",
        "microsoft.graph.user",
    )
    _refused(
        _get(emu, token, f"/users/{user_id}", **{"$select": "displayName,isPrivileged"}),
        "BadRequest",
        "isPrivileged",
        "microsoft.graph.user",
    )
    answer = _get(emu, token, f"/users/{user_id}", **{"$select": "id,accountEnabled,otherMails"})
    assert answer.status_code == 200, answer.text


def test_filter_on_an_unknown_property_is_refused(emu: EmulatorServer, token: str) -> None:
    _refused(
        _get(emu, token, "/users", **{"$filter": "upn eq 'a@b.c'"}),
        "Request_BadRequest",
        "upn",
        "microsoft.graph.user",
    )
    ok = _get(emu, token, "/users", **{"$filter": "startswith(userPrincipalName,'a')"})
    assert ok.status_code == 200, ok.text


def test_property_names_ignore_case(emu: EmulatorServer, token: str) -> None:
    assert _get(emu, token, "/users", **{"$select": "ID,DisplayName"}).status_code == 200


def test_filter_paths_through_complex_types_and_lambdas(emu: EmulatorServer, token: str) -> None:
    audits = "/auditLogs/directoryAudits"
    good = "initiatedBy/app/appId eq 'x' or targetResources/any(t: t/id eq 'y')"
    assert _get(emu, token, audits, **{"$filter": good}).status_code == 200
    _refused(
        _get(emu, token, audits, **{"$filter": "initiatedBy/app/applicationId eq 'x'"}),
        "Request_BadRequest",
        "applicationId",
        "microsoft.graph.appIdentity",
    )
    _refused(
        _get(emu, token, audits, **{"$filter": "targetResources/any(t: t/objectId eq 'y')"}),
        "Request_BadRequest",
        "objectId",
        "microsoft.graph.targetResource",
    )


def test_directory_object_collections_accept_the_derived_types_properties(
    emu: EmulatorServer, token: str, user_id: str
) -> None:
    path = f"/users/{user_id}/transitiveMemberOf"
    select = "id,displayName,isAssignableToRole,roleTemplateId"
    assert _get(emu, token, path, **{"$select": select}).status_code == 200
    _refused(
        _get(emu, token, path, **{"$select": "id,roleName"}),
        "BadRequest",
        "roleName",
        "microsoft.graph.directoryObject",
    )


def test_cast_qualified_select_names_the_derived_type(
    emu: EmulatorServer, token: str, user_id: str
) -> None:
    path = f"/users/{user_id}/authentication/methods"
    phone = "microsoft.graph.phoneAuthenticationMethod"
    assert _get(emu, token, path, **{"$select": f"id,{phone}/phoneNumber"}).status_code == 200
    _refused(
        _get(emu, token, path, **{"$select": f"id,{phone}/number"}),
        "BadRequest",
        "number",
        phone,
    )


def test_directory_extension_properties_are_accepted(emu: EmulatorServer, token: str) -> None:
    name = "extension_" + "0" * 32 + "_costCenter"
    assert _get(emu, token, "/users", **{"$select": f"id,{name}"}).status_code == 200


def test_role_management_filters(emu: EmulatorServer, token: str) -> None:
    path = "/roleManagement/directory/roleAssignments"
    assert _get(emu, token, path, **{"$filter": "principalId eq 'x'"}).status_code == 200
    _refused(
        _get(emu, token, path, **{"$filter": "userId eq 'x'"}),
        "Request_BadRequest",
        "userId",
        "microsoft.graph.unifiedRoleAssignment",
    )


def test_beta_resources_use_their_documented_properties(
    emu: EmulatorServer, token: str, user_id: str
) -> None:
    url = f"{emu.base_url}/beta/users/{user_id}/authentication/requirements"
    headers = {"Authorization": f"Bearer {token}"}
    ok = http(emu).get(url, params={"$select": "perUserMfaState"}, headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    bad = http(emu).get(url, params={"$select": "state"}, headers=headers, timeout=10)
    _refused(bad, "BadRequest", "state", "microsoft.graph.strongAuthenticationRequirements")


def test_batch_inner_requests_are_checked_too(
    emu: EmulatorServer, token: str, user_id: str
) -> None:
    body = {
        "requests": [
            {"id": "1", "method": "GET", "url": f"/users/{user_id}?$select=id,displayName"},
            {"id": "2", "method": "GET", "url": f"/users/{user_id}?$select=id,nickname"},
        ]
    }
    answer = http(emu).post(
        f"{emu.base_url}/v1.0/$batch",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    statuses = {item["id"]: item["status"] for item in answer.json()["responses"]}
    assert statuses == {"1": 200, "2": 400}


def test_every_served_v1_route_is_in_the_table() -> None:
    """Each v1.0 GET route of the emulator matches a path template the table was built from."""
    load_route_modules()
    samples = [t.replace("{key}", "k1") for t in graph_schema_build.SERVED_PATHS] + [
        # Alternate keys in the first segment address the same types as /{key}.
        "/servicePrincipals(appId='k1')",
        "/applications(appId='k1')",
        "/servicePrincipals(appId='k1')/appRoleAssignedTo",
        # The one method configuration the emulator serves, by its key.
        "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass",
    ]
    missing = [
        route.pattern.pattern
        for route in registered_routes()
        if route.method == "GET"
        and "v1.0" in route.versions
        and not any(route.pattern.fullmatch(sample) for sample in samples)
    ]
    assert missing == []


@pytest.mark.skipif(not CSDL.is_file(), reason="Microsoft's metadata is not on this machine")
def test_the_checked_in_table_is_what_the_script_builds() -> None:
    built = json.loads(json.dumps(graph_schema_build.build(CSDL)))
    assert built == json.loads(graph_schema_build.OUTPUT.read_text())
