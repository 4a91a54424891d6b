"""The directory roles /roles/ shows, and how the portal treats each: the catalog.

The roles (:data:`ROLES_SHOWN`): Privileged Authentication Administrator (PAA), Authentication
Administrator, Authentication Policy Administrator, Privileged Role Administrator and Global
Administrator. Which of them are read-only here (``ROLES_READ_ONLY``) or need a second Admin
(``ROLES_REQUIRING_APPROVAL``) comes from settings; the tenant's role definition ids from Graph.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from audit import activities as audit_activities
from graph import GraphClient
from graph import roles as graph_roles

PAA = "Privileged Authentication Administrator"
AUTH_ADMIN = "Authentication Administrator"
AUTH_POLICY_ADMIN = "Authentication Policy Administrator"
PRA = "Privileged Role Administrator"
GLOBAL_ADMIN = "Global Administrator"
ROLES_SHOWN: tuple[str, ...] = (PAA, AUTH_ADMIN, AUTH_POLICY_ADMIN, PRA, GLOBAL_ADMIN)
# Roles whose last active holder must never go (someone must always be able to reset an
# administrator's MFA, and someone must always be able to administer the tenant).
ROLES_NEVER_EMPTY: tuple[str, ...] = (GLOBAL_ADMIN, PAA)


# Entra's audit activities for a role given to someone, and taken away (directly or through
# PIM), as Microsoft's audit activity reference spells them (audit/activities.py).
ADD_ACTIVITIES: tuple[str, ...] = audit_activities.ROLE_ADD_ACTIVITIES
REMOVE_ACTIVITIES: tuple[str, ...] = audit_activities.ROLE_REMOVE_ACTIVITIES


_DEFINITION_CACHE_SECONDS = 24 * 3600


def role_template(role_name: str) -> str:
    """The template id of a role of :data:`ROLES_SHOWN`; KeyError for any other name."""
    if role_name not in ROLES_SHOWN:
        raise KeyError(role_name)
    return graph_roles.ROLE_TEMPLATES[role_name]


def role_is_read_only(role_name: str) -> bool:
    """Shown but never changed through the portal (``ROLES_READ_ONLY``, default Global Admin)."""
    return role_name in settings.ROLES_READ_ONLY


def managed_roles() -> list[str]:
    """The roles an Admin may change here, in display order."""
    return [r for r in ROLES_SHOWN if not role_is_read_only(r)]


def role_needs_approval(role_name: str) -> bool:
    """Whether granting ``role_name`` waits for a second Admin (``ROLES_REQUIRING_APPROVAL``)."""
    return role_name in settings.ROLES_REQUIRING_APPROVAL


def role_definition_id(client: GraphClient, role_name: str) -> str:
    """The tenant's role definition id for a built-in role (cached a day): asked for with
    ``$filter=id eq '<template id>'`` (built-in definition ids are their template ids; Graph
    does not support a ``$filter`` on ``templateId``), the answer's templateId checked locally
    (``graph.roles.get_role_definition_by_template``). Falls back to the template id when the
    tenant lists no definition for it."""
    template = role_template(role_name)
    key = f"accounts:role-definition:{template}"
    cached = cache.get(key)
    if isinstance(cached, str):
        return cached
    definition = graph_roles.get_role_definition_by_template(client, template)
    value = definition.id if definition is not None else template
    cache.set(key, value, timeout=_DEFINITION_CACHE_SECONDS)
    return value
