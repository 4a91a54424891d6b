"""The portal's permission rules, in one place.

Portal roles come from Entra app roles on the portal's app registration (the ``roles`` claim):
``settings.PORTAL_ROLE_CLAIMS`` maps each app role value (``Helpdesk.Agent``) to a portal role
(``Agent``). Roles do not imply one another: a view lists every role it admits, by one of the
role tuples below, for example ``@role_required(*REQUESTER_ROLES)``.

A signed-in person who holds no portal role is refused everywhere with the "no portal role"
page (HTTP 403); a person who holds some role but not one the view admits gets the ordinary
403 page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import PortalProfile

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponse])


class Role(models.TextChoices):
    AGENT = "Agent", "Agent"
    LEAD = "Lead", "Lead"
    ADMIN = "Admin", "Admin"
    # Incident response (issue 14): starts bulk operations; never acts on one person alone.
    RESPONDER = "Responder", "Responder"


ALL_ROLES: tuple[str, ...] = tuple(Role.values)

# The sets of portal roles the rules admit, declared here once: every app's permission module,
# decorator and navigation item names one of these instead of spelling the roles out.
# Who may search people, open a person, request actions and follow their own requests.
REQUESTER_ROLES: tuple[str, ...] = (Role.AGENT, Role.LEAD, Role.ADMIN)
# Who approves or rejects actions on privileged targets (never their own), overrides the rate
# limit, cancels anyone's request and reviews the whole team's requests.
APPROVER_ROLES: tuple[str, ...] = (Role.LEAD, Role.ADMIN)
# Who may open the history (/audit/) and a person's timeline; agents see their own part of it.
HISTORY_ROLES: tuple[str, ...] = (Role.AGENT, Role.LEAD, Role.ADMIN)
# Who reads everyone's history, the exports and the dashboard.
OVERSIGHT_ROLES: tuple[str, ...] = (Role.LEAD, Role.ADMIN)
# Who administers Entra directory roles (the roles pages).
ADMIN_ROLES: tuple[str, ...] = (Role.ADMIN,)
# Who may start a bulk operation (/bulk/): revoke sessions or require re-registration for many.
RESPONDER_ROLES: tuple[str, ...] = (Role.RESPONDER, Role.ADMIN)
# Who approves a large bulk operation or one that includes privileged people (never the starter).
BULK_APPROVER_ROLES: tuple[str, ...] = (Role.LEAD, Role.RESPONDER, Role.ADMIN)
# Who opens /bulk/ at all: the starters and the approvers.
BULK_ROLES: tuple[str, ...] = (Role.LEAD, Role.RESPONDER, Role.ADMIN)


def roles_from_claims(claim_values: Iterable[str]) -> list[str]:
    """Portal roles for the app role values of one token, sorted; unknown values are ignored.

    Raises nothing: a token with no ``roles`` claim simply yields no portal role.
    """
    mapping: dict[str, str] = settings.PORTAL_ROLE_CLAIMS
    found = {mapping[value] for value in claim_values if value in mapping}
    return sorted(role for role in found if role in ALL_ROLES)


def portal_roles_of(user: Any) -> frozenset[str]:
    """The portal roles the user holds now; empty for anonymous users and people never seen.

    The profile is cached on the user object for the rest of the request.
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    try:
        profile: PortalProfile = user.portal_profile
    except PortalProfile.DoesNotExist:
        return frozenset()
    return profile.role_set() & frozenset(ALL_ROLES)


def has_role(user: Any, *roles: str) -> bool:
    """True if ``user`` holds at least one of ``roles`` (or, with no ``roles``, any portal role).

    Raises ValueError for a name that is not a portal role, so a typo never silently denies.
    """
    unknown = [role for role in roles if role not in ALL_ROLES]
    if unknown:
        raise ValueError(f"not portal roles: {unknown}; known: {list(ALL_ROLES)}")
    held = portal_roles_of(user)
    if not roles:
        return bool(held)
    return bool(held & frozenset(roles))


def display_name_of(user: Any) -> str:
    """The person's display name from Entra, falling back to the UPN, then the username."""
    try:
        profile: PortalProfile = user.portal_profile
    except (PortalProfile.DoesNotExist, AttributeError):
        return str(getattr(user, "username", ""))
    return profile.display_name or profile.upn or profile.oid


def no_role_response(request: HttpRequest) -> HttpResponse:
    """The 403 page for a signed-in person who holds no portal role at all."""
    return render(
        request,
        "accounts/no_role.html",
        {
            "signed_in_as": display_name_of(request.user),
            "upn": getattr(getattr(request.user, "portal_profile", None), "upn", ""),
            "role_claims": sorted(settings.PORTAL_ROLE_CLAIMS),
        },
        status=403,
    )


def role_required(*roles: str) -> Callable[[ViewFunc], ViewFunc]:
    """Decorate a view so only people holding one of ``roles`` reach it.

    With no ``roles``, any portal role admits. An anonymous person is sent to sign in; a person
    with no portal role gets ``no_role_response`` (403); a person with other roles gets
    PermissionDenied (the 403 page). Raises ValueError at import time for an unknown role name.
    """
    unknown = [role for role in roles if role not in ALL_ROLES]
    if unknown:
        raise ValueError(f"not portal roles: {unknown}; known: {list(ALL_ROLES)}")

    def decorator(view: ViewFunc) -> ViewFunc:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user):
                return no_role_response(request)
            if roles and not has_role(request.user, *roles):
                raise PermissionDenied("This page needs the role " + " or ".join(roles) + ".")
            return view(request, *args, **kwargs)

        return cast(ViewFunc, wrapped)

    return decorator
