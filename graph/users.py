"""Users: get one, search, the manager, and (transitive) memberships."""

from __future__ import annotations

from collections.abc import Sequence

from graph import odata
from graph.batch import BatchCall, BatchOutcome, run_batch
from graph.client import GraphClient
from graph.errors import GraphError, GraphNotFound
from graph.operations import operation
from graph.results import DirectoryObject, Page, User, typed_items

# Everything the portal shows or decides on; $select keeps the read cheap in the budget.
USER_SELECT = (
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "jobTitle",
    "department",
    "accountEnabled",
    "userType",
    "otherMails",
    "signInSessionsValidFromDateTime",
)
SEARCH_PROPERTIES = ("displayName", "userPrincipalName", "mail")
MAX_PAGE_SIZE = 999

_GET_USER = operation(
    "users.get",
    "GET",
    "/v1.0/users/{user_id}",
    reference="https://learn.microsoft.com/graph/api/user-get",
    select=USER_SELECT,
)
_SEARCH_USERS = operation(
    "users.search",
    "GET",
    "/v1.0/users",
    reference="https://learn.microsoft.com/graph/search-query-parameter",
    select=USER_SELECT,
    search_properties=SEARCH_PROPERTIES,
    # $search on directory objects needs the advanced-query header (and $count=true).
    headers={"ConsistencyLevel": "eventual"},
    paged=True,
)
_LIST_USERS_STARTSWITH = operation(
    "users.list_startswith",
    "GET",
    "/v1.0/users",
    reference="https://learn.microsoft.com/graph/api/user-list",
    select=USER_SELECT,
    filter_properties=SEARCH_PROPERTIES,
    paged=True,
)
_GET_MANAGER = operation(
    "users.manager",
    "GET",
    "/v1.0/users/{user_id}/manager",
    reference="https://learn.microsoft.com/graph/api/user-list-manager",
)
# Memberships are read with the properties tiering decides on, named explicitly: without
# $select Graph returns each type's default set, which promises nothing. directoryObject is an
# open type, so Graph accepts the derived types' properties here (group: isAssignableToRole;
# directoryRole: roleTemplateId) without an OData cast (a cast needs the eventually consistent
# advanced-query index: https://learn.microsoft.com/graph/api/user-list-transitivememberof).
MEMBERSHIP_SELECT = ("id", "displayName", "isAssignableToRole", "roleTemplateId")
_TRANSITIVE_MEMBER_OF = operation(
    "users.transitive_member_of",
    "GET",
    "/v1.0/users/{user_id}/transitiveMemberOf",
    reference="https://learn.microsoft.com/graph/api/user-list-transitivememberof",
    select=MEMBERSHIP_SELECT,
    paged=True,
)


def _top(top: int) -> str:
    if not 1 <= top <= MAX_PAGE_SIZE:
        raise ValueError(f"top must be between 1 and {MAX_PAGE_SIZE}, not {top}")
    return str(top)


def get_user(client: GraphClient, user_id: str) -> User:
    """The user with object id or UPN ``user_id`` (a guest UPN with ``#EXT#`` is encoded).

    Raises GraphNotFound for an unknown user.
    """
    # Reference: https://learn.microsoft.com/graph/api/user-get
    response = client.call(_GET_USER, path={"user_id": user_id})
    return User.from_graph(response.data)


def get_users(client: GraphClient, user_ids: Sequence[str]) -> dict[str, User | GraphError]:
    """Many users at once through ``$batch``: each id maps to its User or its typed error."""
    # Reference: https://learn.microsoft.com/graph/json-batching
    calls = [BatchCall(_GET_USER, {"user_id": user_id}) for user_id in user_ids]
    result: dict[str, User | GraphError] = {}
    for user_id, outcome in zip(user_ids, run_batch(client, calls), strict=True):
        result[user_id] = User.from_graph(outcome.data) if outcome.error is None else outcome.error
    return result


def search_users(
    client: GraphClient, text: str, *, top: int = 25, next_link: str | None = None
) -> Page[User]:
    """Users whose display name has words starting with the words of ``text`` (Graph
    tokenises only displayName and description), or whose UPN or mail starts with ``text``
    (every other property is matched as ``startswith``), with ``@odata.count``. So "lee" finds
    Ann Lee by her name, and "ann.lee@" by her address, but the domain alone finds no one:
    https://learn.microsoft.com/graph/search-query-parameter. Pass the previous page's
    ``next_link`` to get the next page (``text`` is then ignored).

    Raises ValueError for input ``odata.search_term`` refuses.
    """
    # Reference: https://learn.microsoft.com/graph/search-query-parameter
    query = None
    if next_link is None:
        search = " OR ".join(odata.search_term(p, text.strip()) for p in SEARCH_PROPERTIES)
        query = {"$search": search, "$top": _top(top), "$count": "true"}
    page = client.get_page(_SEARCH_USERS, query=query, next_link=next_link)
    return Page(typed_items(page.values, User.from_graph), page.next_link, page.count)


def list_users_startswith(
    client: GraphClient, prefix: str, *, top: int = 25, next_link: str | None = None
) -> Page[User]:
    """Users whose display name, UPN or mail starts with ``prefix`` (plain ``$filter``, no
    advanced-query header needed)."""
    # Reference: https://learn.microsoft.com/graph/api/user-list
    query = None
    if next_link is None:
        literal = odata.quote(prefix.strip())
        clauses = [f"startswith({p},{literal})" for p in SEARCH_PROPERTIES]
        query = {"$filter": " or ".join(clauses), "$top": _top(top)}
    page = client.get_page(_LIST_USERS_STARTSWITH, query=query, next_link=next_link)
    return Page(typed_items(page.values, User.from_graph), page.next_link, page.count)


def get_manager(client: GraphClient, user_id: str) -> User | None:
    """The user's manager, or None when no manager is set (Graph answers 404 then)."""
    # Reference: https://learn.microsoft.com/graph/api/user-list-manager
    try:
        response = client.call(_GET_MANAGER, path={"user_id": user_id})
    except GraphNotFound as exc:
        if _no_manager(exc):
            return None
        raise
    return User.from_graph(response.data)


def _no_manager(exc: GraphNotFound) -> bool:
    # The user itself may be the missing resource: that is an error, not "no manager".
    return "'manager'" in exc.message


def list_transitive_member_of(client: GraphClient, user_id: str) -> list[DirectoryObject]:
    """Groups (``Group``, with ``is_assignable_to_role``), directory roles and administrative
    units the user belongs to, directly or through nested groups (:data:`MEMBERSHIP_SELECT`).

    ``is_assignable_to_role`` is None when Graph did not say (an app without the permission to
    read a type gets its objects with ``id`` and ``@odata.type`` only): callers that decide on it
    must treat None as "may be role-assignable"."""
    # Reference: https://learn.microsoft.com/graph/api/user-list-transitivememberof
    return [
        DirectoryObject.from_graph(item)
        for item in client.iterate(_TRANSITIVE_MEMBER_OF, path={"user_id": user_id})
    ]


# --- the same reads as inner requests of one $batch (graph.batch.run_batch) -----------------


def user_call(user_id: str) -> BatchCall:
    """:func:`get_user` as an inner request of a ``$batch``; read it with :func:`user_from`."""
    # Reference: https://learn.microsoft.com/graph/json-batching
    return BatchCall(_GET_USER, {"user_id": user_id})


def user_from(outcome: BatchOutcome) -> User:
    """The user a :func:`user_call` read; raises its error (GraphNotFound: no such user)."""
    # Reference: https://learn.microsoft.com/graph/api/user-get
    return User.from_graph(outcome.result())


def manager_call(user_id: str) -> BatchCall:
    """:func:`get_manager` as an inner request; read it with :func:`manager_from`."""
    # Reference: https://learn.microsoft.com/graph/json-batching
    return BatchCall(_GET_MANAGER, {"user_id": user_id})


def manager_from(outcome: BatchOutcome) -> User | None:
    """The manager a :func:`manager_call` read, None when none is set, as :func:`get_manager`."""
    # Reference: https://learn.microsoft.com/graph/api/user-list-manager
    try:
        return User.from_graph(outcome.result())
    except GraphNotFound as exc:
        if _no_manager(exc):
            return None
        raise


def transitive_member_of_call(user_id: str) -> BatchCall:
    """:func:`list_transitive_member_of` as an inner request (its first page)."""
    # Reference: https://learn.microsoft.com/graph/json-batching
    return BatchCall(_TRANSITIVE_MEMBER_OF, {"user_id": user_id})


def transitive_member_of_from(client: GraphClient, outcome: BatchOutcome) -> list[DirectoryObject]:
    """Every membership a :func:`transitive_member_of_call` read (the pages after the first
    read through ``client``), as :func:`list_transitive_member_of` gives them."""
    # Reference: https://learn.microsoft.com/graph/api/user-list-transitivememberof
    return [DirectoryObject.from_graph(item) for item in outcome.items(client)]
