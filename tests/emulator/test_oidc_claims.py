"""The emulator's v2.0 tokens carry the documented v2.0 claims only, and a scope naming an app's
API needs that app's Application ID URI.

Claims: https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference ("amr",
"appid", "unique_name": "only present in v1.0 tokens"; "upn": a v1.0 basic claim, "not v2.0 tokens
by default"), https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference and
https://learn.microsoft.com/entra/identity-platform/optional-claims-reference (upn, auth_time,
idtyp for user tokens: only when configured). Scopes:
https://learn.microsoft.com/entra/identity-platform/quickstart-configure-app-expose-web-apis and
AADSTS500011 of https://learn.microsoft.com/entra/identity-platform/reference-error-codes.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt

from entra_emulator.seed import CLIENT_ID, TENANT_ID
from entra_emulator.server import EmulatorServer
from tests.emulator.conftest import http
from tests.emulator.test_oidc import ADA, authorize, code_from, redeem

V1_ONLY = {"amr", "upn", "appid", "appidacr", "unique_name", "acr"}


def _claims(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_portal_access_token_and_id_token_carry_v2_claims_only(emu: EmulatorServer) -> None:
    code = code_from(
        authorize(emu, login_hint=ADA["upn"], scope=f"openid profile api://{CLIENT_ID}/.default")
    )["code"][0]
    body = redeem(emu, code).json()
    access = _claims(body["access_token"])
    assert access["ver"] == "2.0" and access["aud"] == CLIENT_ID
    assert not V1_ONLY & access.keys(), sorted(V1_ONLY & access.keys())
    assert "idtyp" not in access  # emitted for app-only tokens only, unless configured
    assert access["preferred_username"] == ADA["upn"] and access["oid"] == ADA["id"]
    assert access["azp"] == CLIENT_ID and access["azpacr"] == "1"
    assert access["roles"] == ["Helpdesk.Agent"]
    assert "x5t" not in jwt.get_unverified_header(body["access_token"])  # v1.0 tokens only
    id_token = _claims(body["id_token"])
    assert id_token["ver"] == "2.0"
    assert not V1_ONLY & id_token.keys(), sorted(V1_ONLY & id_token.keys())
    for optional in ("auth_time", "email", "azp"):  # optional claims / not ID token claims
        assert optional not in id_token, optional
    assert id_token["preferred_username"] == ADA["upn"] and id_token["roles"] == ["Helpdesk.Agent"]


def test_email_scope_brings_the_email_claim(emu: EmulatorServer) -> None:
    code = code_from(
        authorize(
            emu,
            login_hint=ADA["upn"],
            scope=f"openid profile email api://{CLIENT_ID}/.default",
        )
    )["code"][0]
    id_token = _claims(redeem(emu, code).json()["id_token"])
    assert id_token["email"] == emu.tenant.users[ADA["id"]]["mail"]


def test_delegated_graph_token_has_no_v1_claims(emu: EmulatorServer) -> None:
    code = code_from(
        authorize(
            emu, login_hint=ADA["upn"], scope="openid profile https://graph.microsoft.com/.default"
        )
    )["code"][0]
    access = _claims(redeem(emu, code).json()["access_token"])
    assert access["ver"] == "2.0" and not V1_ONLY & access.keys()
    assert "idtyp" not in access


def test_scope_of_an_unexposed_api_is_refused_with_aadsts500011(emu: EmulatorServer) -> None:
    assert emu.tenant.apps[CLIENT_ID].identifier_uris == [f"api://{CLIENT_ID}"]  # the seed
    answer = http(emu).post(
        f"{emu.base_url}/_emulator/app", json={"identifier_uris": []}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    refused = authorize(emu, login_hint=ADA["upn"], scope=f"openid api://{CLIENT_ID}/.default")
    assert refused.status_code == 302
    query = parse_qs(urlsplit(refused.headers["Location"]).query)
    assert query["error"] == ["invalid_resource"]
    assert query["error_description"][0].startswith(
        f"AADSTS500011: The resource principal named api://{CLIENT_ID} was not found"
    )
    # The app's bare client id still names it (a token for itself, AADSTS90009's rule).
    code = code_from(authorize(emu, login_hint=ADA["upn"], scope=f"openid {CLIENT_ID}/.default"))[
        "code"
    ][0]
    assert _claims(redeem(emu, code).json()["access_token"])["aud"] == CLIENT_ID
    # Exposed again, the scope works.
    http(emu).post(
        f"{emu.base_url}/_emulator/app",
        json={"identifier_uris": [f"api://{CLIENT_ID}"]},
        timeout=10,
    )
    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    assert redeem(emu, code).status_code == 200


def test_requested_access_token_version_null_gives_a_v1_token(emu: EmulatorServer) -> None:
    """ "The values of null and 1 result in v1.0 tokens" (the access-tokens page)."""
    answer = http(emu).post(
        f"{emu.base_url}/_emulator/app", json={"requested_access_token_version": None}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    body = redeem(emu, code).json()
    header = jwt.get_unverified_header(body["access_token"])
    access = _claims(body["access_token"])
    assert access["ver"] == "1.0" and access["iss"] == f"https://sts.windows.net/{TENANT_ID}/"
    assert access["aud"] == f"api://{CLIENT_ID}"  # the resource URI used in the request
    assert access["appid"] == CLIENT_ID and "azp" not in access
    assert access["upn"] == ADA["upn"] and "amr" in access
    assert header["x5t"] == header["kid"]  # x5t: v1.0 tokens only
    # The ID token stays v2.0 (the endpoint's version), without x5t.
    assert _claims(body["id_token"])["ver"] == "2.0"
    assert "x5t" not in jwt.get_unverified_header(body["id_token"])
