"""Tiering that follows Entra's: does this portal user hold PAA in the tenant right now?

With ``PORTAL_MIRROR_ENTRA_TIERING`` on, :func:`agent_holds_paa` says whether a portal user holds
Privileged Authentication Administrator *actively* in the tenant right now (directly, through a
role-assignable group, or as an activated PIM role); ``mfa.policy`` lets only such people act on
privileged targets (:func:`tiering_refusal`, :func:`approval_refusal`).

:func:`staff_now` reads afresh what the execution-time checks of every flow decide with: a portal
user's portal roles from the portal app's role assignments in Entra (not the session) and
whether their account is enabled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from graph import GraphClient
from graph import roles as graph_roles
from graph import users as graph_users
from graph.errors import GraphError, GraphNotFound
from graph.results import Group
from roles.catalog import PAA, role_definition_id, role_template
from roles.holders import read_portal_roles

logger = logging.getLogger(__name__)
_PAA_CACHE_VERSION = 1


def oid_of(user: Any) -> str:
    profile = getattr(user, "portal_profile", None)
    return str(getattr(profile, "oid", "") or getattr(user, "username", "") or "")


def _paa_key(oid: str) -> str:
    return f"accounts:holds-paa:v{_PAA_CACHE_VERSION}:{oid.lower()}"


def principal_holds_active(client: GraphClient, principal_id: str, role_name: str) -> bool:
    """Whether ``principal_id`` (a user) holds ``role_name`` actively now: a direct assignment,
    an assignment to a role-assignable group it belongs to, or an activated role (a directoryRole
    in its transitiveMemberOf). Raises GraphError as it comes."""
    definition = role_definition_id(client, role_name)
    template = role_template(role_name)
    direct = graph_roles.list_role_assignments(
        client, role_definition_id=definition, principal_id=principal_id
    )
    if any(a.directory_scope_id == "/" for a in direct):
        return True
    for membership in graph_users.list_transitive_member_of(client, principal_id):
        if membership.is_directory_role and membership.role_template_id == template:
            return True
        # An unknown isAssignableToRole is read, not assumed false (fail closed).
        if isinstance(membership, Group) and membership.is_assignable_to_role is not False:
            through = graph_roles.list_role_assignments(
                client, role_definition_id=definition, principal_id=membership.id
            )
            if any(a.directory_scope_id == "/" for a in through):
                return True
    return False


def agent_holds_paa(user: Any, *, use_cache: bool = True) -> bool:
    """Whether the portal user ``user`` holds Privileged Authentication Administrator actively
    in the tenant now (see :func:`principal_holds_active`).

    Checked through Graph and cached in the shared cache for ``PORTAL_PAA_CHECK_CACHE_SECONDS``;
    ``use_cache=False`` reads afresh. Fails closed: a Graph failure answers False (logged, not
    cached), so an outage never widens what an agent may do. Anonymous users: False.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    oid = oid_of(user)
    if not oid:
        return False
    key = _paa_key(oid)
    if use_cache:
        cached = cache.get(key)
        if isinstance(cached, bool):
            return cached
    from portal.graph_client import get_graph_client

    try:
        held = principal_holds_active(get_graph_client(), oid, PAA)
    except GraphError as exc:
        logger.warning("could not check whether %s holds PAA: %s", oid, exc)
        return False
    cache.set(key, held, timeout=settings.PORTAL_PAA_CHECK_CACHE_SECONDS)
    return held


def paa_cache_forget(oids: Iterable[str]) -> None:
    """Drop the cached PAA answer of these people (after a change of who holds it)."""
    cache.delete_many([_paa_key(oid) for oid in oids])


def tiering_refusal(agent: Any, *, privileged: bool) -> str | None:
    """Why ``agent`` may not act on this target under the mirrored Entra tiering, or None.

    Only privileged targets are restricted, and only while ``PORTAL_MIRROR_ENTRA_TIERING`` is on.
    """
    if not privileged or not settings.PORTAL_MIRROR_ENTRA_TIERING:
        return None
    if agent_holds_paa(agent):
        return None
    return (
        "This person is privileged. Like Entra itself, the portal lets only people who hold "
        f"{PAA} in the tenant act on privileged people, and you do not hold it now."
    )


def approval_refusal(requester: Any, *, privileged: bool) -> str | None:
    """Why a request by ``requester`` on a privileged target can no longer be approved (the
    requester no longer holds PAA), or None."""
    if not privileged or not settings.PORTAL_MIRROR_ENTRA_TIERING:
        return None
    if agent_holds_paa(requester):
        return None
    return (
        f"The requester no longer holds {PAA} in the tenant, so under Entra's tiering they may "
        "not act on this privileged person: this request can no longer be approved. Reject it, "
        "or ask someone who holds the role to request it again."
    )


@dataclass(frozen=True)
class StaffNow:
    """A portal user as Entra says now: ``roles``, the portal roles their app role assignments
    give them (directly or through a group), and whether the account is ``enabled``."""

    oid: str
    roles: frozenset[str]
    enabled: bool

    def holds(self, *roles: str) -> bool:
        return bool(self.roles & frozenset(roles))


def staff_now(
    client: GraphClient,
    user: Any,
    *,
    portal_roles: Mapping[str, tuple[str, ...]] | None = None,
) -> StaffNow:
    """``user`` (a portal user) as Entra says now, read without a cache: their portal roles
    (``portal_roles``, a read of :func:`roles.holders.read_portal_roles` to share between
    people, or read here) and ``accountEnabled``. A person Graph no longer knows has no role and
    is not enabled. Raises GraphError as it comes (the engine waits on a throttled or transient
    one)."""
    oid = oid_of(user)
    held = read_portal_roles(client) if portal_roles is None else portal_roles
    try:
        enabled = graph_users.get_user(client, oid).account_enabled is not False
    except GraphNotFound:
        return StaffNow(oid=oid, roles=frozenset(), enabled=False)
    return StaffNow(oid=oid, roles=frozenset(held.get(oid.lower(), ())), enabled=enabled)


def holds_paa_now(client: GraphClient, user: Any) -> bool:
    """Whether ``user`` holds PAA actively in the tenant now, read without a cache. Raises
    GraphError as it comes (unlike :func:`agent_holds_paa`, which answers False)."""
    return principal_holds_active(client, oid_of(user), PAA)
