"""The authentication backend: django-auth-adfs's code flow plus PKCE, nonce and portal roles.

Only a callback that ``accounts.views.callback`` verified (its ``state`` matched a sign-in this
session started) can authenticate: without the pending sign-in attached to the request the
backend refuses. The code exchange sends the PKCE verifier; the id_token's signature, audience,
issuer and ``nonce`` are checked before the library validates the access token and maps claims.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import jwt
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_auth_adfs.backend import AdfsAuthCodeBackend
from django_auth_adfs.config import provider_config
from django_auth_adfs.config import settings as adfs_settings
from django_auth_adfs.exceptions import MFARequired

from accounts.services import portal_profile_sync
from accounts.signin import pending_of, refuse_sign_in
from graph.token import load_certificate_credential

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

logger = logging.getLogger(__name__)


def client_authentication(token_endpoint: str) -> dict[str, str]:
    """How the code exchange proves it is the portal: a certificate client assertion when
    ``ENTRA_CLIENT_CERT_PATH`` is set (preferred, as for the Graph token), else the client secret.

    "Client assertions can be used anywhere a client secret would be used", the authorization
    code flow included, as ``client_assertion_type`` + ``client_assertion``
    (https://learn.microsoft.com/entra/identity-platform/certificate-credentials#using-a-client-assertion,
    https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow). Entra refuses
    a confidential client's exchange that carries neither with AADSTS7000218.
    """
    cert_path = django_settings.ENTRA_CLIENT_CERT_PATH
    if cert_path:
        credential = load_certificate_credential(cert_path)
        return {
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": credential.client_assertion(
                client_id=adfs_settings.CLIENT_ID, audience=token_endpoint
            ),
        }
    if adfs_settings.CLIENT_SECRET:
        return {"client_secret": adfs_settings.CLIENT_SECRET}
    return {}


def _token_error(response: Any) -> str:
    """The first line of Entra's error_description (the AADSTS code and text; the rest is trace
    noise), or the HTTP status when the answer is not Entra's JSON."""
    try:
        body = response.json()
        description = str(body.get("error_description") or body.get("error") or "")
    except (ValueError, AttributeError):
        description = ""
    first = description.splitlines()[0] if description else ""
    first = first.split(" Trace ID:")[0].strip()
    return first[:300] or f"the token endpoint answered HTTP {response.status_code}"


def refuse_v1_access_token(request: HttpRequest, access_token: object) -> None:
    """Refuse, with the fix, an access token in the v1.0 format before the library validates it.

    The portal validates against the v2.0 issuer of the v2.0 discovery document; Entra issues
    v1.0 tokens (issuer ``https://sts.windows.net/{tenant}/``) for an app whose manifest leaves
    ``requestedAccessTokenVersion`` null or 1, the default of a new registration
    (https://learn.microsoft.com/entra/identity-platform/access-tokens). Only the unverified
    ``ver`` claim is read here, to say why; the library still verifies every token it accepts.
    """
    if not isinstance(access_token, str) or not access_token:
        return
    try:
        version = jwt.decode(access_token, options={"verify_signature": False}).get("ver")
    except jwt.InvalidTokenError:
        return  # not a JWT: the library refuses it
    if version == "1.0":
        logger.warning("sign-in refused: Entra issued a v1.0 access token")
        refuse_sign_in(
            request,
            "Entra ID issued a v1.0 access token, which the portal does not accept. An Entra "
            "administrator fixes it in the Microsoft Entra admin center: App registrations > the "
            'portal\'s app > Manifest: set "requestedAccessTokenVersion": 2 inside "api" (the '
            'older manifest: "accessTokenAcceptedVersion": 2) > Save.',
        )


class PortalAdfsBackend(AdfsAuthCodeBackend):  # type: ignore[misc]  # untyped library
    """Authorization-code sign-in against Entra ID (or the emulator, by configuration)."""

    def authenticate(
        self,
        request: HttpRequest | None = None,
        authorization_code: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        """Exchange ``authorization_code`` and return the signed-in user.

        Returns None when no verified pending sign-in is attached to ``request`` (a callback that
        bypassed the state check). Raises PermissionDenied (Django's ``authenticate`` turns it
        into a failed sign-in) when the token endpoint refuses or any token check fails.
        """
        if not authorization_code:
            return None
        pending = pending_of(request)
        if request is None or pending is None:
            logger.warning("sign-in refused: authorization code without a verified state")
            return None
        provider_config.load_config()
        token_response = self.exchange_auth_code(authorization_code, request)
        self.validate_id_token(token_response.get("id_token"), expected_nonce=pending.nonce)
        access_token = token_response.get("access_token")
        refuse_v1_access_token(request, access_token)
        user: User = self.process_access_token(access_token, token_response)
        return user

    def get_user(self, user_id: Any) -> User | None:
        """The signed-in user of a session, with its ``portal_profile`` read in the same query:
        every page asks for the portal roles, so this is one query a page fewer than the
        profile read on its own. None for an unknown or inactive user (ModelBackend's rule)."""
        try:
            user = User._default_manager.select_related("portal_profile").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None

    def exchange_auth_code(self, authorization_code: str, request: HttpRequest) -> dict[str, Any]:
        """The library's code exchange with the PKCE ``code_verifier`` of this sign-in added and
        the client authenticated by certificate or secret (``client_authentication``).

        A refusal raises PermissionDenied after recording Entra's reason for the failure page
        (``accounts.signin.refuse_sign_in``); AADSTS50076 asks for MFA as the library does.
        """
        pending = pending_of(request)
        if pending is None:
            raise PermissionDenied("no verified sign-in")
        data = {
            "grant_type": "authorization_code",
            "client_id": adfs_settings.CLIENT_ID,
            "redirect_uri": provider_config.redirect_uri(request),
            "code": authorization_code,
            "code_verifier": pending.code_verifier,
        }
        try:
            data.update(client_authentication(str(provider_config.token_endpoint)))
        except (OSError, ValueError) as exc:
            logger.error("sign-in impossible: the certificate credential is unusable: %s", exc)
            refuse_sign_in(
                request,
                "the portal's certificate credential (ENTRA_CLIENT_CERT_PATH) cannot be read; "
                "the server log says why",
            )
        try:
            response = provider_config.session.post(
                provider_config.token_endpoint, data=data, timeout=adfs_settings.TIMEOUT
            )
        except OSError as exc:  # requests' RequestException is an OSError (only graph/ imports it)
            logger.warning("sign-in failed: the token endpoint did not answer: %s", exc)
            refuse_sign_in(request, "the Entra ID token endpoint did not answer; try again")
        error = _token_error(response) if response.status_code != 200 else ""
        if response.status_code == 400 and error.startswith("AADSTS50076"):
            raise MFARequired  # the library's own rule (its _ms_request): sign in again with MFA
        if error:
            logger.warning("sign-in refused by the token endpoint: %s", error)
            refuse_sign_in(request, error)
        result: dict[str, Any] = response.json()
        return result

    def validate_id_token(self, id_token: str | None, *, expected_nonce: str) -> dict[str, Any]:
        """Check the id_token's signature, audience (our client id), issuer and nonce.

        Raises PermissionDenied on any failure, including a missing id_token: we always ask for
        the ``openid`` scope, so a token response without one is not Entra's.
        """
        if not id_token:
            logger.warning("sign-in refused: the token response has no id_token")
            raise PermissionDenied("no id_token")
        claims: dict[str, Any] | None = None
        for key in provider_config.signing_keys or []:
            try:
                claims = jwt.decode(
                    id_token,
                    key=key,
                    algorithms=["RS256", "RS384", "RS512"],
                    audience=adfs_settings.CLIENT_ID,
                    issuer=provider_config.issuer,
                    leeway=adfs_settings.JWT_LEEWAY,
                    options={"require": ["exp", "iat", "aud", "iss", "nonce"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue  # signed with another of the published keys
            except jwt.InvalidTokenError as exc:
                logger.warning("sign-in refused: id_token invalid: %s", exc)
                raise PermissionDenied("invalid id_token") from exc
        if claims is None:
            logger.warning("sign-in refused: id_token signed by no published key")
            raise PermissionDenied("invalid id_token signature")
        if not hmac.compare_digest(str(claims.get("nonce", "")), expected_nonce):
            logger.warning("sign-in refused: id_token nonce does not match this sign-in")
            raise PermissionDenied("nonce mismatch")
        return claims

    def update_user_groups(self, user: User, claim_groups: list[str]) -> None:
        """Portal roles live on ``PortalProfile``, not in Django groups: leave groups alone."""

    def update_user_flags(
        self, user: User, claims: dict[str, Any], claim_groups: list[str]
    ) -> None:
        """The library's last per-sign-in hook (it has the claims): rewrite the profile here."""
        super().update_user_flags(user, claims, claim_groups)
        portal_profile_sync(user=user, claims=claims)
