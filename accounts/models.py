"""Who a signed-in person is in Entra, and which portal roles they hold.

The Django user's ``username`` is the person's Entra object id (``oid``, set by django-auth-adfs
through ``USERNAME_CLAIM``). ``PortalProfile`` keeps what the portal shows and decides with: the
display name, the UPN and the portal roles taken from the last sign-in's ``roles`` claim.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class PortalProfile(models.Model):
    """One per person who has signed in; rewritten from the token at every sign-in.

    ``roles`` is a sorted list of ``accounts.roles.Role`` values. It is replaced whole at each
    sign-in, so an app role removed in Entra is gone from the portal at the next sign-in.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_profile"
    )
    oid = models.CharField("Entra object id", max_length=64, unique=True)
    display_name = models.CharField(max_length=256, blank=True)
    upn = models.CharField("user principal name", max_length=256, blank=True)
    roles = models.JSONField(default=list, blank=True)
    roles_updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "portal profile"

    def __str__(self) -> str:
        return self.display_name or self.upn or self.oid

    def role_set(self) -> frozenset[str]:
        """The portal roles as a set (the stored list may come from an older sign-in)."""
        raw: Any = self.roles
        if not isinstance(raw, list):
            return frozenset()
        return frozenset(str(role) for role in raw)
