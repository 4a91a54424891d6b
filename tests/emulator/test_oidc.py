"""The emulator's login host, driven with plain HTTPS, PyJWT and the real MSAL client."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from entra_emulator import pki
from entra_emulator.seed import CLIENT_ID, CLIENT_SECRET, DOMAIN, PERSONAS, TENANT_ID
from entra_emulator.server import EmulatorServer
from tests.emulator.conftest import ClientCert, graph_get, http, token_url

REDIRECT = "http://127.0.0.1:8000/oauth2/callback"
ADA = PERSONAS["ada.agent"]


def discovery(server: EmulatorServer) -> dict[str, Any]:
    answer = http(server).get(
        f"{server.base_url}/{TENANT_ID}/v2.0/.well-known/openid-configuration",
        params={"appid": CLIENT_ID},
        timeout=10,
    )
    assert answer.status_code == 200
    return dict(answer.json())


def signing_key(server: EmulatorServer) -> Any:
    """The public key, read the way django-auth-adfs reads it: from the JWKS x5c certificate."""
    keys = http(server).get(discovery(server)["jwks_uri"], timeout=10).json()["keys"]
    der = base64.b64decode(keys[0]["x5c"][0])
    return x509.load_der_x509_certificate(der).public_key()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


def authorize(
    server: EmulatorServer, session: requests.Session | None = None, **params: str
) -> requests.Response:
    session = session or http(server)
    query = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": f"openid api://{CLIENT_ID}/.default",
        "state": "s1",
        **params,
    }
    return session.get(
        discovery(server)["authorization_endpoint"], params=query, allow_redirects=False, timeout=10
    )


def code_from(answer: requests.Response) -> dict[str, list[str]]:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def redeem(server: EmulatorServer, code: str, **extra: str) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code": code,
        "redirect_uri": REDIRECT,
        **extra,
    }
    return http(server).post(token_url(server), data=data, timeout=10)


def assert_entra_error(answer: requests.Response, status: int, error: str, aadsts: int) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error
    assert body["error_codes"] == [aadsts]
    assert body["error_description"].startswith(f"AADSTS{aadsts}:")
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]


# --- discovery and keys -------------------------------------------------------------------------


def test_discovery_has_every_key_the_libraries_read(emu: EmulatorServer) -> None:
    doc = discovery(emu)
    base = f"{emu.base_url}/{TENANT_ID}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["end_session_endpoint"] == f"{base}/oauth2/v2.0/logout"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    for key in (
        "msgraph_host",
        "userinfo_endpoint",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "scopes_supported",
        "claims_supported",
        "tenant_region_scope",
        "cloud_instance_name",
    ):
        assert doc[key], key
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    # The domain names the same tenant; an unknown tenant is Entra's AADSTS90002.
    by_domain = http(emu).get(
        f"{emu.base_url}/{DOMAIN}/v2.0/.well-known/openid-configuration", timeout=10
    )
    assert by_domain.json()["issuer"] == doc["issuer"]
    unknown = http(emu).get(
        f"{emu.base_url}/not-a-tenant/v2.0/.well-known/openid-configuration", timeout=10
    )
    assert_entra_error(unknown, 400, "invalid_tenant", 90002)


def test_jwks_x5c_is_the_signing_certificate(emu: EmulatorServer) -> None:
    keys = http(emu).get(discovery(emu)["jwks_uri"], timeout=10).json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    der = base64.b64decode(key["x5c"][0])
    on_disk = x509.load_pem_x509_certificate((emu.state_dir / "signing-cert.pem").read_bytes())
    assert der == on_disk.public_bytes(serialization.Encoding.DER)
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")
    assert key["kid"] == key["x5t"] == thumbprint
    public_key = on_disk.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    numbers = public_key.public_numbers()
    as_int = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=="), "big")
    assert as_int == numbers.n and key["kty"] == "RSA" and key["use"] == "sig"


def test_state_folder_is_reused_on_restart(emu: EmulatorServer, tmp_path: Any) -> None:
    first = pki.load_or_create(tmp_path)
    second = pki.load_or_create(tmp_path)
    assert first.ca_path.read_bytes() == second.ca_path.read_bytes()
    assert first.signing_cert == second.signing_cert
    for name in ("ca.pem", "ca-key.pem", "server.pem", "signing-key.pem", "signing-cert.pem"):
        assert (tmp_path / name).is_file(), name


# --- authorize ----------------------------------------------------------------------------------


def test_login_hint_signs_in_and_the_session_makes_the_next_authorize_silent(
    emu: EmulatorServer,
) -> None:
    session = http(emu)
    first = code_from(authorize(emu, session, login_hint=ADA["upn"]))
    assert first["state"] == ["s1"]
    assert session.cookies  # the emulator's sign-in session
    second = code_from(authorize(emu, session, prompt="none"))
    claims_1 = jwt.decode(
        redeem(emu, first["code"][0]).json()["access_token"], options={"verify_signature": False}
    )
    claims_2 = jwt.decode(
        redeem(emu, second["code"][0]).json()["access_token"], options={"verify_signature": False}
    )
    assert claims_1["oid"] == claims_2["oid"] == ADA["id"]
    # Without a session, prompt=none is refused back to the client, in Entra's words.
    refused = parse_qs(urlsplit(authorize(emu, prompt="none").headers["Location"]).query)
    assert refused["error"] == ["login_required"]
    assert refused["error_description"][0].startswith("AADSTS50058")


def test_sign_in_page_lists_personas_first_and_signs_in_the_chosen_one(
    emu: EmulatorServer,
) -> None:
    page = authorize(emu)
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html
    assert html.index("Ada Agent") < html.index("Other people")
    assert "Helpdesk.Lead" in html and "no portal role" in html
    # Submitting the page's form (the button for Leo Lead) signs Leo in.
    form = parse_qs(urlsplit(str(page.request.url)).query)
    data = {k: v[0] for k, v in form.items()}
    data["emulator_username"] = PERSONAS["leo.lead"]["upn"]
    chosen = http(emu).post(
        discovery(emu)["authorization_endpoint"], data=data, allow_redirects=False, timeout=10
    )
    token = redeem(emu, code_from(chosen)["code"][0]).json()["access_token"]
    claims = jwt.decode(
        token,
        signing_key(emu),
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=discovery(emu)["issuer"],
    )
    assert claims["oid"] == PERSONAS["leo.lead"]["id"]
    assert claims["roles"] == ["Helpdesk.Lead"]


def test_authorize_refuses_unknown_clients_and_unregistered_redirects(emu: EmulatorServer) -> None:
    bad_client = authorize(emu, client_id="11111111-2222-3333-4444-555555555555")
    assert bad_client.status_code == 400 and "AADSTS700016" in bad_client.text
    bad_redirect = authorize(
        emu, redirect_uri="https://evil.example/oauth2/callback", login_hint=ADA["upn"]
    )
    assert bad_redirect.status_code == 400 and "AADSTS50011" in bad_redirect.text
    assert "Location" not in bad_redirect.headers
    other_port = authorize(
        emu, redirect_uri="http://localhost:9123/oauth2/callback", login_hint=ADA["upn"]
    )
    assert other_port.status_code == 302


def test_disabled_accounts_cannot_sign_in(emu: EmulatorServer) -> None:
    disabled = next(u for u in emu.tenant.users.values() if not u["accountEnabled"])
    answer = authorize(emu, login_hint=disabled["userPrincipalName"])
    assert answer.status_code == 200 and "AADSTS50057" in answer.text


# --- authorization code -------------------------------------------------------------------------


def test_portal_token_carries_app_roles_and_id_token_echoes_nonce(emu: EmulatorServer) -> None:
    code = code_from(authorize(emu, login_hint=ADA["upn"], nonce="n-123"))["code"][0]
    body = redeem(emu, code).json()
    issuer = discovery(emu)["issuer"]
    # Validated exactly as django-auth-adfs validates it (AUDIENCE = client id).
    access = jwt.decode(
        body["access_token"],
        signing_key(emu),
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=issuer,
    )
    assert access["roles"] == ["Helpdesk.Agent"]
    assert access["tid"] == TENANT_ID and access["ver"] == "2.0"
    assert access["preferred_username"] == ADA["upn"]
    assert "upn" not in access and "amr" not in access  # v1.0-only claims
    assert access["azp"] == CLIENT_ID and access["name"] == "Ada Agent"
    id_token = jwt.decode(
        body["id_token"], signing_key(emu), algorithms=["RS256"], audience=CLIENT_ID, issuer=issuer
    )
    assert id_token["nonce"] == "n-123"
    assert "refresh_token" not in body  # no offline_access asked
    # A code is good once.
    assert_entra_error(redeem(emu, code), 400, "invalid_grant", 54005)


def test_outsider_token_has_no_roles(emu: EmulatorServer) -> None:
    code = code_from(authorize(emu, login_hint=PERSONAS["otto.outsider"]["upn"]))["code"][0]
    claims = jwt.decode(
        redeem(emu, code).json()["access_token"], options={"verify_signature": False}
    )
    assert "roles" not in claims


def test_pkce_s256_is_verified(emu: EmulatorServer) -> None:
    verifier, challenge = pkce()
    code = code_from(
        authorize(
            emu, login_hint=ADA["upn"], code_challenge=challenge, code_challenge_method="S256"
        )
    )["code"][0]
    assert_entra_error(
        redeem(emu, code, code_verifier="wrong" + verifier), 400, "invalid_grant", 501481
    )
    code = code_from(
        authorize(
            emu, login_hint=ADA["upn"], code_challenge=challenge, code_challenge_method="S256"
        )
    )["code"][0]
    assert_entra_error(redeem(emu, code), 400, "invalid_grant", 501481)  # no verifier
    code = code_from(
        authorize(
            emu, login_hint=ADA["upn"], code_challenge=challenge, code_challenge_method="S256"
        )
    )["code"][0]
    assert redeem(emu, code, code_verifier=verifier).status_code == 200


def test_code_is_bound_to_redirect_uri_and_client_secret(emu: EmulatorServer) -> None:
    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    assert_entra_error(
        redeem(emu, code, redirect_uri="http://127.0.0.1:8001/oauth2/callback"),
        400,
        "invalid_grant",
        500112,
    )
    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    assert_entra_error(redeem(emu, code, client_secret="wrong"), 401, "invalid_client", 7000215)


def test_graph_scope_gives_a_delegated_graph_token(emu: EmulatorServer) -> None:
    code = code_from(
        authorize(
            emu,
            login_hint=ADA["upn"],
            scope="openid profile offline_access https://graph.microsoft.com/.default",
        )
    )["code"][0]
    body = redeem(emu, code).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert "User.Read.All" in claims["scp"].split() and "roles" not in claims
    me = graph_get(emu, "/me", body["access_token"])
    assert me.status_code == 200 and me.json()["id"] == ADA["id"]
    # Two resources at once is Entra's AADSTS28000.
    mixed = authorize(
        emu, login_hint=ADA["upn"], scope=f"openid User.Read api://{CLIENT_ID}/.default"
    )
    assert parse_qs(urlsplit(mixed.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_refresh_tokens_rotate_and_stop_after_revocation(emu: EmulatorServer) -> None:
    code = code_from(
        authorize(
            emu, login_hint=ADA["upn"], scope=f"openid offline_access api://{CLIENT_ID}/.default"
        )
    )
    first = redeem(emu, code["code"][0]).json()["refresh_token"]
    data = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": first,
    }
    answer = http(emu).post(token_url(emu), data=data, timeout=10)
    assert answer.status_code == 200, answer.text
    second = answer.json()["refresh_token"]
    assert second != first
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["Helpdesk.Agent"]
    assert_entra_error(
        http(emu).post(token_url(emu), data=data, timeout=10), 400, "invalid_grant", 9002313
    )
    # revokeSignInSessions moves signInSessionsValidFromDateTime: the refresh token dies.
    with emu.tenant.lock:
        emu.tenant.users[ADA["id"]]["signInSessionsValidFromDateTime"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5)
        )
    revoked = http(emu).post(token_url(emu), data={**data, "refresh_token": second}, timeout=10)
    assert_entra_error(revoked, 400, "invalid_grant", 50173)


def test_logout_ends_the_session_and_redirects(emu: EmulatorServer) -> None:
    session = http(emu)
    code_from(authorize(emu, session, login_hint=ADA["upn"]))
    answer = session.get(
        discovery(emu)["end_session_endpoint"],
        params={"post_logout_redirect_uri": "http://127.0.0.1:8000/signed-out/"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "http://127.0.0.1:8000/signed-out/"
    after = parse_qs(urlsplit(authorize(emu, session, prompt="none").headers["Location"]).query)
    assert after["error"] == ["login_required"]
    elsewhere = session.get(
        discovery(emu)["end_session_endpoint"],
        params={"post_logout_redirect_uri": "https://evil.example/"},
        allow_redirects=False,
        timeout=10,
    )
    assert elsewhere.status_code == 200 and "signed out" in elsewhere.text


# --- client credentials -------------------------------------------------------------------------


def msal_app(server: EmulatorServer, credential: Any) -> msal.ConfidentialClientApplication:
    session = http(server)
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=credential,
        authority=f"{server.base_url}/{TENANT_ID}",
        instance_discovery=False,
        http_client=session,
    )


def test_msal_client_credentials_with_secret(emu: EmulatorServer) -> None:
    app = msal_app(emu, CLIENT_SECRET)
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    claims = jwt.decode(
        result["access_token"],
        signing_key(emu),
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
        issuer=discovery(emu)["issuer"],
    )
    assert claims["idtyp"] == "app" and claims["azpacr"] == "1"
    assert "UserAuthenticationMethod.ReadWrite.All" in claims["roles"]
    wrong = msal_app(emu, "not-the-secret").acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert wrong["error"] == "invalid_client" and 7000215 in wrong["error_codes"]
    bad_scope = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/User.Read"])
    assert 1002012 in bad_scope["error_codes"]


@pytest.mark.parametrize("style", ["sha1-thumbprint", "sha256-public-certificate"])
def test_msal_client_credentials_with_certificate_assertion(
    emu: EmulatorServer, client_cert: ClientCert, style: str
) -> None:
    pem = client_cert.key_path.read_text()
    cert = x509.load_pem_x509_certificate(client_cert.cert_path.read_bytes())
    if style == "sha1-thumbprint":  # MSAL signs RS256 with an x5t header
        credential = {"private_key": pem, "thumbprint": cert.fingerprint(hashes_sha1()).hex()}
    else:  # MSAL signs PS256 with an x5t#S256 header
        credential = {"private_key": pem, "public_certificate": client_cert.cert_path.read_text()}
    result = msal_app(emu, credential).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["azpacr"] == "2"
    assert graph_get(emu, "/users", result["access_token"], params={"$top": "1"}).status_code == 200


def test_unregistered_certificate_and_bad_assertions_are_refused(
    emu: EmulatorServer, tmp_path: Any, client_cert: ClientCert
) -> None:
    _cert_path, key_path = pki.create_client_certificate(tmp_path, "stranger")
    stranger = msal_app(
        emu,
        {
            "private_key": key_path.read_text(),
            "public_certificate": (tmp_path / "stranger.pem").read_text(),
        },
    )
    result = stranger.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result["error"] == "invalid_client" and 700027 in result["error_codes"]
    # A registered key, but the assertion names another audience.
    key = serialization.load_pem_private_key(client_cert.key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    cert = x509.load_pem_x509_certificate(client_cert.cert_path.read_bytes())
    x5t = base64.urlsafe_b64encode(cert.fingerprint(hashes_sha1())).decode().rstrip("=")
    now = int(time.time())
    claims = {
        "aud": "https://login.microsoftonline.com/other/oauth2/v2.0/token",
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "exp": now + 300,
        "nbf": now,
        "jti": secrets.token_hex(8),
    }
    data = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "scope": "https://graph.microsoft.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    wrong_aud = jwt.encode(claims, key, algorithm="RS256", headers={"x5t": x5t})
    answer = http(emu).post(
        token_url(emu), data={**data, "client_assertion": wrong_aud}, timeout=10
    )
    assert_entra_error(answer, 401, "invalid_client", 700212)
    expired = jwt.encode(
        {**claims, "aud": token_url(emu), "exp": now - 600},
        key,
        algorithm="RS256",
        headers={"x5t": x5t},
    )
    answer = http(emu).post(token_url(emu), data={**data, "client_assertion": expired}, timeout=10)
    assert_entra_error(answer, 401, "invalid_client", 700024)
    good = jwt.encode(
        {**claims, "aud": token_url(emu)}, key, algorithm="RS256", headers={"x5t": x5t}
    )
    answer = http(emu).post(token_url(emu), data={**data, "client_assertion": good}, timeout=10)
    assert answer.status_code == 200, answer.text


def hashes_sha1() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA1()


# --- the whole auth-code flow through MSAL ------------------------------------------------------


def test_msal_auth_code_flow_with_pkce_nonce_and_refresh(emu: EmulatorServer) -> None:
    app = msal_app(emu, CLIENT_SECRET)
    flow = app.initiate_auth_code_flow(
        ["https://graph.microsoft.com/User.Read"],
        redirect_uri=REDIRECT,
        login_hint=PERSONAS["ana.admin"]["upn"],
    )
    assert "code_challenge=" in flow["auth_uri"] and "nonce=" in flow["auth_uri"]
    answer = http(emu).get(flow["auth_uri"], allow_redirects=False, timeout=10)
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    result = app.acquire_token_by_auth_code_flow(flow, query)
    assert "access_token" in result, result
    assert result["id_token_claims"]["oid"] == PERSONAS["ana.admin"]["id"]
    # MSAL sends sha256(nonce) in the authorize request; the id_token echoes what was sent.
    sent = parse_qs(urlsplit(flow["auth_uri"]).query)["nonce"][0]
    assert sent == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert result["id_token_claims"]["nonce"] == sent
    accounts = app.get_accounts()
    assert accounts and accounts[0]["username"] == PERSONAS["ana.admin"]["upn"]
    refreshed = app.acquire_token_silent(
        ["https://graph.microsoft.com/User.Read"], account=accounts[0], force_refresh=True
    )
    assert refreshed and "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]


def test_token_endpoint_down(emu: EmulatorServer) -> None:
    emu.faults.configure(token_endpoint_down=True)
    answer = http(emu).post(
        token_url(emu),
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
        timeout=10,
    )
    assert_entra_error(answer, 503, "temporarily_unavailable", 90033)
    assert int(answer.headers["Retry-After"]) >= 1


def test_app_roles_assigned_to_a_group_reach_its_direct_members_only(emu: EmulatorServer) -> None:
    otto = PERSONAS["otto.outsider"]
    nested_member = next(
        u
        for u in emu.tenant.users.values()
        if u["id"] != otto["id"]
        and u["id"] not in emu.tenant.app_role_assignments
        and u["accountEnabled"]
    )
    with emu.tenant.lock:
        emu.tenant.groups["g-leads"] = {"id": "g-leads", "displayName": "Night leads"}
        emu.tenant.groups["g-nested"] = {"id": "g-nested", "displayName": "Nested"}
        emu.tenant.group_members["g-leads"] = {otto["id"], "g-nested"}
        emu.tenant.group_members["g-nested"] = {nested_member["id"]}
        emu.tenant.app_role_assignments["g-leads"] = {"Helpdesk.Lead"}

    def roles_of(upn: str) -> Any:
        code = code_from(authorize(emu, login_hint=upn))["code"][0]
        token = redeem(emu, code).json()["access_token"]
        return jwt.decode(token, options={"verify_signature": False}).get("roles")

    assert roles_of(otto["upn"]) == ["Helpdesk.Lead"]
    # As in Entra, nested groups do not pass an app role assignment on.
    assert roles_of(nested_member["userPrincipalName"]) is None
