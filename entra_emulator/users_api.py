"""Users, managers and group memberships (Graph v1.0, throttling class "identity").

- ``GET /users`` with ``$filter``, ``$search`` (needs ``ConsistencyLevel: eventual``),
  ``$select``, ``$top`` (1..999, default 100), ``$count``, ``$orderby`` and paging;
- ``GET /users/{id | userPrincipalName}`` (guest UPNs with ``#EXT#`` arrive URL-decoded);
- ``GET /me`` for delegated tokens;
- ``GET /users/{id}/manager``, ``/memberOf``, ``/transitiveMemberOf`` (groups and directory
  roles, with ``@odata.type``; the ``/microsoft.graph.group`` cast keeps groups only);
- ``GET /groups``, ``/groups/{id}``, ``/groups/{id}/members``, ``/groups/{id}/transitiveMembers``.

As in Graph, a user read without ``$select`` returns only the default property set, so a client
that needs ``accountEnabled`` or ``department`` must select them.
References: https://learn.microsoft.com/graph/api/user-list,
https://learn.microsoft.com/graph/api/user-get, https://learn.microsoft.com/graph/api/user-list-manager,
https://learn.microsoft.com/graph/api/user-list-transitivememberof,
https://learn.microsoft.com/graph/api/group-list-members
"""

from __future__ import annotations

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

USER_READ = (
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.ReadBasic.All",
)
MEMBERSHIP_READ = (
    "GroupMember.Read.All",
    "Group.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "GroupMember.ReadWrite.All",
)
DEFAULT_USER_PROPERTIES = [
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
]
SEARCHABLE_USER_PROPERTIES = {
    "displayname",
    "givenname",
    "surname",
    "userprincipalname",
    "mail",
    "jobtitle",
    "department",
    "employeeid",
    "mailnickname",
    "othermails",
}
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
ROLE_TYPE = "#microsoft.graph.directoryRole"


def _not_found(resource: str) -> GraphHttpError:
    return GraphHttpError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{resource}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def _user_or_404(ctx: GraphContext, key: str) -> dict[str, Any]:
    user = ctx.tenant.find_user(key)
    if user is None:
        raise _not_found(key)
    return user


def _default_select(ctx: GraphContext) -> None:
    if ctx.query.select is None:
        ctx.query.select = list(DEFAULT_USER_PROPERTIES)


def _check_search_properties(ctx: GraphContext) -> None:
    if ctx.query.search is None:
        return
    for clause in ctx.query.search.clauses:
        for term in clause:
            if term.property.lower() not in SEARCHABLE_USER_PROPERTIES:
                raise GraphHttpError(
                    400,
                    "Request_UnsupportedQuery",
                    f"Search is not supported on property '{term.property}'.",
                )


def _typed(item: dict[str, Any], odata_type: str) -> dict[str, Any]:
    return {"@odata.type": odata_type, **item}


def _directory_object(ctx: GraphContext, object_id: str) -> dict[str, Any] | None:
    if object_id in ctx.tenant.users:
        return _typed(ctx.tenant.users[object_id], USER_TYPE)
    if object_id in ctx.tenant.groups:
        return _typed(ctx.tenant.groups[object_id], GROUP_TYPE)
    return None


def _directory_roles_of(ctx: GraphContext, principal_ids: set[str]) -> list[dict[str, Any]]:
    """Activated directory roles held (active assignment, tenant scope) by any principal."""
    roles: dict[str, dict[str, Any]] = {}
    for assignment in ctx.tenant.role_assignments.values():
        if assignment.get("principalId") not in principal_ids:
            continue
        if assignment.get("directoryScopeId", "/") != "/":
            continue
        definition = ctx.tenant.role_definitions.get(assignment.get("roleDefinitionId", ""))
        if not definition:
            continue
        template_id = definition.get("templateId") or definition.get("id")
        role_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"directoryRole/{template_id}"))
        roles[role_id] = {
            "@odata.type": ROLE_TYPE,
            "id": role_id,
            "deletedDateTime": None,
            "description": definition.get("description"),
            "displayName": definition.get("displayName"),
            "roleTemplateId": template_id,
        }
    return list(roles.values())


# --- users --------------------------------------------------------------------------------------


@graph_route(
    "GET",
    r"/users",
    throttle_class="identity",
    permissions=USER_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_users(ctx: GraphContext) -> Response:
    _check_search_properties(ctx)
    _default_select(ctx)
    with ctx.tenant.lock:
        matching = [user for user in ctx.tenant.users.values() if ctx.query.matches(user)]
    return collection_response(ctx, matching, context="users", max_top=999, filtered=True)


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)",
    throttle_class="identity",
    permissions=USER_READ,
    versions=("v1.0", "beta"),
)
def get_user(ctx: GraphContext) -> Response:
    user = _user_or_404(ctx, ctx.params["user_id"])
    _default_select(ctx)
    body = {"@odata.context": ctx.context_url("users/$entity"), **project(user, ctx.query.select)}
    return json_response(ctx, body)


@graph_route(
    "GET",
    r"/me",
    throttle_class="identity",
    permissions=("User.Read", *USER_READ),
    versions=("v1.0", "beta"),
)
def get_me(ctx: GraphContext) -> Response:
    if ctx.token.is_app or not ctx.token.oid:
        raise GraphHttpError(
            400,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        )
    user = _user_or_404(ctx, ctx.token.oid)
    _default_select(ctx)
    body = {"@odata.context": ctx.context_url("users/$entity"), **project(user, ctx.query.select)}
    return json_response(ctx, body)


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)/manager",
    throttle_class="identity",
    permissions=USER_READ,
    versions=("v1.0", "beta"),
)
def get_manager(ctx: GraphContext) -> Response:
    user = _user_or_404(ctx, ctx.params["user_id"])
    manager_id = ctx.tenant.managers.get(user["id"])
    manager = ctx.tenant.users.get(manager_id) if manager_id else None
    if manager is None:
        raise _not_found("manager")
    _default_select(ctx)
    body = {
        "@odata.context": ctx.context_url("directoryObjects/$entity"),
        **project(_typed(manager, USER_TYPE), ctx.query.select),
    }
    return json_response(ctx, body)


def _membership(ctx: GraphContext, *, transitive: bool, groups_only: bool) -> Response:
    user = _user_or_404(ctx, ctx.params["user_id"])
    tenant = ctx.tenant
    with tenant.lock:
        if transitive:
            group_ids = tenant.transitive_group_ids(user["id"])
        else:
            group_ids = [g for g, members in tenant.group_members.items() if user["id"] in members]
        items = [_typed(tenant.groups[g], GROUP_TYPE) for g in group_ids if g in tenant.groups]
        if not groups_only:
            principals = {user["id"], *group_ids} if transitive else {user["id"]}
            items.extend(_directory_roles_of(ctx, principals))
    context = "directoryObjects" if not groups_only else "groups"
    return collection_response(ctx, items, context=context, max_top=999)


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)/transitiveMemberOf",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_transitive_member_of(ctx: GraphContext) -> Response:
    return _membership(ctx, transitive=True, groups_only=False)


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)/transitiveMemberOf/microsoft\.graph\.group",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_transitive_groups(ctx: GraphContext) -> Response:
    return _membership(ctx, transitive=True, groups_only=True)


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)/memberOf",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_member_of(ctx: GraphContext) -> Response:
    return _membership(ctx, transitive=False, groups_only=False)


# --- groups -------------------------------------------------------------------------------------


def _group_or_404(ctx: GraphContext) -> dict[str, Any]:
    group = ctx.tenant.groups.get(ctx.params["group_id"])
    if group is None:
        raise _not_found(ctx.params["group_id"])
    return group


@graph_route(
    "GET",
    r"/groups",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_groups(ctx: GraphContext) -> Response:
    with ctx.tenant.lock:
        groups = list(ctx.tenant.groups.values())
    return collection_response(ctx, groups, context="groups", max_top=999)


@graph_route(
    "GET",
    r"/groups/(?P<group_id>[^/]+)",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
)
def get_group(ctx: GraphContext) -> Response:
    group = _group_or_404(ctx)
    body = {"@odata.context": ctx.context_url("groups/$entity"), **project(group, ctx.query.select)}
    return json_response(ctx, body)


def _members(ctx: GraphContext, *, transitive: bool) -> Response:
    group = _group_or_404(ctx)
    tenant = ctx.tenant
    with tenant.lock:
        ordered: list[str] = []
        seen: set[str] = set()
        frontier = [group["id"]]
        while frontier:
            current = frontier.pop(0)
            for member in sorted(tenant.group_members.get(current, set())):
                if member in seen:
                    continue
                seen.add(member)
                ordered.append(member)
                if transitive and member in tenant.groups:
                    frontier.append(member)
        items = [obj for m in ordered if (obj := _directory_object(ctx, m)) is not None]
    return collection_response(ctx, items, context="directoryObjects", max_top=999)


@graph_route(
    "GET",
    r"/groups/(?P<group_id>[^/]+)/members",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_group_members(ctx: GraphContext) -> Response:
    return _members(ctx, transitive=False)


@graph_route(
    "GET",
    r"/groups/(?P<group_id>[^/]+)/transitiveMembers",
    throttle_class="identity",
    permissions=MEMBERSHIP_READ,
    versions=("v1.0", "beta"),
    directory=True,
)
def list_group_transitive_members(ctx: GraphContext) -> Response:
    return _members(ctx, transitive=True)
