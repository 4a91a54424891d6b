"""The emulator's token endpoint authenticates a confidential client's code exchange as Entra does.

An authorization-code exchange must carry a client secret or a certificate client assertion
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow,
https://learn.microsoft.com/entra/identity-platform/certificate-credentials); with neither,
Entra answers AADSTS7000218 (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
The assertion here is the portal's own (graph.token.CertificateCredential.client_assertion).
"""

from __future__ import annotations

import base64
import hashlib

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from entra_emulator.seed import CLIENT_ID
from entra_emulator.server import EmulatorServer
from graph.token import CertificateCredential
from tests.emulator.conftest import ClientCert, http, token_url
from tests.emulator.test_oidc import ADA, assert_entra_error, authorize, code_from

REDIRECT = "http://127.0.0.1:8000/oauth2/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_code_exchange_without_secret_or_assertion_is_refused(emu: EmulatorServer) -> None:
    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    answer = http(emu).post(
        token_url(emu),
        data={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "redirect_uri": REDIRECT,
        },
        timeout=10,
    )
    assert_entra_error(answer, 401, "invalid_client", 7000218)
    assert "'client_assertion' or 'client_secret'" in answer.json()["error_description"]


def test_code_exchange_with_the_portals_certificate_assertion(
    emu: EmulatorServer, client_cert: ClientCert
) -> None:
    credential = CertificateCredential.from_pem_file(client_cert.key_path)
    assertion = credential.client_assertion(client_id=CLIENT_ID, audience=token_url(emu))
    # The documented format: PS256, typ JWT, x5t#S256 of the certificate's DER.
    header = jwt.get_unverified_header(assertion)
    der = x509.load_pem_x509_certificate(client_cert.cert_path.read_bytes()).public_bytes(
        Encoding.DER
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert (header["alg"], header["typ"], header["x5t#S256"]) == ("PS256", "JWT", expected)
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["aud"] == token_url(emu)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["jti"] and 0 < claims["exp"] - claims["nbf"] <= 600

    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    answer = http(emu).post(
        token_url(emu),
        data={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "redirect_uri": REDIRECT,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    access = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert access["azpacr"] == "2"  # "When you use a client certificate ... the value is 2"


def test_assertion_for_another_audience_is_refused(
    emu: EmulatorServer, client_cert: ClientCert
) -> None:
    credential = CertificateCredential.from_pem_file(client_cert.key_path)
    assertion = credential.client_assertion(
        client_id=CLIENT_ID, audience="https://login.microsoftonline.com/other/oauth2/v2.0/token"
    )
    code = code_from(authorize(emu, login_hint=ADA["upn"]))["code"][0]
    answer = http(emu).post(
        token_url(emu),
        data={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "redirect_uri": REDIRECT,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
        timeout=10,
    )
    assert_entra_error(answer, 401, "invalid_client", 700212)
