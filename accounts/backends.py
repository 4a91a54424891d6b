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
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_auth_adfs.backend import AdfsAuthCodeBackend
from django_auth_adfs.config import provider_config
from django_auth_adfs.config import settings as adfs_settings

from accounts.services import portal_profile_sync
from accounts.signin import pending_of

logger = logging.getLogger(__name__)


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
        user: User = self.process_access_token(token_response.get("access_token"), token_response)
        return user

    def exchange_auth_code(self, authorization_code: str, request: HttpRequest) -> dict[str, Any]:
        """The library's code exchange with the PKCE ``code_verifier`` of this sign-in added."""
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
        if adfs_settings.CLIENT_SECRET:
            data["client_secret"] = adfs_settings.CLIENT_SECRET
        response = self._ms_request(
            provider_config.session.post, provider_config.token_endpoint, data
        )
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
