"""Directory role management: definitions, active assignments (direct, or time-bound through
PIM's ``roleAssignmentScheduleRequests``), PIM eligibility.

Template ids of the roles the portal cares about (the same in every tenant) are in
:data:`ROLE_TEMPLATES` (the template IDs of
https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference). A
built-in role definition's ``id`` is its template id, so the portal looks a definition up with
``$filter=id eq``: ``templateId`` is not a filterable property of roleDefinitions (only id,
displayName and isBuiltIn "Support $filter (eq, in)":
https://learn.microsoft.com/graph/api/resources/unifiedroledefinition), and Graph refuses it.
"""

from __future__ import annotations

from datetime import datetime

from graph import odata
from graph.batch import BatchCall, BatchOutcome
from graph.client import GraphClient
from graph.operations import operation
from graph.results import (
    RoleAssignment,
    RoleAssignmentScheduleRequest,
    RoleDefinition,
    RoleEligibilitySchedule,
    RoleEligibilityScheduleRequest,
)

ROLE_TEMPLATES = {
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Authentication Administrator": "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    "Authentication Policy Administrator": "0526716b-113d-4c15-b2c8-68e3c22b9f80",
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
}
ELIGIBILITY_ACTIONS = ("adminAssign", "adminRemove", "adminUpdate", "adminExtend", "adminRenew")
# The administrator's actions on an active assignment through PIM (the self* actions are a
# person activating their own eligibility, which the portal never does for anyone).
ASSIGNMENT_SCHEDULE_ACTIONS = ELIGIBILITY_ACTIONS

_BASE = "/v1.0/roleManagement/directory"
_ROLE_FILTERS = ("roleDefinitionId", "principalId")

_LIST_DEFINITIONS = operation(
    "roles.definitions",
    "GET",
    f"{_BASE}/roleDefinitions",
    reference="https://learn.microsoft.com/graph/api/rbacapplication-list-roledefinitions",
    select=("id", "displayName", "templateId", "isBuiltIn", "isEnabled", "description"),
    # unifiedRoleDefinition: "Supports $filter (eq, in)" on id, displayName, isBuiltIn only.
    filter_properties=("id",),
    paged=True,
)
_LIST_ASSIGNMENTS = operation(
    "roles.assignments",
    "GET",
    f"{_BASE}/roleAssignments",
    reference="https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments",
    # No $select: with one, some servers drop the expanded principal (OData v4 keeps it, but
    # the few properties of an assignment are not worth the ambiguity).
    expand=("principal",),
    filter_properties=_ROLE_FILTERS,
    paged=True,
)
_CREATE_ASSIGNMENT = operation(
    "roles.create_assignment",
    "POST",
    f"{_BASE}/roleAssignments",
    reference="https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments",
    body=("roleDefinitionId", "principalId", "directoryScopeId"),
)
_DELETE_ASSIGNMENT = operation(
    "roles.delete_assignment",
    "DELETE",
    f"{_BASE}/roleAssignments/{{assignment_id}}",
    reference="https://learn.microsoft.com/graph/api/unifiedroleassignment-delete",
)
_LIST_ELIGIBILITY_SCHEDULES = operation(
    "roles.eligibility_schedules",
    "GET",
    f"{_BASE}/roleEligibilitySchedules",
    reference="https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedules",
    # No $select, as for role assignments: the expanded principal must come back.
    expand=("principal",),
    filter_properties=_ROLE_FILTERS,
    paged=True,
)
_SCHEDULE_REQUEST_SELECT = (
    "id",
    "action",
    "status",
    "roleDefinitionId",
    "principalId",
    "directoryScopeId",
    "justification",
    "createdDateTime",
    "scheduleInfo",
)
_LIST_ELIGIBILITY_REQUESTS = operation(
    "roles.eligibility_requests",
    "GET",
    f"{_BASE}/roleEligibilityScheduleRequests",
    reference=(
        "https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedulerequests"
    ),
    select=_SCHEDULE_REQUEST_SELECT,
    filter_properties=_ROLE_FILTERS,
    paged=True,
)
_CREATE_ELIGIBILITY_REQUEST = operation(
    "roles.create_eligibility_request",
    "POST",
    f"{_BASE}/roleEligibilityScheduleRequests",
    reference=(
        "https://learn.microsoft.com/graph/api/rbacapplication-post-roleeligibilityschedulerequests"
    ),
    body=(
        "action",
        "roleDefinitionId",
        "principalId",
        "directoryScopeId",
        "justification",
        "scheduleInfo.startDateTime",
        "scheduleInfo.expiration.type",
        "scheduleInfo.expiration.endDateTime",
    ),
)

_LIST_ASSIGNMENT_REQUESTS = operation(
    "roles.assignment_schedule_requests",
    "GET",
    f"{_BASE}/roleAssignmentScheduleRequests",
    reference=(
        "https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignmentschedulerequests"
    ),
    select=(*_SCHEDULE_REQUEST_SELECT, "targetScheduleId"),
    filter_properties=_ROLE_FILTERS,
    paged=True,
)
_CREATE_ASSIGNMENT_REQUEST = operation(
    "roles.create_assignment_schedule_request",
    "POST",
    f"{_BASE}/roleAssignmentScheduleRequests",
    reference=(
        "https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignmentschedulerequests"
    ),
    body=(
        "action",
        "roleDefinitionId",
        "principalId",
        "directoryScopeId",
        "justification",
        "scheduleInfo.startDateTime",
        "scheduleInfo.expiration.type",
        "scheduleInfo.expiration.endDateTime",
    ),
)


def _role_filter(role_definition_id: str | None, principal_id: str | None) -> dict[str, str]:
    clauses = []
    if role_definition_id is not None:
        clauses.append(f"roleDefinitionId eq {odata.quote(role_definition_id)}")
    if principal_id is not None:
        clauses.append(f"principalId eq {odata.quote(principal_id)}")
    if not clauses:
        raise ValueError("give role_definition_id, principal_id or both")
    return {"$filter": " and ".join(clauses)}


def get_role_definition_by_template(client: GraphClient, template_id: str) -> RoleDefinition | None:
    """The tenant's role definition for a built-in role template, or None if there is none.

    A built-in definition's id is its template id; ``$filter`` on ``id`` is documented, on
    ``templateId`` it is not (Graph answers 400), so the id is asked for and the answer's
    ``templateId`` checked locally."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roledefinitions
    query = {"$filter": f"id eq {odata.quote(template_id)}"}
    for item in client.iterate(_LIST_DEFINITIONS, query=query):
        definition = RoleDefinition.from_graph(item)
        if (definition.template_id or definition.id).lower() == template_id.lower():
            return definition
    return None


def list_role_assignments(
    client: GraphClient,
    *,
    role_definition_id: str | None = None,
    principal_id: str | None = None,
) -> list[RoleAssignment]:
    """Active assignments of a role, of a principal, or of both; each with its ``principal``
    (a user or a role-assignable group). Raises ValueError when neither is given."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments
    query = _role_filter(role_definition_id, principal_id)
    return [
        RoleAssignment.from_graph(item) for item in client.iterate(_LIST_ASSIGNMENTS, query=query)
    ]


def create_role_assignment(
    client: GraphClient,
    *,
    role_definition_id: str,
    principal_id: str,
    directory_scope_id: str = "/",
) -> RoleAssignment:
    """Assign a role (active, permanent) at ``directory_scope_id`` (``/`` is the tenant).

    Not repeated after a lost answer (POST): on GraphTransient ``OutcomeUnknown`` list first.
    """
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments
    response = client.call(
        _CREATE_ASSIGNMENT,
        body={
            "roleDefinitionId": role_definition_id,
            "principalId": principal_id,
            "directoryScopeId": directory_scope_id,
        },
    )
    return RoleAssignment.from_graph(response.data)


def delete_role_assignment(client: GraphClient, assignment_id: str) -> None:
    """Remove an active assignment. Raises GraphNotFound if it does not exist."""
    # Reference: https://learn.microsoft.com/graph/api/unifiedroleassignment-delete
    client.call(_DELETE_ASSIGNMENT, path={"assignment_id": assignment_id})


def list_role_eligibility_schedules(
    client: GraphClient,
    *,
    role_definition_id: str | None = None,
    principal_id: str | None = None,
) -> list[RoleEligibilitySchedule]:
    """PIM eligibilities of a role and/or a principal, each with its ``principal``."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedules
    query = _role_filter(role_definition_id, principal_id)
    return [
        RoleEligibilitySchedule.from_graph(item)
        for item in client.iterate(_LIST_ELIGIBILITY_SCHEDULES, query=query)
    ]


def list_role_eligibility_schedule_requests(
    client: GraphClient,
    *,
    role_definition_id: str | None = None,
    principal_id: str | None = None,
) -> list[RoleEligibilityScheduleRequest]:
    """Eligibility requests (adminAssign, adminRemove, ...) of a role and/or a principal."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedulerequests
    query = _role_filter(role_definition_id, principal_id)
    return [
        RoleEligibilityScheduleRequest.from_graph(item)
        for item in client.iterate(_LIST_ELIGIBILITY_REQUESTS, query=query)
    ]


def create_role_eligibility_schedule_request(
    client: GraphClient,
    *,
    action: str,
    role_definition_id: str,
    principal_id: str,
    justification: str,
    start: datetime,
    end: datetime | None = None,
    directory_scope_id: str = "/",
) -> RoleEligibilityScheduleRequest:
    """Ask PIM to make a principal eligible (``adminAssign``) or not (``adminRemove``), from
    ``start`` until ``end`` (None: no expiry). Needs Entra ID P2 in a real tenant.

    Raises ValueError for an unknown action or naive datetimes.
    """
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-post-roleeligibilityschedulerequests
    if action not in ELIGIBILITY_ACTIONS:
        raise ValueError(f"action must be one of {ELIGIBILITY_ACTIONS}, not {action!r}")
    expiration: dict[str, str] = (
        {"type": "afterDateTime", "endDateTime": odata.datetime_literal(end)}
        if end is not None
        else {"type": "noExpiration"}
    )
    response = client.call(
        _CREATE_ELIGIBILITY_REQUEST,
        body={
            "action": action,
            "roleDefinitionId": role_definition_id,
            "principalId": principal_id,
            "directoryScopeId": directory_scope_id,
            "justification": justification,
            "scheduleInfo": {
                "startDateTime": odata.datetime_literal(start),
                "expiration": expiration,
            },
        },
    )
    return RoleEligibilityScheduleRequest.from_graph(response.data)


def list_all_role_assignments(client: GraphClient) -> list[RoleAssignment]:
    """Every active directory role assignment of the tenant (no filter), with ``principal``.

    One paged read instead of one per person: the portal caches the principals it names to mark
    privileged people in search results.
    """
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments
    return [RoleAssignment.from_graph(item) for item in client.iterate(_LIST_ASSIGNMENTS)]


def list_all_role_eligibility_schedules(client: GraphClient) -> list[RoleEligibilitySchedule]:
    """Every PIM eligibility of the tenant (no filter), each with its ``principal``."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedules
    return [
        RoleEligibilitySchedule.from_graph(item)
        for item in client.iterate(_LIST_ELIGIBILITY_SCHEDULES)
    ]


def list_role_assignment_schedule_requests(
    client: GraphClient,
    *,
    role_definition_id: str | None = None,
    principal_id: str | None = None,
) -> list[RoleAssignmentScheduleRequest]:
    """PIM requests for active assignments (adminAssign, adminRemove, ...) of a role and/or a
    principal, in Graph's order. The portal reads the end of a time-bound active assignment
    from the newest ``adminAssign`` of its principal. Raises ValueError when neither is given."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignmentschedulerequests
    query = _role_filter(role_definition_id, principal_id)
    return [
        RoleAssignmentScheduleRequest.from_graph(item)
        for item in client.iterate(_LIST_ASSIGNMENT_REQUESTS, query=query)
    ]


def create_role_assignment_schedule_request(
    client: GraphClient,
    *,
    action: str,
    role_definition_id: str,
    principal_id: str,
    justification: str,
    start: datetime | None = None,
    end: datetime | None = None,
    directory_scope_id: str = "/",
) -> RoleAssignmentScheduleRequest:
    """Ask PIM for an *active* assignment (``adminAssign``) from ``start`` until ``end`` (None:
    no expiry), or to take one away (``adminRemove``: no schedule is sent). Entra's default
    policy refuses an ``adminAssign`` without a justification (400
    RoleAssignmentRequestPolicyValidationFailed); a duplicate is 400 RoleAssignmentExists,
    removing what is not there 400 RoleAssignmentDoesNotExist. Needs Entra ID P2 in a real
    tenant. Not repeated after a lost answer (POST): on ``OutcomeUnknown`` list first.

    Raises ValueError for an unknown action, a missing ``start`` for a non-removal, or naive
    datetimes.
    """
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignmentschedulerequests
    if action not in ASSIGNMENT_SCHEDULE_ACTIONS:
        raise ValueError(f"action must be one of {ASSIGNMENT_SCHEDULE_ACTIONS}, not {action!r}")
    body: dict[str, object] = {
        "action": action,
        "roleDefinitionId": role_definition_id,
        "principalId": principal_id,
        "directoryScopeId": directory_scope_id,
        "justification": justification,
    }
    if action != "adminRemove":
        if start is None:
            raise ValueError(f"{action} needs a start")
        expiration: dict[str, str] = (
            {"type": "afterDateTime", "endDateTime": odata.datetime_literal(end)}
            if end is not None
            else {"type": "noExpiration"}
        )
        body["scheduleInfo"] = {
            "startDateTime": odata.datetime_literal(start),
            "expiration": expiration,
        }
    response = client.call(_CREATE_ASSIGNMENT_REQUEST, body=body)
    return RoleAssignmentScheduleRequest.from_graph(response.data)


# --- the same reads as inner requests of one $batch (graph.batch.run_batch) -----------------


def role_assignments_call(
    *, role_definition_id: str | None = None, principal_id: str | None = None
) -> BatchCall:
    """:func:`list_role_assignments` as an inner request of a ``$batch`` (its first page); read
    it with :func:`role_assignments_from`. Raises ValueError when neither id is given."""
    # Reference: https://learn.microsoft.com/graph/json-batching
    return BatchCall(_LIST_ASSIGNMENTS, query=_role_filter(role_definition_id, principal_id))


def role_assignments_from(client: GraphClient, outcome: BatchOutcome) -> list[RoleAssignment]:
    """Every assignment a :func:`role_assignments_call` read (the pages after the first read
    through ``client``); raises the inner request's error."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments
    return [RoleAssignment.from_graph(item) for item in outcome.items(client)]


def role_eligibility_schedules_call(
    *, role_definition_id: str | None = None, principal_id: str | None = None
) -> BatchCall:
    """:func:`list_role_eligibility_schedules` as an inner request (its first page)."""
    # Reference: https://learn.microsoft.com/graph/json-batching
    return BatchCall(
        _LIST_ELIGIBILITY_SCHEDULES, query=_role_filter(role_definition_id, principal_id)
    )


def role_eligibility_schedules_from(
    client: GraphClient, outcome: BatchOutcome
) -> list[RoleEligibilitySchedule]:
    """Every eligibility a :func:`role_eligibility_schedules_call` read; raises its error."""
    # Reference: https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedules
    return [RoleEligibilitySchedule.from_graph(item) for item in outcome.items(client)]
