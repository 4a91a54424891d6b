"""Template context about the signed-in person: name, portal roles and the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.navigation import nav_items_for, waiting_counts
from accounts.roles import display_name_of, portal_roles_of


def _is_fragment(request: HttpRequest) -> bool:
    """An htmx fragment (a live status, a panel) draws no navigation: no counts to read."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def portal_roles(request: HttpRequest) -> dict[str, Any]:
    """``portal_roles`` (sorted role names), ``portal_person`` (display name or "") and
    ``portal_nav`` (the areas this person may open, only those whose URLs exist, each with the
    count of what waits there for them)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"portal_roles": [], "portal_person": "", "portal_nav": []}
    roles = portal_roles_of(user)
    counts = waiting_counts(user) if roles and not _is_fragment(request) else {}
    return {
        "portal_roles": sorted(roles),
        "portal_person": display_name_of(user),
        "portal_nav": nav_items_for(roles, counts),
    }
