"""Token issuing and validation: Entra v2.0 JWTs signed RS256 with the emulator's signing key.

Token timestamps always use the real clock (``time.time()``), even when the server's data clock is
pinned: clients validate ``exp`` against their real clock.

Graph tokens (aud ``https://graph.microsoft.com``, its app id, or the emulator's own base URL)
are validated by ``validate_graph_token``: signature, expiry (with a small leeway), audience,
issuer and tenant. Failures raise ``TokenError`` carrying Graph's 401 code and message.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from entra_emulator.pki import b64url, certificate_thumbprint_sha1

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 3600
VALIDATION_LEEWAY_SECONDS = 30


class TokenError(Exception):
    """A bearer token was refused: Graph answers ``status`` with ``code`` and ``message``."""

    def __init__(
        self, message: str, *, status: int = 401, code: str = "InvalidAuthenticationToken"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TokenInfo:
    """The caller, as Graph sees it from a validated access token."""

    is_app: bool
    app_id: str
    oid: str | None
    upn: str | None
    name: str | None
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


class TokenService:
    """Signs and validates the tenant's tokens.

    ``issuer`` is ``https://{host}/{tenant}/v2.0``; ``graph_audiences`` are the ``aud`` values a
    Graph token may carry.
    """

    def __init__(
        self,
        *,
        signing_key: rsa.RSAPrivateKey,
        signing_cert: x509.Certificate,
        tenant_id: str,
        issuer: str,
        graph_audiences: tuple[str, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signing_key = signing_key
        self.signing_cert = signing_cert
        self.tenant_id = tenant_id
        self.issuer = issuer
        self.graph_audiences = graph_audiences
        self.clock = clock
        self.kid = b64url(certificate_thumbprint_sha1(signing_cert))

    # --- publishing -----------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: one RSA signing key with kid, x5t, n, e and x5c."""
        numbers = self.signing_key.public_key().public_numbers()
        der = self.signing_cert.public_bytes(serialization.Encoding.DER)

        def encode_int(value: int) -> str:
            return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": encode_int(numbers.n),
                    "e": encode_int(numbers.e),
                    "x5c": [base64.b64encode(der).decode()],
                    "issuer": self.issuer,
                }
            ]
        }

    # --- issuing --------------------------------------------------------------------------------

    @property
    def v1_issuer(self) -> str:
        """The issuer of v1.0 access tokens, ``https://sts.windows.net/{tenant}/`` (the v1.0
        example of https://learn.microsoft.com/entra/identity-platform/access-tokens; the
        v2.0 issuer "ends in /v2.0")."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign RS256 with ``kid``; ``x5t`` too for a v1.0 token only ("a legacy claim emitted
        only in v1.0 access tokens", "only in v1.0 ID tokens": the access token and ID token
        claims references)."""
        headers = {"typ": "JWT", "kid": self.kid}
        if claims.get("ver") == "1.0":
            headers["x5t"] = self.kid
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers=headers)

    def _base_claims(self, audience: str, lifetime: int) -> dict[str, Any]:
        now = int(self.clock())
        return {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": self.tenant_id,
            "uti": b64url(uuid.uuid4().bytes)[:22],
            "ver": "2.0",
            "rh": "0.emulator.",
        }

    def issue_id_token(
        self,
        *,
        client_id: str,
        user: dict[str, Any],
        nonce: str | None,
        auth_time: int,
        email: bool = False,
        roles: list[str] | None = None,
    ) -> str:
        """An id_token for ``client_id``; echoes ``nonce`` when the authorize request had one.

        The v2.0 ID token's default claims only, from "ID token claims reference"
        (https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference): aud,
        iss, iat, nbf, exp, name, preferred_username ("Present only in v2.0 tokens"), oid, sub,
        tid, uti, rh, ver, nonce, and ``roles`` (the app roles of the person signing in).
        ``email`` only when the ``email`` scope was asked ("On the v2.0 endpoint, your app can
        also request the email OpenID Connect scope"). Not ``upn`` nor ``auth_time``: both are
        optional claims, present only when the app registration configures them
        (https://learn.microsoft.com/entra/identity-platform/optional-claims-reference), which the
        emulator's apps do not. ``auth_time`` is accepted for the callers' sake and not emitted.
        """
        del auth_time  # an optional claim (see above); the session keeps it
        claims = self._base_claims(client_id, ID_TOKEN_LIFETIME)
        claims.update(
            {
                "sub": _pairwise_sub(user["id"], client_id),
                "oid": user["id"],
                "name": user["displayName"],
                "preferred_username": user["userPrincipalName"],
            }
        )
        if email and user.get("mail"):
            claims["email"] = user["mail"]
        if roles:
            claims["roles"] = sorted(roles)
        if nonce:
            claims["nonce"] = nonce
        return self.sign(claims)

    def issue_user_access_token(
        self,
        *,
        client_id: str,
        user: dict[str, Any],
        audience: str,
        roles: list[str] | None = None,
        scopes: list[str] | None = None,
        azpacr: str = "1",
        version: int = 2,
    ) -> str:
        """A delegated access token: app ``roles`` for the portal audience, ``scp`` for Graph.

        ``version`` 1 gives a v1.0 token (``_v1_user_claims``): an API whose
        ``requestedAccessTokenVersion`` is null or 1 gets those ("The values of null and 1
        result in v1.0 tokens", https://learn.microsoft.com/entra/identity-platform/access-tokens).

        A v2.0 access token's claims only, from "Access token claims reference"
        (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference): aud,
        iss, iat, nbf, exp, azp and azpacr ("only present in v2.0 tokens"), preferred_username,
        name, oid, sub, tid, uti, rh, ver, roles / scp. Not ``amr``, ``appid``, ``acr`` nor
        ``unique_name`` ("only present in v1.0 tokens"), nor ``upn`` (a "v1.0 basic claim": "The
        v1.0 tokens include the following claims if applicable, but not v2.0 tokens by default";
        one of the "v2.0-specific optional claims": "always included in v1.0 tokens, but not
        included in v2.0 tokens unless requested", which the emulator's apps do not), nor
        ``idtyp`` ("By default it's only emitted for app-only tokens"; user tokens need the
        ``include_user_token`` property:
        https://learn.microsoft.com/entra/identity-platform/optional-claims-reference).
        """
        claims = self._base_claims(audience, ACCESS_TOKEN_LIFETIME)
        if version == 1:
            claims.update(self._v1_user_claims(client_id, user, azpacr))
        else:
            claims.update(
                {
                    "sub": _pairwise_sub(user["id"], audience),
                    "oid": user["id"],
                    "name": user["displayName"],
                    "preferred_username": user["userPrincipalName"],
                    "azp": client_id,
                    "azpacr": azpacr,
                }
            )
        if roles:
            claims["roles"] = sorted(roles)
        if scopes:
            claims["scp"] = " ".join(sorted(scopes))
        return self.sign(claims)

    def _v1_user_claims(self, client_id: str, user: dict[str, Any], azpacr: str) -> dict[str, Any]:
        """The claims of a v1.0 user access token, from the access token claims reference: the
        v1.0 issuer, ``ver`` 1.0, ``appid`` / ``appidacr`` in place of azp / azpacr, ``acr``,
        ``amr``, ``unique_name`` and the "v1.0 basic claims" (upn, given_name, family_name).
        Docs silent: which ``amr`` values a given sign-in yields (here password and MFA)."""
        claims: dict[str, Any] = {
            "iss": self.v1_issuer,
            "ver": "1.0",
            "sub": _pairwise_sub(user["id"], client_id),
            "oid": user["id"],
            "name": user["displayName"],
            "unique_name": user["userPrincipalName"],
            "upn": user["userPrincipalName"],
            "appid": client_id,
            "appidacr": azpacr,
            "acr": "1",
            "amr": ["pwd", "mfa"],
        }
        for claim, field_name in (("given_name", "givenName"), ("family_name", "surname")):
            if user.get(field_name):
                claims[claim] = user[field_name]
        return claims

    def issue_app_token(
        self,
        *,
        client_id: str,
        service_principal_id: str,
        audience: str,
        roles: list[str],
        azpacr: str,
    ) -> str:
        """An app-only access token carrying the granted application permissions in ``roles``,
        and ``idtyp`` "app" ("By default it's only emitted for app-only tokens",
        https://learn.microsoft.com/entra/identity-platform/optional-claims-reference)."""
        claims = self._base_claims(audience, ACCESS_TOKEN_LIFETIME)
        claims.update(
            {
                "sub": service_principal_id,
                "oid": service_principal_id,
                "azp": client_id,
                "azpacr": azpacr,
                "idtyp": "app",
                "roles": sorted(roles),
            }
        )
        return self.sign(claims)

    # --- validating -----------------------------------------------------------------------------

    def validate_graph_token(self, authorization: str | None) -> TokenInfo:
        """Validate a Graph ``Authorization`` header; raises TokenError (401) on any failure."""
        if not authorization or not authorization.strip():
            raise TokenError("Access token is empty.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("Access token is empty.")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).") from exc
        if header.get("alg") != "RS256":
            raise TokenError("Access token validation failure. Invalid signature algorithm.")
        if header.get("kid") != self.kid:
            raise TokenError(
                "IDX10503: Signature validation failed. The token's kid is not among the keys."
            )
        try:
            claims = jwt.decode(
                token,
                self.signing_key.public_key(),
                algorithms=["RS256"],
                audience=list(self.graph_audiences),
                issuer=self.issuer,
                leeway=VALIDATION_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("Lifetime validation failed, the token is expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("Access token validation failure. Invalid audience.") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("Access token validation failure. Invalid issuer.") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("Access token validation failure. Invalid signature.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"Access token validation failure: {exc}") from exc
        if claims.get("tid") != self.tenant_id:
            raise TokenError("Access token validation failure. Invalid tenant.")
        is_app = claims.get("idtyp") == "app"
        roles = claims.get("roles") or []
        scopes = (claims.get("scp") or "").split()
        return TokenInfo(
            is_app=is_app,
            app_id=str(claims.get("azp") or claims.get("appid") or ""),
            oid=claims.get("oid"),
            upn=claims.get("upn") or claims.get("preferred_username"),
            name=claims.get("name"),
            roles=tuple(roles),
            scopes=tuple(scopes),
            claims=claims,
        )


def _pairwise_sub(user_id: str, audience: str) -> str:
    """Entra's ``sub`` is pairwise: stable per user and app, different between apps."""
    return b64url(uuid.uuid5(uuid.UUID(user_id), audience).bytes)
