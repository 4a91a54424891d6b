"""State changes of accounts: keeping a person's profile and roles in step with their token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts.models import PortalProfile
from accounts.roles import roles_from_claims


def portal_profile_sync(*, user: User, claims: Mapping[str, Any]) -> PortalProfile:
    """Create or rewrite ``user``'s profile from the claims of a validated Entra token.

    Takes ``oid``, ``name``, ``preferred_username`` (or ``upn``) and ``roles``. The portal roles are
    replaced whole, so a role removed in Entra disappears here. Raises ValueError when the claims
    carry no ``oid`` (every Entra user token has one).
    """
    oid = str(claims.get("oid") or "")
    if not oid:
        raise ValueError("the token carries no oid claim")
    raw_roles = claims.get("roles") or []
    if isinstance(raw_roles, str):
        raw_roles = [raw_roles]
    values = {
        "oid": oid,
        "display_name": str(claims.get("name") or "")[:256],
        "upn": str(claims.get("preferred_username") or claims.get("upn") or "")[:256],
        "roles": roles_from_claims(str(value) for value in raw_roles),
        "roles_updated_at": timezone.now(),
    }
    with transaction.atomic():
        profile, _created = PortalProfile.objects.update_or_create(user=user, defaults=values)
    return profile
