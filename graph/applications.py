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

# The app registration itself (the application object, not its service principal): what the
# sign-in needs from it (redirect URIs, token version, Application ID URIs). The preflight
# (manage.py tenant_check) reads it; nothing else does.
_APPLICATION = operation(
    "applications.application",
    "GET",
    "/v1.0/applications(appId='{app_id}')",
    reference="https://learn.microsoft.com/graph/api/application-get",
    select=("id", "appId", "displayName", "identifierUris", "web", "api"),
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


@dataclass(frozen=True)
class Application:
    """What the sign-in needs from the app registration: ``web.redirectUris``,
    ``api.requestedAccessTokenVersion`` (None: Entra's default, v1 tokens for this API) and the
    ``identifierUris`` (Application ID URIs, "Expose an API")."""

    id: str
    app_id: str
    display_name: str
    identifier_uris: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    requested_access_token_version: int | None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> Application:
        def strings(value: Any) -> tuple[str, ...]:
            return tuple(v for v in value or () if isinstance(v, str))

        web_value, api_value = data.get("web"), data.get("api")
        web: Mapping[str, Any] = web_value if isinstance(web_value, Mapping) else {}
        api: Mapping[str, Any] = api_value if isinstance(api_value, Mapping) else {}
        version = api.get("requestedAccessTokenVersion")
        return cls(
            id=str(data.get("id") or ""),
            app_id=str(data.get("appId") or ""),
            display_name=str(data.get("displayName") or ""),
            identifier_uris=strings(data.get("identifierUris")),
            redirect_uris=strings(web.get("redirectUris")),
            requested_access_token_version=version if isinstance(version, int) else None,
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


def service_principal_id(client: GraphClient, app_id: str) -> str:
    """The object id of the service principal of application ``app_id`` (its client id, a GUID:
    ValueError otherwise): what Entra's audit events name as ``initiatedBy.app.servicePrincipalId``.
    Raises GraphError as it comes."""
    # Reference: https://learn.microsoft.com/graph/api/serviceprincipal-get
    data = client.call(_APP_ROLES, path={"app_id": _guid(app_id)}).data
    return str(data.get("id") or "").lower() if isinstance(data, Mapping) else ""


def get_application(client: GraphClient, app_id: str) -> Application:
    """The app registration of application ``app_id`` (its client id, a GUID: ValueError
    otherwise), addressed by the alternate key ``appId``. Needs Application.Read.All. Raises
    GraphError as it comes (404 ``Request_ResourceNotFound``: no such app in this tenant)."""
    # Reference: https://learn.microsoft.com/graph/api/application-get
    data = client.call(_APPLICATION, path={"app_id": _guid(app_id)}).data
    return Application.from_graph(data if isinstance(data, Mapping) else {})


def list_app_role_assigned_to(client: GraphClient, app_id: str) -> list[AppRoleAssignment]:
    """Every app role assignment granted *for* the service principal of application ``app_id``:
    the users, groups and service principals holding its app roles (groups not expanded).
    Raises GraphError as it comes."""
    # Reference: https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignedto
    return [
        AppRoleAssignment.from_graph(item)
        for item in client.iterate(_APP_ROLE_ASSIGNED_TO, path={"app_id": _guid(app_id)})
    ]
