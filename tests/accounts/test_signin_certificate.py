"""Certificate-only sign-in: with ENTRA_CLIENT_CERT_PATH set and no client secret, the real
django-auth-adfs sign-in against the emulator authenticates its code exchange with a certificate
client assertion (https://learn.microsoft.com/entra/identity-platform/certificate-credentials).
Without one Entra, and the emulator, answer AADSTS7000218.

Also here: the v2.0 access token the portal receives carries no ``upn`` nor ``amr`` (v1.0-only
claims) and the sign-in still maps the person from ``oid`` and ``preferred_username``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.conf import settings
from django.test import override_settings
from django_auth_adfs.config import provider_config
from django_auth_adfs.config import settings as adfs_settings

from accounts.models import PortalProfile
from entra_emulator import pki
from tests.accounts.test_accounts_sign_in_flow import Browser
from tests.personas import Personas

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenSpy:
    """Records every token request the sign-in sends and the emulator's answers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.answers: list[Any] = []
        session = provider_config.session
        original = session.post

        def post(url: str, *args: Any, **kwargs: Any) -> Any:
            answer = original(url, *args, **kwargs)
            if str(url) == str(provider_config.token_endpoint):
                data = kwargs.get("data") or {}
                self.requests.append({k: [str(v)] for k, v in dict(data).items()})
                self.answers.append(answer)
            return answer

        monkeypatch.setattr(session, "post", post)


@pytest.fixture
def browser(emulator: Any, db: None) -> Iterator[Browser]:
    session = Browser(emulator)
    yield session
    session.close()


@pytest.fixture
def certificate_only(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A certificate registered on the emulator's portal app; the portal configured with it and
    with no client secret at all. Returns the certificate's PEM (public part)."""
    cert_path, key_and_cert_path = pki.create_client_certificate(tmp_path, "portal-signin")
    emulator.register_client_certificate(cert_path.read_bytes())
    monkeypatch.setattr(adfs_settings, "CLIENT_SECRET", "")
    with override_settings(ENTRA_CLIENT_CERT_PATH=str(key_and_cert_path), ENTRA_CLIENT_SECRET=""):
        yield cert_path


def test_sign_in_with_only_a_certificate(
    certificate_only: Path,
    browser: Browser,
    personas: Personas,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = TokenSpy(monkeypatch)
    response = browser.sign_in(personas.agent.upn)
    assert response.status_code == 302 and response["Location"] == "/", response.content[:400]
    assert PortalProfile.objects.get(oid=personas.agent.oid).roles == ["Agent"]

    [sent] = spy.requests
    assert "client_secret" not in sent
    assert sent["grant_type"] == ["authorization_code"]
    assert sent["client_assertion_type"] == [ASSERTION_TYPE]
    assertion = sent["client_assertion"][0]
    header = jwt.get_unverified_header(assertion)
    der = x509.load_pem_x509_certificate(certificate_only.read_bytes()).public_bytes(Encoding.DER)
    x5t_s256 = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert header["alg"] == "PS256" and header["x5t#S256"] == x5t_s256
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["aud"] == provider_config.token_endpoint
    assert claims["iss"] == claims["sub"] == settings.ENTRA_CLIENT_ID
    assert claims["jti"] and claims["nbf"] <= claims["iat"] < claims["exp"]
    access = jwt.decode(spy.answers[0].json()["access_token"], options={"verify_signature": False})
    assert access["azpacr"] == "2"  # Entra's mark of a certificate-authenticated client


def test_an_unregistered_certificate_names_the_fix(
    browser: Browser,
    personas: Personas,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cert_path, key_and_cert_path = pki.create_client_certificate(tmp_path, "not-registered")
    monkeypatch.setattr(adfs_settings, "CLIENT_SECRET", "")
    with override_settings(ENTRA_CLIENT_CERT_PATH=str(key_and_cert_path), ENTRA_CLIENT_SECRET=""):
        response = browser.sign_in(personas.agent.upn)
    assert response.status_code == 401
    html = response.content.decode()
    assert "AADSTS700027" in html and "Upload certificate" in html
    assert "_auth_user_id" not in browser.portal.session


def test_no_credential_at_all_is_aadsts7000218(
    browser: Browser, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the portal met before certificates were sent: the exchange without a credential."""
    monkeypatch.setattr(adfs_settings, "CLIENT_SECRET", "")
    with override_settings(ENTRA_CLIENT_CERT_PATH="", ENTRA_CLIENT_SECRET=""):
        response = browser.sign_in(personas.agent.upn)
    assert response.status_code == 401
    html = response.content.decode()
    assert "AADSTS7000218" in html and "ENTRA_CLIENT_CERT_PATH" in html


def test_v2_access_token_has_no_upn_and_sign_in_maps_preferred_username(
    browser: Browser, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TokenSpy(monkeypatch)
    response = browser.sign_in(personas.lead.upn)
    assert response.status_code == 302
    access = jwt.decode(spy.answers[0].json()["access_token"], options={"verify_signature": False})
    assert access["ver"] == "2.0"
    assert "upn" not in access and "amr" not in access
    profile = PortalProfile.objects.get(oid=personas.lead.oid)
    assert profile.user.username == personas.lead.oid  # USERNAME_CLAIM oid
    assert profile.upn == access["preferred_username"] == personas.lead.upn
    assert profile.user.email == personas.lead.upn  # CLAIM_MAPPING email <- preferred_username
