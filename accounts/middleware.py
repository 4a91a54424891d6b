"""Re-validating a signed-in person against Entra while the session lasts.

Portal roles come from the token at sign-in, and a session lasts ``SESSION_COOKIE_AGE`` (8 hours).
So that a role removed in Entra, or an account disabled there, does not keep working for the rest
of the day, :class:`RoleRecheckMiddleware` reads the person again through Graph at most every
``PORTAL_ROLE_RECHECK_SECONDS`` (default 300):

- ``accountEnabled`` of the user (``graph.users.get_user``); a deleted user counts as disabled;
- the portal's app roles the person holds, directly or through a group (the service principal's
  ``appRoleAssignedTo``, a group's direct members, as Entra passes app roles on).

Every portal role the session holds must still be held. If one is gone, or the account is
disabled, the session ends at this request: ``accounts.signals.signed_out`` is sent with a
``reason`` (audit records a ``sign_out`` event with it), the session is flushed, and the person
sees a page that says why (403). Roles added in Entra are not taken up here: they come with the
next sign-in's token. The approve, reject and override views are behind this middleware like
every other, so a Lead or Admin whose role was removed can no longer decide anything.

The time of the next check is kept in the session (``SESSION_KEY``). A session seen for the first
time starts the clock (its roles were just read from the token, or it predates this check: then
it is checked within one period). Graph failing (throttled, down, no permission) never ends a
session: the failure is logged and the check is tried again after ``RETRY_SECONDS``.

The calls are Graph's identity throttling class (users, servicePrincipals, groups), about three
per person per period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import logout as auth_logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import signals
from accounts.app_roles import portal_role_grants
from accounts.models import PortalProfile
from accounts.roles import ALL_ROLES
from graph import GraphClient
from graph import groups as graph_groups
from graph import users as graph_users
from graph.errors import GraphError, GraphNotFound

logger = logging.getLogger(__name__)

SESSION_KEY = "portal_roles_next_check"
# After a failed check (Graph throttled or down), try again this soon, not a whole period later.
RETRY_SECONDS = 60


@dataclass(frozen=True)
class Standing:
    """What Entra says of a signed-in person now: ``reason`` is "" while they may stay signed
    in, else why the session ends (written for the person and the audit log)."""

    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def portal_roles_held(client: GraphClient, oid: str, wanted: frozenset[str]) -> frozenset[str]:
    """Which of the portal roles ``wanted`` the person ``oid`` holds now in Entra, directly or
    through a group they are a direct member of (nested groups do not pass app roles on).

    Reads the app roles of the portal's own service principal (``client.config.client_id``), its
    assignments, and the members of an assigned group only while a wanted role is still not
    found. Raises GraphError as it comes."""
    person = oid.lower()
    found: set[str] = set()
    groups: dict[str, set[str]] = {}
    for grant in portal_role_grants(client):
        if grant.is_group:
            groups.setdefault(grant.principal_id, set()).update(grant.roles)
        elif grant.principal_id == person:
            found |= grant.roles
    for group_id, group_roles in sorted(groups.items()):
        granted = group_roles & wanted
        if not granted - found:
            continue  # nothing this group could add that is still missing
        members = graph_groups.list_members(client, group_id)
        if any(m.is_user and m.id.lower() == person for m in members):
            found |= granted
        if wanted <= found:
            break
    return frozenset(found) & wanted


def standing_in_entra(client: GraphClient, oid: str, held: frozenset[str]) -> Standing:
    """Whether the person ``oid``, signed in with the portal roles ``held``, may stay signed in.
    Raises GraphError (other than an unknown user) as it comes."""
    try:
        user = graph_users.get_user(client, oid)
    except GraphNotFound:
        return Standing("Your account no longer exists in Entra ID.")
    if user.account_enabled is False:
        return Standing("Your account was disabled in Entra ID.")
    lost = held - portal_roles_held(client, oid, held)
    if lost:
        names = ", ".join(sorted(lost))
        return Standing(f"Your portal role was removed in Entra ID ({names}).")
    return Standing()


def _graph_client() -> GraphClient:
    from portal.graph_client import get_graph_client

    return get_graph_client()


class RoleRecheckMiddleware:
    """Ends the session of a person whose portal role was removed or whose account was disabled
    in Entra (module docstring). Goes after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ended = self._recheck(request)
        if ended is not None:
            return ended
        return self.get_response(request)

    def _recheck(self, request: HttpRequest) -> HttpResponse | None:
        user: Any = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        try:
            profile: PortalProfile = user.portal_profile
        except PortalProfile.DoesNotExist:
            return None
        held = profile.role_set() & frozenset(ALL_ROLES)
        if not held:
            return None  # nothing to lose: every page already refuses them
        now = time.time()
        period: int = settings.PORTAL_ROLE_RECHECK_SECONDS
        due = request.session.get(SESSION_KEY)
        if not isinstance(due, int | float):
            request.session[SESSION_KEY] = now + period
            return None
        if now < due:
            return None
        try:
            standing = standing_in_entra(_graph_client(), profile.oid, held)
        except (GraphError, ValueError) as exc:
            # Never sign everyone out because Graph is throttled or down: keep the session and
            # try again soon. ValueError: a client id that is not a GUID (a broken setting).
            code = getattr(exc, "code", type(exc).__name__)
            logger.warning(
                "could not re-check the portal roles of %s (%s); trying again in %ss",
                profile.oid,
                code,
                min(RETRY_SECONDS, period),
            )
            request.session[SESSION_KEY] = now + min(RETRY_SECONDS, period)
            return None
        if standing.ok:
            request.session[SESSION_KEY] = now + period
            return None
        logger.info("ending the session of %s: %s", profile.oid, standing.reason)
        signals.signed_out.send(
            sender=type(user), request=request, user=user, reason=standing.reason
        )
        auth_logout(request)  # flushes the session and rotates its key
        return render(
            request,
            "accounts/session_ended.html",
            {"reason": standing.reason},
            status=403,
        )
