"""Groups: the people behind a role-assignable group that holds a directory role."""

from __future__ import annotations

from graph.client import GraphClient
from graph.operations import operation
from graph.results import DirectoryObject

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
