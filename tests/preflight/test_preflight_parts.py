"""The preflight's parts: the needed permissions derived from the operations registry (and in
agreement with the emulator's routes), the token reader, redirect URI matching, the
certificate's expiry, and the emulator's GET application."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.test import override_settings

from entra_emulator.graph_core import registered_routes
from entra_emulator.seed import CLIENT_ID, READER_CLIENT_ID, READER_CLIENT_SECRET
from entra_emulator.server import load_route_modules
from preflight import checks, permissions
from preflight.results import Status
from tests.preflight.preflight_helpers import REAL_BUDGET, tenant_check

# --- the needed permissions -------------------------------------------------------------------


def test_every_operation_the_portal_can_call_has_its_permissions() -> None:
    operations = permissions.all_operations()
    assert permissions.unmapped_operations() == []
    assert set(permissions.OPERATION_PERMISSIONS) == set(operations), "stale entries"


def test_the_needed_list_allows_every_operation_and_nothing_in_it_is_spare() -> None:
    needed = set(permissions.needed_permissions())
    allowed = list(permissions.OPERATION_PERMISSIONS.values())
    assert all(needed & set(a.accepted) for a in allowed)
    for name in needed:
        assert not all((needed - {name}) & set(a.accepted) for a in allowed), name
    # The sign-in's roles reader and the PIM writes are among them, derived, not listed.
    assert {"Application.Read.All", "RoleManagement.ReadWrite.Directory"} <= needed


def test_a_new_operation_changes_the_need() -> None:
    audit_log_reads = ("audit_logs.", "reports.")
    names = [n for n in permissions.OPERATION_PERMISSIONS if not n.startswith(audit_log_reads)]
    assert "AuditLog.Read.All" not in permissions.needed_permissions(names)
    report = permissions.compare(["User.Read.All"], ["users.get", "made.up"])
    assert report.unmapped == ("made.up",) and not report.missing


def _route_permissions(op: Any) -> tuple[str, ...]:
    version, rest = op.path.split("/", 2)[1], "/" + op.path.split("/", 2)[2]
    values = {"{app_id}": CLIENT_ID, "{method}": "TemporaryAccessPass"}
    sample = re.sub(r"\{[a-z_]+\}", lambda m: values.get(m.group(0), "x"), rest)
    for route in registered_routes():
        if route.method == op.method and version in route.versions:
            if route.pattern.fullmatch(sample):
                return route.permissions
    raise AssertionError(f"the emulator serves no route for {op.name} ({op.path})")


def test_the_emulator_accepts_the_needed_permission_of_every_operation() -> None:
    load_route_modules()
    for name, op in sorted(permissions.all_operations().items()):
        accepted = _route_permissions(op)
        assert permissions.needed_for(name) in accepted, (name, accepted)


def test_compare_names_missing_broader_and_unneeded() -> None:
    needed = set(permissions.needed_permissions())
    held = (needed - {"AuditLog.Read.All", "User.RevokeSessions.All"}) | {
        "User.ReadWrite.All",
        "Mail.Send",
    }
    report = permissions.compare(held)
    assert list(report.missing) == ["AuditLog.Read.All"]
    assert report.missing["AuditLog.Read.All"] == (
        "audit_logs.directory_audits",
        "reports.registration_details",
        "reports.registration_details_of",
    )
    assert report.broader == {"User.ReadWrite.All": "User.RevokeSessions.All"}
    assert report.unneeded == ("Mail.Send",)


# --- the token --------------------------------------------------------------------------------


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_token_claims_reads_the_payload_without_verifying() -> None:
    assert checks.token_claims(_jwt({"roles": ["User.Read.All"], "tid": "t"}))["roles"] == [
        "User.Read.All"
    ]
    for bad in ("opaque-token", "a.b", "a.!!!.c", f"a.{base64.b64encode(b'[1]').decode()}.c"):
        with pytest.raises(ValueError):
            checks.token_claims(bad)


# --- redirect URIs ----------------------------------------------------------------------------


def test_redirect_uri_matching_follows_entra() -> None:
    match = checks.redirect_uri_registered
    registered = [
        "https://helpdesk.example.com/oauth2/callback",
        "http://127.0.0.1/oauth2/callback",
    ]
    assert match("https://helpdesk.example.com/oauth2/callback", registered)
    assert not match("https://helpdesk.example.com/oauth2/Callback", registered)  # case matters
    assert not match("https://helpdesk.example.com:8443/oauth2/callback", registered)
    # http loopback: the port is ignored, the host and path are not.
    assert match("http://127.0.0.1:8000/oauth2/callback", registered)
    assert not match("http://localhost:8000/oauth2/callback", registered)
    assert not match("http://127.0.0.1:8000/other", registered)


def test_default_callback_urls_come_from_settings() -> None:
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://helpdesk.example.com"]):
        assert checks.default_callback_urls() == ("https://helpdesk.example.com/oauth2/callback",)
    with override_settings(
        CSRF_TRUSTED_ORIGINS=[], ALLOWED_HOSTS=["portal.example.com"], DEMO=False
    ):
        assert checks.default_callback_urls() == ("https://portal.example.com/oauth2/callback",)


# --- the certificate --------------------------------------------------------------------------


def _pem(tmp_path: Path, not_after: datetime) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helpdesk-portal")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "portal.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path


@pytest.mark.parametrize(
    ("days", "status", "words"),
    [
        (200, Status.PASS, "(in 199 days)"),
        (10, Status.WARN, "in 9 days"),
        (-1, Status.FAIL, "EXPIRED"),
    ],
)
def test_certificate_expiry(tmp_path: Path, days: int, status: Status, words: str) -> None:
    now = datetime.now(UTC)
    path = _pem(tmp_path, now + timedelta(days=days, minutes=-1))
    with override_settings(ENTRA_CLIENT_CERT_PATH=str(path)):
        found, lines, fix = checks._certificate_lines(checks.Context(None, "t", CLIENT_ID, ()), now)
    assert found is status and words in lines[0] and "expires" in lines[0]
    assert ("Upload certificate" in fix) is (status is not Status.PASS)


@pytest.mark.django_db
def test_certificate_credentials_get_a_token_and_show_the_expiry(
    emulator_app: Any, tmp_path: Path
) -> None:
    path = _pem(tmp_path, datetime.now(UTC) + timedelta(days=20))
    emulator_app.register_client_certificate(path.read_bytes())
    with override_settings(ENTRA_CLIENT_CERT_PATH=str(path), ENTRA_CLIENT_SECRET=""):
        status, output = tenant_check()
    line = next(x for x in output.splitlines() if x.startswith("[WARN] Credentials"))
    assert "an app token was issued for the client certificate" in line
    assert "expires" in output and "in 19 days" in output
    assert "Certificates & secrets > Certificates > Upload certificate" in output
    assert status == 0, output


# --- the emulator's GET application -----------------------------------------------------------


def _get(server: Any, path: str, client_id: str, secret: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.ca_path)
    token = session.post(
        f"{server.base_url}/{emulator_tenant()}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
        },
        timeout=10,
    ).json()["access_token"]
    return session.get(
        f"{server.base_url}/v1.0{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def emulator_tenant() -> str:
    from entra_emulator.seed import TENANT_ID

    return TENANT_ID


def test_emulator_serves_the_application_by_app_id(emulator_app: Any) -> None:
    from entra_emulator.seed import CLIENT_SECRET

    answer = _get(
        emulator_app,
        f"/applications(appId='{CLIENT_ID}')?$select=id,appId,identifierUris,web,api",
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["appId"] == CLIENT_ID and body["id"] not in (CLIENT_ID, "")
    assert body["api"]["requestedAccessTokenVersion"] == 2
    # The emulator's loopback patterns are served as Entra holds them: no port.
    assert "http://127.0.0.1/oauth2/callback" in body["web"]["redirectUris"]
    assert not any("*" in uri for uri in body["web"]["redirectUris"])
    assert set(body) <= {"@odata.context", "id", "appId", "identifierUris", "web", "api"}
    by_object_id = _get(emulator_app, f"/applications/{body['id']}", CLIENT_ID, CLIENT_SECRET)
    assert by_object_id.status_code == 200 and by_object_id.json()["appId"] == CLIENT_ID
    missing = _get(
        emulator_app,
        "/applications(appId='00000000-0000-0000-0000-000000000001')",
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"
    # Application.Read.All (or broader) is needed: the reader app holds only User.Read.All.
    refused = _get(
        emulator_app, f"/applications(appId='{CLIENT_ID}')", READER_CLIENT_ID, READER_CLIENT_SECRET
    )
    assert refused.status_code == 403


def test_the_budget_item_uses_settings_only(monkeypatch: Any) -> None:
    from preflight.tenant_checks import check_budget_settings

    with override_settings(**REAL_BUDGET):
        result = check_budget_settings(checks.Context(None, "t", "c", ()))
    assert result.status is Status.PASS and "5 per 10 s" in result.details[0]
