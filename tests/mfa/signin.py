"""Signing a persona in to Django's test client, as the real sign-in leaves them.

The real sign-in (django-auth-adfs through the emulator, tests/accounts/test_accounts_sign_in_flow)
creates a Django user named by the Entra object id and writes the portal profile from the token's
claims with ``accounts.services.portal_profile_sync``. ``portal_user`` does exactly that with the
persona's claims, so the portal's role checks and the policy's "not on yourself" rule see the same
ids as the emulator's directory.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from accounts.services import portal_profile_sync
from tests.personas import Persona


def portal_user(persona: Persona) -> Any:
    """The Django user of ``persona`` after one sign-in (created on first use)."""
    user, _created = get_user_model().objects.get_or_create(username=persona.oid)
    portal_profile_sync(
        user=user,
        claims={
            "oid": persona.oid,
            "name": persona.display_name,
            "preferred_username": persona.upn,
            "roles": [persona.app_role] if persona.app_role else [],
        },
    )
    return get_user_model().objects.get(pk=user.pk)


def signed_in(persona: Persona) -> Client:
    """A fresh test client signed in as ``persona``."""
    client = Client()
    client.force_login(portal_user(persona))
    return client
