"""The portal's own app registration: its app roles, and who holds them.

People get portal roles (Agent, Lead, Admin) through the app roles of the portal's app
registration (``Helpdesk.Agent`` and so on; ``settings.PORTAL_ROLE_CLAIMS``). Their sign-in token
carries them, but /roles/ must also know the app roles of people who never signed in, so it reads
them here from the portal's service principal, addressed by the alternate key ``appId``.

Permissions: Application.Read.All (least privileged, application and delegated), or
Application.ReadWrite.All / Directory.Read.All. Throttling class "identity".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graph.client import GraphClient
from graph.operations import operation


@dataclass(frozen=True)
class AppRole:
    """One app role a service principal defines: ``id`` (what assignments name) and ``value``
    (what tokens carry, e.g. ``Helpdesk.Agent``; None for a role that cannot be in a token)."""

    id: str
    value: str | None
    display_name: str | None = None
    is_enabled: bool = True

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> AppRole:
        value = data.get("value")
        name = data.get("displayName")
        return cls(
            id=str(data.get("id") or "").lower(),
            value=value if isinstance(value, str) and value else None,
            display_name=name if isinstance(name, str) else None,
            is_enabled=data.get("isEnabled") is not False,
        )


@dataclass(frozen=True)
class AppRoleAssignment:
    """One app role given to a user, a group or a service principal (``principal_type``:
    ``User``, ``Group`` or ``ServicePrincipal``, as Graph spells them) on resource ``resource_id``.
    ``app_role_id`` is the all-zero GUID for the default access role (no app role)."""

    id: str
    principal_id: str
    principal_type: str
    principal_display_name: str
    app_role_id: str
    resource_id: str

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> AppRoleAssignment:
        def text(key: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) else ""

        return cls(
            id=text("id"),
            principal_id=text("principalId").lower(),
            principal_type=text("principalType"),
            principal_display_name=text("principalDisplayName"),
            app_role_id=text("appRoleId").lower(),
            resource_id=text("resourceId").lower(),
        )

    @property
    def is_user(self) -> bool:
        return self.principal_type.lower() == "user"

    @property
    def is_group(self) -> bool:
        return self.principal_type.lower() == "group"


_APP_ROLES = operation(
    "applications.service_principal_app_roles",
    "GET",
    "/v1.0/servicePrincipals(appId='{app_id}')",
    reference="https://learn.microsoft.com/graph/api/serviceprincipal-get",
    select=("id", "appId", "appRoles"),
)

_APP_ROLE_ASSIGNED_TO = operation(
    "applications.app_role_assigned_to",
    "GET",
    "/v1.0/servicePrincipals(appId='{app_id}')/appRoleAssignedTo",
    reference="https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignedto",
    select=(
        "id",
        "principalId",
        "principalType",
        "principalDisplayName",
        "appRoleId",
        "resourceId",
    ),
    paged=True,
)


def _guid(app_id: str) -> str:
    # The id goes inside a quoted key literal (appId='...'): only a GUID may, so nothing can
    # close the quote. Raises ValueError otherwise.
    return str(uuid.UUID(app_id))


def list_app_roles(client: GraphClient, app_id: str) -> list[AppRole]:
    """The app roles defined by the service principal of application ``app_id`` (its client
    id, a GUID: ValueError otherwise). Raises GraphError as it comes (404
    ``Request_ResourceNotFound``: no such app in this tenant)."""
    # Reference: https://learn.microsoft.com/graph/api/serviceprincipal-get
    data = client.call(_APP_ROLES, path={"app_id": _guid(app_id)}).data
    roles = data.get("appRoles") if isinstance(data, Mapping) else None
    return [AppRole.from_graph(r) for r in roles or () if isinstance(r, Mapping)]


def list_app_role_assigned_to(client: GraphClient, app_id: str) -> list[AppRoleAssignment]:
    """Every app role assignment granted *for* the service principal of application ``app_id``:
    the users, groups and service principals holding its app roles (groups not expanded).
    Raises GraphError as it comes."""
    # Reference: https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignedto
    return [
        AppRoleAssignment.from_graph(item)
        for item in client.iterate(_APP_ROLE_ASSIGNED_TO, path={"app_id": _guid(app_id)})
    ]
