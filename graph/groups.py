"""Groups: the people behind a role-assignable group that holds a directory role."""

from __future__ import annotations

from graph import odata
from graph.client import GraphClient
from graph.operations import operation
from graph.results import DirectoryObject, Group

_TRANSITIVE_MEMBERS = operation(
    "groups.transitive_members",
    "GET",
    "/v1.0/groups/{group_id}/transitiveMembers",
    reference="https://learn.microsoft.com/graph/api/group-list-transitivemembers",
    paged=True,
)


def list_transitive_members(client: GraphClient, group_id: str) -> list[DirectoryObject]:
    """Every member of the group, nested groups expanded (users, groups, service principals)."""
    # Reference: https://learn.microsoft.com/graph/api/group-list-transitivemembers
    return [
        DirectoryObject.from_graph(item)
        for item in client.iterate(_TRANSITIVE_MEMBERS, path={"group_id": group_id})
    ]


_MEMBERS = operation(
    "groups.members",
    "GET",
    "/v1.0/groups/{group_id}/members",
    reference="https://learn.microsoft.com/graph/api/group-list-members",
    paged=True,
)


def list_members(client: GraphClient, group_id: str) -> list[DirectoryObject]:
    """The group's direct members (users, groups, service principals), nested groups not
    expanded: what an app role assigned to the group reaches."""
    # Reference: https://learn.microsoft.com/graph/api/group-list-members
    return [
        DirectoryObject.from_graph(item)
        for item in client.iterate(_MEMBERS, path={"group_id": group_id})
    ]


def first_members(client: GraphClient, group_id: str, *, top: int = 1) -> list[DirectoryObject]:
    """The first ``top`` direct members of the group, in one request: enough to learn that the
    group exists (GraphNotFound when it does not) without reading a large group whole."""
    # Reference: https://learn.microsoft.com/graph/api/group-list-members
    page = client.get_page(_MEMBERS, path={"group_id": group_id}, query={"$top": str(top)})
    return [DirectoryObject.from_graph(item) for item in page.values]


# Added for directory role administration (roles.services): the groups a role may be given
# to. Reference: https://learn.microsoft.com/graph/api/group-list
_ROLE_ASSIGNABLE_GROUPS = operation(
    "groups.role_assignable",
    "GET",
    "/v1.0/groups",
    reference="https://learn.microsoft.com/graph/api/group-list",
    select=("id", "displayName", "isAssignableToRole", "securityEnabled", "mailEnabled"),
    filter_properties=("isAssignableToRole",),
    paged=True,
)


def list_role_assignable_groups(client: GraphClient) -> list[Group]:
    """Every group with ``isAssignableToRole`` true: the groups that can hold directory roles."""
    # Reference: https://learn.microsoft.com/graph/api/group-list
    query = {"$filter": "isAssignableToRole eq true"}
    return [
        Group.from_graph({"@odata.type": "#microsoft.graph.group", **item})
        for item in client.iterate(_ROLE_ASSIGNABLE_GROUPS, query=query)
    ]


# Added for the bulk operations (bulk.views: pick the incident's group by its name).
# Reference: https://learn.microsoft.com/graph/api/group-list
_GROUPS_STARTSWITH = operation(
    "groups.list_startswith",
    "GET",
    "/v1.0/groups",
    reference="https://learn.microsoft.com/graph/api/group-list",
    select=("id", "displayName", "isAssignableToRole", "securityEnabled", "mailEnabled"),
    filter_properties=("displayName",),
)


def list_groups_startswith(client: GraphClient, prefix: str, *, top: int = 10) -> list[Group]:
    """Up to ``top`` groups whose display name starts with ``prefix`` (one request)."""
    # Reference: https://learn.microsoft.com/graph/api/group-list
    query = {"$filter": f"startswith(displayName,{odata.quote(prefix.strip())})", "$top": str(top)}
    page = client.get_page(_GROUPS_STARTSWITH, query=query)
    return [
        Group.from_graph({"@odata.type": "#microsoft.graph.group", **item}) for item in page.values
    ]
