"""Who the portal app's own role assignments in Entra name, read through Graph: the one read that
the session re-check (``accounts.middleware``) and the roles page (``roles.holders``) share."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.cache import cache
from redis.exceptions import RedisError

from accounts.roles import roles_from_claims
from graph import GraphClient
from graph import applications as graph_applications
from graph.errors import GraphError

logger = logging.getLogger(__name__)
_SERVICE_PRINCIPAL_KEY = "accounts:portal-service-principal-id"


@dataclass(frozen=True)
class PortalRoleGrant:
    """One assignment of a portal role: to a person, or to a group (whose direct members hold
    it; as in Entra, nested groups do not pass app roles on). ``principal_id`` is lower case."""

    principal_id: str
    is_group: bool
    roles: frozenset[str]


def portal_role_grants(client: GraphClient) -> list[PortalRoleGrant]:
    """Every assignment of an enabled app role of the portal's own app registration
    (``client.config.client_id``) that maps to a portal role (``settings.PORTAL_ROLE_CLAIMS``):
    two Graph reads, the app roles and ``appRoleAssignedTo``. Default access, disabled roles,
    other values and service principals are left out. Raises GraphError as it comes."""
    app_id = client.config.client_id
    values = {
        role.id: role.value
        for role in graph_applications.list_app_roles(client, app_id)
        if role.value and role.is_enabled
    }
    grants: list[PortalRoleGrant] = []
    for assignment in graph_applications.list_app_role_assigned_to(client, app_id):
        value = values.get(assignment.app_role_id)
        if value is None or not (assignment.is_user or assignment.is_group):
            continue
        roles = frozenset(roles_from_claims([value]))
        if roles:
            grants.append(
                PortalRoleGrant(assignment.principal_id.lower(), assignment.is_group, roles)
            )
    return grants


def portal_service_principal_id(client: GraphClient | None = None) -> str:
    """The object id of the portal app's service principal in this tenant (cached a day): how
    Entra's audit events name the portal when they carry no ``appId``. "" when Graph cannot
    say now (a later call asks again)."""
    try:
        cached = cache.get(_SERVICE_PRINCIPAL_KEY)
    except (RedisError, OSError):
        cached = None  # Redis down: ask Graph
    if isinstance(cached, str) and cached:
        return cached
    if client is None:
        from portal.graph_client import get_graph_client

        client = get_graph_client()
    try:
        found = graph_applications.service_principal_id(client, client.config.client_id)
    except (GraphError, ValueError) as exc:
        logger.warning("the portal's service principal id is unknown for now: %s", exc)
        return ""
    if found:
        try:
            cache.set(_SERVICE_PRINCIPAL_KEY, found, timeout=24 * 3600)
        except (RedisError, OSError):
            pass  # not cached: asked again next time
    return found
