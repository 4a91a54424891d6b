"""Service principals, as far as the portal reads its own: the app roles and who holds them.

- ``GET /servicePrincipals(appId='{appId}')`` and ``/servicePrincipals/{id}``: the service
  principal (``id``, ``appId``, ``displayName``, ``appRoles``).
- ``GET /servicePrincipals(appId='{appId}')/appRoleAssignedTo`` (or ``/{id}/appRoleAssignedTo``):
  the ``appRoleAssignment`` objects granted *for* it: ``principalId``, ``principalType`` (``User``,
  ``Group``, ``ServicePrincipal``), ``principalDisplayName``, ``appRoleId``, ``resourceId``.

- ``GET /applications(appId='{appId}')`` and ``/applications/{id}``: the app registration (the
  application object): ``identifierUris``, ``web.redirectUris``,
  ``api.requestedAccessTokenVersion``, ``appRoles`` (the preflight, ``manage.py tenant_check``).

Served from ``Tenant.apps`` (keyed by appId) and ``Tenant.app_role_assignments`` (principal id ->
app role values; a value counts for every app that defines it, which is only the portal here).
A group principal is listed as the group: expanding it is the caller's business, as in Graph.

Permissions: Application.Read.All (least privileged), Application.ReadWrite.All,
Application.ReadWrite.OwnedBy, Directory.Read.All, Directory.ReadWrite.All. Throttling class
"identity".

References: https://learn.microsoft.com/graph/api/serviceprincipal-get,
https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignedto,
https://learn.microsoft.com/graph/api/application-get
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from werkzeug.wrappers import Response

from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    collection_response,
    graph_route,
    json_response,
    project,
)
from entra_emulator.tenant import AppRegistration

APPLICATION_READ = (
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Application.ReadWrite.OwnedBy",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
# One service principal, addressed by the alternate key appId or by its object id.
_APPLICATION = r"/applications(?:\(appId='(?P<app_id>[^'/]+)'\)|/(?P<app_object_id>[^/()]+))"
_SP = r"/servicePrincipals(?:\(appId='(?P<app_id>[^'/]+)'\)|/(?P<sp_id>[^/()]+))"


def _find(ctx: GraphContext) -> AppRegistration:
    """The app of the addressed service principal; 404 as Graph answers for an unknown one."""
    app_id = ctx.params.get("app_id")
    sp_id = ctx.params.get("sp_id")
    object_id = ctx.params.get("app_object_id")
    with ctx.tenant.lock:
        for app in ctx.tenant.apps.values():
            if (
                (app_id and app.client_id.lower() == app_id.lower())
                or (sp_id and app.service_principal_id.lower() == sp_id.lower())
                or (object_id and application_object_id(app) == object_id.lower())
            ):
                return app
    missing = app_id or sp_id or object_id
    raise GraphHttpError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{missing}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def application_object_id(app: AppRegistration) -> str:
    """The application object's id: in Entra it differs from both the appId and the service
    principal's id (docs: application-get, "id and appId are referred to as the Object ID and
    Application (Client) ID"); the emulator derives a stable one from the appId."""
    return str(uuid.uuid5(uuid.UUID(app.client_id), "application"))


def registered_redirect_uri(uri: str) -> str:
    """A redirect URI as Entra holds it. The emulator keeps loopback URIs as patterns with ``*``
    for the port; Entra has no port wildcard, but it ignores the port of an http loopback
    (localhost / 127.0.0.1) redirect URI when it matches one, so such an app registers the URI
    without a port: https://learn.microsoft.com/entra/identity-platform/reply-url ("Localhost
    exceptions": the port component is ignored for matching)."""
    return uri.replace(":*/", "/", 1) if ":*/" in uri else uri


def app_role_json(app: AppRegistration, value: str, role_id: str) -> dict[str, Any]:
    """The ``appRole`` complex value of one role the app defines (assignable to users and groups,
    as the portal's roles are)."""
    return {
        "allowedMemberTypes": ["User"],
        "description": f"{value} of {app.display_name}",
        "displayName": value.split(".")[-1],
        "id": role_id,
        "isEnabled": True,
        "origin": "Application",
        "value": value,
    }


def assignment_id(principal_id: str, role_id: str) -> str:
    """A stable, Entra-looking assignment id (Entra's are base64url strings of 43 characters)."""
    raw = uuid.uuid5(uuid.UUID(role_id), principal_id).bytes * 2
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")[:43]


@graph_route("GET", _SP, throttle_class="identity", permissions=APPLICATION_READ)
def get_service_principal(ctx: GraphContext) -> Response:
    app = _find(ctx)
    item = {
        "id": app.service_principal_id,
        "appId": app.client_id,
        "displayName": app.display_name,
        "servicePrincipalType": "Application",
        "accountEnabled": True,
        "appRoles": [app_role_json(app, v, i) for v, i in sorted(app.app_roles.items())],
    }
    body = {
        "@odata.context": ctx.context_url("servicePrincipals/$entity"),
        **project(item, ctx.query.select),
    }
    return json_response(ctx, body)


# https://learn.microsoft.com/graph/api/application-get: GET /applications/{id} or
# /applications(appId='{appId}'), $select supported; permissions (application) Application.Read.All
# (least privileged), Application.ReadWrite.OwnedBy, Application.ReadWrite.All, Directory.Read.All,
# Directory.ReadWrite.All. Properties from the application resource type (web.redirectUris,
# api.requestedAccessTokenVersion, identifierUris): https://learn.microsoft.com/graph/api/resources/application
# docs silent on an unset requestedAccessTokenVersion's wire form: null is served, as the
# resource type's JSON shows nullable Int32.
@graph_route("GET", _APPLICATION, throttle_class="identity", permissions=APPLICATION_READ)
def get_application(ctx: GraphContext) -> Response:
    app = _find(ctx)
    item = {
        "id": application_object_id(app),
        "appId": app.client_id,
        "displayName": app.display_name,
        "signInAudience": "AzureADMyOrg",
        "identifierUris": list(app.identifier_uris),
        "web": {
            "redirectUris": [registered_redirect_uri(u) for u in app.redirect_uris],
            "homePageUrl": None,
            "logoutUrl": None,
            "implicitGrantSettings": {
                "enableAccessTokenIssuance": False,
                "enableIdTokenIssuance": False,
            },
        },
        "api": {
            "acceptMappedClaims": None,
            "knownClientApplications": [],
            "oauth2PermissionScopes": [],
            "preAuthorizedApplications": [],
            "requestedAccessTokenVersion": app.requested_access_token_version,
        },
        "appRoles": [app_role_json(app, v, i) for v, i in sorted(app.app_roles.items())],
    }
    body = {
        "@odata.context": ctx.context_url("applications/$entity"),
        **project(item, ctx.query.select),
    }
    return json_response(ctx, body)


@graph_route(
    "GET", _SP + r"/appRoleAssignedTo", throttle_class="identity", permissions=APPLICATION_READ
)
def list_app_role_assigned_to(ctx: GraphContext) -> Response:
    app = _find(ctx)
    tenant = ctx.tenant
    items: list[dict[str, Any]] = []
    with tenant.lock:
        for principal_id, values in sorted(tenant.app_role_assignments.items()):
            if principal_id in tenant.users:
                kind, name = "User", tenant.users[principal_id].get("displayName")
            elif principal_id in tenant.groups:
                kind, name = "Group", tenant.groups[principal_id].get("displayName")
            else:
                continue  # deleted principal: Graph drops its assignments too
            for value in sorted(values):
                role_id = app.app_roles.get(value)
                if role_id is None:
                    continue
                items.append(
                    {
                        "id": assignment_id(principal_id, role_id),
                        "deletedDateTime": None,
                        "appRoleId": role_id,
                        "createdDateTime": None,
                        "principalDisplayName": name,
                        "principalId": principal_id,
                        "principalType": kind,
                        "resourceDisplayName": app.display_name,
                        "resourceId": app.service_principal_id,
                    }
                )
    context = f"servicePrincipals('{app.service_principal_id}')/appRoleAssignedTo"
    return collection_response(ctx, items, context=context)
