"""App-only tokens for Graph from MSAL (client credentials), one application object per process.

The MSAL ``ConfidentialClientApplication`` keeps its token cache inside itself, so it is created
once (lazily: creating it fetches the tenant's OpenID configuration, which may fail while the
login host is down) and reused. It authenticates with a client certificate when one is configured
(preferred: no shared secret), otherwise with the client secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from msal.exceptions import MsalServiceError

from graph.errors import GraphAuthError, GraphTokenUnavailable

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n.+?\r?\n-----END (?P=label)-----", re.DOTALL
)

# How long a client assertion is good for: the certificate-credentials page asks for "5-10 minutes
# after nbf at most"; the exchange sends it at once.
ASSERTION_LIFETIME_SECONDS = 300

# MSAL error codes that mean "the login service has a problem", not "your credentials are bad".
_TRANSIENT_TOKEN_ERRORS = {"temporarily_unavailable", "server_error", "service_unavailable"}


@dataclass(frozen=True)
class CertificateCredential:
    """What MSAL needs for a certificate assertion: the key, the certificate's SHA-1 thumbprint
    (hex) and the certificate itself (sent as ``x5c`` so the certificate can be rotated)."""

    private_key: str
    thumbprint: str
    public_certificate: str

    @classmethod
    def from_pem_file(cls, path: str | Path) -> CertificateCredential:
        """Read a PEM file holding the private key and the certificate (in either order).

        Raises ValueError naming the file when either is missing or unreadable.
        """
        text = Path(path).read_text()
        key_pem = cert_pem = None
        for block in _PEM_BLOCK.finditer(text):
            label = block.group("label")
            if label.endswith("PRIVATE KEY") and key_pem is None:
                key_pem = block.group(0)
            elif label == "CERTIFICATE" and cert_pem is None:
                cert_pem = block.group(0)
        if key_pem is None or cert_pem is None:
            raise ValueError(f"{path} must hold a PEM private key and a PEM certificate")
        if "ENCRYPTED" in key_pem:
            raise ValueError(f"{path}: the private key is encrypted; give an unencrypted key")
        try:
            certificate = x509.load_pem_x509_certificate(cert_pem.encode())
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        except ValueError as exc:
            raise ValueError(f"{path}: cannot read the key or certificate: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            # Entra accepts only RSA-signed client assertions.
            raise ValueError(f"{path}: the private key must be RSA, not {type(key).__name__}")
        der = certificate.public_bytes(serialization.Encoding.DER)
        # Entra identifies the certificate by its SHA-1 thumbprint (the "x5t" header).
        thumbprint = hashlib.sha1(der, usedforsecurity=False).hexdigest()
        return cls(private_key=key_pem, thumbprint=thumbprint, public_certificate=cert_pem)

    def as_msal(self) -> dict[str, str]:
        return {
            "private_key": self.private_key,
            "thumbprint": self.thumbprint,
            "public_certificate": self.public_certificate,
        }

    def client_assertion(
        self, *, client_id: str, audience: str, lifetime_seconds: int = ASSERTION_LIFETIME_SECONDS
    ) -> str:
        """A client assertion (OpenID Connect ``private_key_jwt``) proving the app to ``audience``,
        the token endpoint, wherever a client secret would go (the authorization-code exchange).

        The format of "Microsoft identity platform application authentication certificate
        credentials" (https://learn.microsoft.com/entra/identity-platform/certificate-credentials):
        header alg PS256, typ JWT and ``x5t#S256`` (base64url SHA-256 thumbprint of the
        certificate's DER); claims aud (the token endpoint), iss = sub = the client id, a unique
        jti, nbf/iat now and exp a few minutes later ("5-10 minutes after nbf at most").
        """
        certificate = x509.load_pem_x509_certificate(self.public_certificate.encode())
        der = certificate.public_bytes(serialization.Encoding.DER)
        x5t_s256 = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + lifetime_seconds,
        }
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="PS256",
            headers={"typ": "JWT", "x5t#S256": x5t_s256},
        )


def load_certificate_credential(path: str | Path) -> CertificateCredential:
    """``CertificateCredential.from_pem_file(path)``, read once per version of the file (a
    replaced file, e.g. a rotated certificate, is read again). Raises ValueError as it does."""
    stat = Path(path).stat()
    return _load_certificate_credential(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_certificate_credential(path: str, _mtime_ns: int, _size: int) -> CertificateCredential:
    return CertificateCredential.from_pem_file(path)


class TokenSource:
    """Access tokens for ``{graph_url}/.default`` from one lazily created MSAL application.

    ``token()`` raises GraphAuthError (permanent: bad secret or certificate, unknown tenant or
    client) or GraphTokenUnavailable (transient: the login host is down or answers 5xx).
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        client_cert_path: str,
        login_host: str,
        graph_url: str,
        http_client: requests.Session,
    ) -> None:
        self.authority = f"https://{login_host}/{tenant_id}"
        self.scopes = [f"{graph_url.rstrip('/')}/.default"]
        self._client_id = client_id
        self._credential: str | dict[str, str]
        if client_cert_path:
            self._credential = CertificateCredential.from_pem_file(client_cert_path).as_msal()
        elif client_secret:
            self._credential = client_secret
        else:
            raise ValueError("a client secret or a client certificate is required")
        self._http_client = http_client
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self._client_id,
                        client_credential=self._credential,
                        authority=self.authority,
                        instance_discovery=False,
                        http_client=self._http_client,
                    )
                except (requests.RequestException, MsalServiceError) as exc:
                    raise GraphTokenUnavailable(
                        0, "LoginHostUnavailable", f"cannot read {self.authority}: {_why(exc)}"
                    ) from exc
                except ValueError as exc:
                    # MSAL raises ValueError for a 4xx discovery answer: an unknown tenant.
                    raise GraphAuthError(
                        0, "InvalidAuthority", f"{self.authority} was refused: {exc}"
                    ) from exc
            return self._app

    def token(self) -> str:
        """A valid access token, from MSAL's cache when it has one."""
        app = self._application()
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=self.scopes)
        except (requests.RequestException, MsalServiceError) as exc:
            # MSAL turns a 5xx answer into MsalServiceError, a connection failure passes through.
            raise GraphTokenUnavailable(
                0, "TokenEndpointUnavailable", f"token request failed: {_why(exc)}"
            ) from exc
        except ValueError as exc:
            # MSAL re-raises a non-JSON answer from the token endpoint as ValueError.
            raise GraphTokenUnavailable(
                0, "TokenEndpointUnavailable", f"unreadable token answer: {exc}"
            ) from exc
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        code = str(result.get("error") or "token_error")
        message = str(result.get("error_description") or "no access token in the answer")
        # The first line of Entra's description carries the AADSTS code; the rest is trace noise.
        message = message.splitlines()[0] if message else message
        correlation = result.get("correlation_id")
        if code in _TRANSIENT_TOKEN_ERRORS:
            raise GraphTokenUnavailable(0, code, message, correlation)
        raise GraphAuthError(401, code, message, correlation)

    def forget(self) -> None:
        """Drop cached tokens (after Graph answered 401 to one of them)."""
        with self._lock:
            app = self._app
        if app is not None:
            app.remove_tokens_for_client()


def _why(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    if isinstance(exc, MsalServiceError):
        return str(exc.args[0]) if exc.args else "HTTP error"
    return type(exc).__name__
