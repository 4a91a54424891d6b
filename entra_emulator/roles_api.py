"""Directory role management: definitions, active assignments and PIM schedules.

Graph calls served here (v1.0, throttling class "identity"):

- ``GET /roleManagement/directory/roleDefinitions`` (``$filter`` on ``id``, ``displayName``,
  ``isBuiltIn`` only; 400 for any other property) and ``.../roleDefinitions/{id}``
- ``GET|POST /roleManagement/directory/roleAssignments`` (``$filter`` on ``roleDefinitionId`` /
  ``principalId``, ``$expand=principal``), ``GET|DELETE .../roleAssignments/{id}``
- ``GET /roleManagement/directory/roleEligibilitySchedules`` (``$filter``, ``$expand=principal``)
- ``GET|POST /roleManagement/directory/roleEligibilityScheduleRequests``: ``adminAssign``,
  ``adminRemove``, ``adminUpdate``, ``adminExtend``; the matching eligibility schedule is created,
  changed or removed (status ``Provisioned``, or ``Revoked`` for a removal; with
  ``Tenant.propagation.pim_seconds`` first ``PendingProvisioning``, the schedule showing after)
- ``GET|POST /roleManagement/directory/roleAssignmentScheduleRequests``: ``adminAssign`` (an
  active, optionally time-bound assignment) and ``adminRemove``; besides PIM's own event the
  directory's "Add/Remove member to/from role" is written, initiated by the MS-PIM app

Role membership events have the shape Entra writes: the Role target is the directoryRole object
(its id is not the template id), the template id is in the member's ``Role.TemplateId``.

Time-bound assignments and eligibilities disappear once their end has passed, as in Entra.
Principals may be users, role-assignable groups (``isAssignableToRole``) or service principals.

Errors follow Graph: a duplicate direct assignment is 400 ``Request_BadRequest`` ("A conflicting
object ..."); a duplicate PIM assignment is 400 ``RoleAssignmentExists``; removing or updating
what does not exist is 400 ``RoleAssignmentDoesNotExist``.

References: https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments,
https://learn.microsoft.com/graph/api/rbacapplication-post-roleeligibilityschedulerequests,
https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignmentschedulerequests,
https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities (PIM).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from werkzeug import Response

from entra_emulator.audit_api import format_timestamp, record_audit
from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    collection_response,
    graph_route,
    json_response,
    no_content,
)
from entra_emulator.methods_api import not_found
from entra_emulator.roles_events import (
    principal_target,
    record_ms_pim_membership_event,
    role_member_targets,
    role_target,
)
from entra_emulator.roles_lag import (
    lagging_remove,
    live,
    settle,
    shown,
    start_provisioning,
)
from entra_emulator.tenant import Tenant

ROLE_READ = (
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
ROLE_WRITE = ("RoleManagement.ReadWrite.Directory",)
ELIGIBILITY_READ = (
    "RoleEligibilitySchedule.Read.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
)
ELIGIBILITY_WRITE = (
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagement.ReadWrite.Directory",
)
ACTIVE_SCHEDULE_READ = (
    "RoleAssignmentSchedule.Read.Directory",
    "RoleAssignmentSchedule.ReadWrite.Directory",
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
)
ACTIVE_SCHEDULE_WRITE = (
    "RoleAssignmentSchedule.ReadWrite.Directory",
    "RoleManagement.ReadWrite.Directory",
)

_BASE = "/roleManagement/directory"
_CONFLICT_MESSAGE = (
    "A conflicting object with one or more of the specified property values is present in the "
    "directory."
)
_ELIGIBILITY_ACTIONS = ("adminAssign", "adminRemove", "adminUpdate", "adminExtend")
_ACTIVE_ACTIONS = ("adminAssign", "adminRemove")
_DURATION_RE = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_EXPANDABLE = {"principal", "roleDefinition"}


# --- pure helpers -------------------------------------------------------------------------------


def assignment_id(role_definition_id: str, principal_id: str) -> str:
    """The id Entra gives a direct assignment: both GUIDs' bytes base64url-encoded, then ``-1``."""

    def part(value: str) -> str:
        try:
            raw = uuid.UUID(value).bytes_le
        except ValueError:
            raw = value.encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part(role_definition_id)}{part(principal_id)}-1"


def parse_timestamp(raw: Any, field_name: str) -> datetime:
    """Parse a DateTimeOffset from a request body; raises GraphHttpError(400)."""
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphHttpError(400, "BadRequest", f"Invalid value '{raw}' for {field_name}.") from exc
    if moment.tzinfo is None:
        raise GraphHttpError(400, "BadRequest", f"{field_name} must carry a time zone offset.")
    return moment


def parse_duration(raw: Any) -> timedelta:
    """An ISO 8601 duration such as ``PT8H`` or ``P30D``; raises GraphHttpError(400)."""
    match = _DURATION_RE.match(str(raw)) if isinstance(raw, str) else None
    if match is None or raw in {"P", "PT"}:
        raise GraphHttpError(400, "BadRequest", f"Invalid duration '{raw}' in expiration.")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def normalise_schedule(raw: Any, now: datetime) -> tuple[dict[str, Any], datetime | None]:
    """Validate a request's ``scheduleInfo``; return Graph's stored form and the end (or None).

    ``expiration.type`` is ``noExpiration`` (the default), ``afterDateTime`` (needs
    ``endDateTime`` after the start) or ``afterDuration`` (needs an ISO 8601 ``duration``).
    """
    info = raw if isinstance(raw, Mapping) else {}
    if raw is not None and not isinstance(raw, Mapping):
        raise GraphHttpError(400, "BadRequest", "scheduleInfo must be an object.")
    start = (
        parse_timestamp(info["startDateTime"], "startDateTime")
        if info.get("startDateTime")
        else now
    )
    expiration = info.get("expiration") or {}
    if not isinstance(expiration, Mapping):
        raise GraphHttpError(400, "BadRequest", "scheduleInfo.expiration must be an object.")
    kind = expiration.get("type") or "noExpiration"
    end: datetime | None
    if kind == "noExpiration":
        end = None
        stored = {"type": "noExpiration", "endDateTime": None, "duration": None}
    elif kind == "afterDateTime":
        if not expiration.get("endDateTime"):
            raise GraphHttpError(
                400,
                "InvalidScheduleRequest",
                "expiration.endDateTime is required for afterDateTime.",
            )
        end = parse_timestamp(expiration["endDateTime"], "endDateTime")
        stored = {"type": "afterDateTime", "endDateTime": format_timestamp(end), "duration": None}
    elif kind == "afterDuration":
        length = parse_duration(expiration.get("duration"))
        end = start + length
        stored = {"type": "afterDuration", "endDateTime": None, "duration": expiration["duration"]}
    else:
        raise GraphHttpError(400, "BadRequest", f"Invalid expiration type '{kind}'.")
    if end is not None and end <= max(start, now):
        raise GraphHttpError(
            400, "InvalidScheduleRequest", "The schedule ends before it starts or in the past."
        )
    schedule = {"startDateTime": format_timestamp(start), "recurrence": None, "expiration": stored}
    return schedule, end


def schedule_end(schedule_info: Mapping[str, Any]) -> datetime | None:
    """The end of a stored ``scheduleInfo``, or None when it never expires."""
    expiration = schedule_info.get("expiration") or {}
    if expiration.get("type") == "afterDateTime" and expiration.get("endDateTime"):
        return datetime.fromisoformat(expiration["endDateTime"].replace("Z", "+00:00"))
    if expiration.get("type") == "afterDuration" and expiration.get("duration"):
        start = datetime.fromisoformat(schedule_info["startDateTime"].replace("Z", "+00:00"))
        return start + parse_duration(expiration["duration"])
    return None


def purge_expired(tenant: Tenant, now: datetime) -> None:
    """Drop time-bound assignments and eligibilities whose end has passed, and settle what
    propagation delayed (caller holds lock)."""
    settle(tenant, now)
    for key, schedule in list(tenant.eligibility_schedules.items()):
        end = schedule_end(schedule["scheduleInfo"])
        if end is not None and end <= now:
            del tenant.eligibility_schedules[key]
    for key, assignment in list(tenant.role_assignments.items()):
        info = assignment.get("_scheduleInfo")
        end = schedule_end(info) if info else None
        if end is not None and end <= now:
            del tenant.role_assignments[key]


def principal_object(tenant: Tenant, principal_id: str) -> dict[str, Any] | None:
    """The directoryObject JSON (with ``@odata.type``) of a user, group or service principal."""
    user = tenant.users.get(principal_id)
    if user is not None:
        return {"@odata.type": "#microsoft.graph.user", **user}
    group = tenant.groups.get(principal_id)
    if group is not None:
        return {"@odata.type": "#microsoft.graph.group", **group}
    for app in tenant.apps.values():
        if app.service_principal_id == principal_id:
            return {
                "@odata.type": "#microsoft.graph.servicePrincipal",
                "id": app.service_principal_id,
                "appId": app.client_id,
                "displayName": app.display_name,
                "servicePrincipalType": "Application",
            }
    return None


def check_principal(tenant: Tenant, principal_id: Any) -> dict[str, Any]:
    """The principal a role may be given to; raises GraphHttpError as Graph does.

    404 when no such object exists; 400 for a group that is not role-assignable.
    """
    if not isinstance(principal_id, str) or not principal_id:
        raise GraphHttpError(400, "Request_BadRequest", "principalId is required.")
    principal = principal_object(tenant, principal_id)
    if principal is None:
        raise not_found(principal_id)
    if principal["@odata.type"] == "#microsoft.graph.group" and not principal.get(
        "isAssignableToRole"
    ):
        raise GraphHttpError(
            400,
            "Request_BadRequest",
            "Only groups with isAssignableToRole set to true can be assigned to a directory role.",
        )
    return principal


def check_role_definition(tenant: Tenant, role_definition_id: Any) -> dict[str, Any]:
    """The role definition named in a request body; 400 when missing, 404 when unknown."""
    if not isinstance(role_definition_id, str) or not role_definition_id:
        raise GraphHttpError(400, "Request_BadRequest", "roleDefinitionId is required.")
    definition = tenant.role_definitions.get(role_definition_id)
    if definition is None:
        raise not_found(role_definition_id)
    return definition


def check_scope(raw: Any) -> str:
    """``directoryScopeId``: required, ``/`` for the whole tenant or an object path."""
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise GraphHttpError(
            400, "Request_BadRequest", "directoryScopeId is required and must start with '/'."
        )
    return raw


def render(item: Mapping[str, Any]) -> dict[str, Any]:
    """Graph JSON of a stored object: keys starting with ``_`` are the emulator's own."""
    return {key: value for key, value in item.items() if not key.startswith("_")}


def expand(tenant: Tenant, item: Mapping[str, Any], expansions: list[str] | None) -> dict[str, Any]:
    """``render(item)`` plus ``principal`` / ``roleDefinition`` when ``$expand`` asks for them."""
    body = render(item)
    for name in expansions or ():
        if name not in _EXPANDABLE:
            raise GraphHttpError(
                400,
                "BadRequest",
                f"Could not find a property named '{name}' on type "
                "'microsoft.graph.unifiedRoleAssignment'.",
            )
        if name == "principal":
            body["principal"] = principal_object(tenant, item["principalId"])
        else:
            body["roleDefinition"] = tenant.role_definitions.get(item["roleDefinitionId"])
    return body


def _filtered_expanded(ctx: GraphContext, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply ``$filter`` on stored items that reads show now, then ``$expand`` (filters name
    stored properties)."""
    now = ctx.now()
    return [
        expand(ctx.tenant, item, ctx.query.expand)
        for item in items
        if shown(item, now) and ctx.query.matches(item)
    ]


def _created_by(ctx: GraphContext) -> dict[str, Any]:
    if ctx.token.is_app:
        return {
            "application": {"id": ctx.token.app_id, "displayName": None},
            "device": None,
            "user": None,
        }
    return {"application": None, "device": None, "user": {"id": ctx.token.oid, "displayName": None}}


# --- role definitions ---------------------------------------------------------------------------


# unifiedRoleDefinition: "Supports $filter (eq, in)" on id, displayName and isBuiltIn only
# (https://learn.microsoft.com/graph/api/resources/unifiedroledefinition, and the List page
# https://learn.microsoft.com/graph/api/rbacapplication-list-roledefinitions). templateId is not
# filterable. Docs silent on the exact error: 400 BadRequest here.
_DEFINITION_FILTERABLE = frozenset({"id", "displayName", "isBuiltIn"})
_DEFINITION_OPERATORS = frozenset({"eq", "in"})
_FILTER_WORDS = frozenset({"and", "or", "not", "true", "false", "null"})
_ALL_OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "in", "has"})
_FILTER_STRING = re.compile(r"'(?:[^']|'')*'")
_FILTER_NAME = re.compile(r"(?<![\w.-])([A-Za-z_][\w/]*)(\s*\()?")
_FILTER_OPERATOR = re.compile(r"\s(eq|ne|gt|ge|lt|le|in|has)\s")


def check_definition_filter(text: str | None) -> None:
    """Refuse, as Graph does, a roleDefinitions ``$filter`` naming a property other than id,
    displayName or isBuiltIn, or an operator other than eq and in (GraphHttpError 400)."""
    if not text:
        return
    bare = _FILTER_STRING.sub("''", text)
    for match in _FILTER_OPERATOR.finditer(bare):
        if match.group(1) not in _DEFINITION_OPERATORS:
            raise GraphHttpError(
                400,
                "BadRequest",
                f"Unsupported query operator '{match.group(1)}' in the $filter of "
                "roleDefinitions: only eq and in are supported.",
            )
    for match in _FILTER_NAME.finditer(bare):
        name, call = match.group(1), match.group(2)
        if name in _FILTER_WORDS or name in _ALL_OPERATORS:
            continue
        if call:
            raise GraphHttpError(
                400,
                "BadRequest",
                f"Unsupported function '{name}' in the $filter of roleDefinitions.",
            )
        if name not in _DEFINITION_FILTERABLE:
            raise GraphHttpError(
                400,
                "BadRequest",
                f"Unsupported or invalid query filter clause specified for property '{name}' "
                "of resource 'unifiedRoleDefinition'.",
            )


@graph_route("GET", rf"{_BASE}/roleDefinitions", throttle_class="identity", permissions=ROLE_READ)
def list_role_definitions(ctx: GraphContext) -> Response:
    """All role definitions, filterable on ``id``, ``displayName`` and ``isBuiltIn`` (eq, in);
    400 for a ``$filter`` on any other property (``templateId`` included), as in Graph."""
    check_definition_filter(ctx.request.args.get("$filter"))
    with ctx.tenant.lock:
        items = [dict(d) for d in ctx.tenant.role_definitions.values()]
    return collection_response(ctx, items, context="roleManagement/directory/roleDefinitions")


@graph_route(
    "GET",
    rf"{_BASE}/roleDefinitions/(?P<definition_id>[^/]+)",
    throttle_class="identity",
    permissions=ROLE_READ,
)
def get_role_definition(ctx: GraphContext) -> Response:
    """One role definition by id (for built-in roles the id is the template id)."""
    with ctx.tenant.lock:
        definition = ctx.tenant.role_definitions.get(ctx.params["definition_id"])
    if definition is None:
        raise not_found(ctx.params["definition_id"])
    context = ctx.context_url("roleManagement/directory/roleDefinitions/$entity")
    return json_response(ctx, {"@odata.context": context, **definition})


# --- active assignments -------------------------------------------------------------------------


@graph_route("GET", rf"{_BASE}/roleAssignments", throttle_class="identity", permissions=ROLE_READ)
def list_role_assignments(ctx: GraphContext) -> Response:
    """Active assignments, filterable on ``roleDefinitionId`` / ``principalId``, expandable."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        items = _filtered_expanded(ctx, list(ctx.tenant.role_assignments.values()))
    return collection_response(
        ctx, items, context="roleManagement/directory/roleAssignments", filtered=True
    )


@graph_route(
    "GET",
    rf"{_BASE}/roleAssignments/(?P<assignment_id>[^/]+)",
    throttle_class="identity",
    permissions=ROLE_READ,
)
def get_role_assignment(ctx: GraphContext) -> Response:
    """One active assignment; 404 when it does not exist (or has expired)."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        found = ctx.tenant.role_assignments.get(ctx.params["assignment_id"])
        if found is None or not shown(found, ctx.now()):
            raise not_found(ctx.params["assignment_id"])
        body = expand(ctx.tenant, found, ctx.query.expand)
    context = ctx.context_url("roleManagement/directory/roleAssignments/$entity")
    return json_response(ctx, {"@odata.context": context, **body})


def add_active_assignment(
    tenant: Tenant,
    *,
    role_definition_id: str,
    principal_id: str,
    directory_scope_id: str,
    schedule_info: dict[str, Any] | None = None,
    visible_at: float | None = None,
) -> dict[str, Any]:
    """Store a new active assignment (caller holds the lock and has validated the ids); reads
    show it from ``visible_at`` (epoch seconds; None: at once).

    Raises GraphHttpError(400, Request_BadRequest) when the same role, principal and scope are
    already assigned.
    """
    for existing in tenant.role_assignments.values():
        if live(existing) and (
            existing["roleDefinitionId"],
            existing["principalId"],
            existing["directoryScopeId"],
        ) == (role_definition_id, principal_id, directory_scope_id):
            raise GraphHttpError(400, "Request_BadRequest", _CONFLICT_MESSAGE)
    new_id = assignment_id(role_definition_id, principal_id)
    if directory_scope_id != "/":
        new_id = f"{new_id}-{uuid.uuid4().hex[:8]}"
    assignment: dict[str, Any] = {
        "id": new_id,
        "principalId": principal_id,
        "roleDefinitionId": role_definition_id,
        "directoryScopeId": directory_scope_id,
        "appScopeId": None,
        "condition": None,
    }
    if schedule_info is not None:
        assignment["_scheduleInfo"] = schedule_info
    if visible_at is not None:
        assignment["_visibleAt"] = visible_at
    tenant.role_assignments[new_id] = assignment
    return assignment


@graph_route("POST", rf"{_BASE}/roleAssignments", throttle_class="identity", permissions=ROLE_WRITE)
def create_role_assignment(ctx: GraphContext) -> Response:
    """Assign a role (permanent, active). 201 with the new unifiedRoleAssignment."""
    body = ctx.json()
    with ctx.tenant.lock:
        definition = check_role_definition(ctx.tenant, body.get("roleDefinitionId"))
        principal = check_principal(ctx.tenant, body.get("principalId"))
        scope = check_scope(body.get("directoryScopeId"))
        now = ctx.now()
        purge_expired(ctx.tenant, now)
        lag = ctx.tenant.propagation.role_assignment_seconds
        assignment = add_active_assignment(
            ctx.tenant,
            role_definition_id=definition["id"],
            principal_id=principal["id"],
            directory_scope_id=scope,
            visible_at=now.timestamp() + lag if lag > 0 else None,
        )
        answer = render(assignment)
    record_audit(
        ctx,
        category="RoleManagement",
        activity="Add member to role",
        target_resources=role_member_targets(definition, principal),
        logged_by_service="Core Directory",
    )
    context = ctx.context_url("roleManagement/directory/roleAssignments/$entity")
    return json_response(ctx, {"@odata.context": context, **answer}, status=201)


@graph_route(
    "DELETE",
    rf"{_BASE}/roleAssignments/(?P<assignment_id>[^/]+)",
    throttle_class="identity",
    permissions=ROLE_WRITE,
)
def delete_role_assignment(ctx: GraphContext) -> Response:
    """Remove an active assignment; 204, or 404 when it does not exist. Reads go on showing it
    for ``propagation.role_assignment_seconds``."""
    with ctx.tenant.lock:
        now = ctx.now()
        purge_expired(ctx.tenant, now)
        removed = ctx.tenant.role_assignments.get(ctx.params["assignment_id"])
        if removed is None or not live(removed):
            raise not_found(ctx.params["assignment_id"])
        lagging_remove(
            ctx.tenant.role_assignments,
            removed["id"],
            now,
            ctx.tenant.propagation.role_assignment_seconds,
        )
        definition = ctx.tenant.role_definitions[removed["roleDefinitionId"]]
        principal = principal_object(ctx.tenant, removed["principalId"]) or {
            "@odata.type": "#microsoft.graph.user",
            "id": removed["principalId"],
        }
    record_audit(
        ctx,
        category="RoleManagement",
        activity="Remove member from role",
        target_resources=role_member_targets(definition, principal, removed=True),
        logged_by_service="Core Directory",
    )
    return no_content(ctx)


# --- PIM: eligibility ---------------------------------------------------------------------------


@graph_route(
    "GET",
    rf"{_BASE}/roleEligibilitySchedules",
    throttle_class="identity",
    permissions=ELIGIBILITY_READ,
)
def list_eligibility_schedules(ctx: GraphContext) -> Response:
    """Current eligibility schedules, filterable and expandable like role assignments."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        items = _filtered_expanded(ctx, list(ctx.tenant.eligibility_schedules.values()))
    return collection_response(
        ctx, items, context="roleManagement/directory/roleEligibilitySchedules", filtered=True
    )


@graph_route(
    "GET",
    rf"{_BASE}/roleEligibilitySchedules/(?P<schedule_id>[^/]+)",
    throttle_class="identity",
    permissions=ELIGIBILITY_READ,
)
def get_eligibility_schedule(ctx: GraphContext) -> Response:
    """One eligibility schedule; 404 when unknown or expired."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        found = ctx.tenant.eligibility_schedules.get(ctx.params["schedule_id"])
        if found is None or not shown(found, ctx.now()):
            raise not_found(ctx.params["schedule_id"])
        body = expand(ctx.tenant, found, ctx.query.expand)
    context = ctx.context_url("roleManagement/directory/roleEligibilitySchedules/$entity")
    return json_response(ctx, {"@odata.context": context, **body})


@graph_route(
    "GET",
    rf"{_BASE}/roleEligibilityScheduleRequests",
    throttle_class="identity",
    permissions=ELIGIBILITY_READ,
)
def list_eligibility_requests(ctx: GraphContext) -> Response:
    """Every eligibility request made (they are kept after completion, as in Graph)."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        items = _filtered_expanded(ctx, _requests_of_kind(ctx.tenant, None))
    return collection_response(
        ctx,
        items,
        context="roleManagement/directory/roleEligibilityScheduleRequests",
        filtered=True,
    )


@graph_route(
    "GET",
    rf"{_BASE}/roleEligibilityScheduleRequests/(?P<request_id>[^/]+)",
    throttle_class="identity",
    permissions=ELIGIBILITY_READ,
)
def get_eligibility_request(ctx: GraphContext) -> Response:
    """One eligibility request by id."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        found = ctx.tenant.eligibility_requests.get(ctx.params["request_id"])
        if found is None or found.get("_kind") is not None:
            raise not_found(ctx.params["request_id"])
        body = expand(ctx.tenant, found, ctx.query.expand)
    context = ctx.context_url("roleManagement/directory/roleEligibilityScheduleRequests/$entity")
    return json_response(ctx, {"@odata.context": context, **body})


def _bound(end: datetime | None) -> str:
    return "permanent" if end is None else "timebound"


def _find_schedule(
    schedules: Mapping[str, dict[str, Any]], role_id: str, principal_id: str, scope: str
) -> dict[str, Any] | None:
    for schedule in schedules.values():
        if live(schedule) and (
            schedule["roleDefinitionId"],
            schedule["principalId"],
            schedule["directoryScopeId"],
        ) == (role_id, principal_id, scope):
            return schedule
    return None


def _new_request(
    ctx: GraphContext,
    body: Mapping[str, Any],
    *,
    action: str,
    definition: Mapping[str, Any],
    principal: Mapping[str, Any],
    scope: str,
    schedule_info: dict[str, Any] | None,
) -> dict[str, Any]:
    now_text = format_timestamp(ctx.now())
    return {
        "id": str(uuid.uuid4()),
        "status": "Provisioned",
        "createdDateTime": now_text,
        "completedDateTime": now_text,
        "approvalId": None,
        "customData": None,
        "action": action,
        "principalId": principal["id"],
        "roleDefinitionId": definition["id"],
        "directoryScopeId": scope,
        "appScopeId": None,
        "isValidationOnly": False,
        "targetScheduleId": None,
        "justification": body.get("justification"),
        "createdBy": _created_by(ctx),
        "scheduleInfo": schedule_info,
        "ticketInfo": {
            "ticketNumber": (body.get("ticketInfo") or {}).get("ticketNumber"),
            "ticketSystem": (body.get("ticketInfo") or {}).get("ticketSystem"),
        },
    }


def _pim_details(request: Mapping[str, Any], end: datetime | None) -> list[tuple[str, str]]:
    details = [("RequestId", request["id"])]
    if request.get("justification"):
        details.append(("Justification", str(request["justification"])))
    if request.get("scheduleInfo"):
        details.append(("StartTime", request["scheduleInfo"]["startDateTime"]))
    if end is not None:
        details.append(("ExpirationTime", format_timestamp(end)))
    return details


def _read_request_body(
    ctx: GraphContext, actions: tuple[str, ...]
) -> tuple[dict[str, Any], str, dict[str, Any], dict[str, Any], str]:
    body = ctx.json()
    action = body.get("action")
    if action not in actions:
        raise GraphHttpError(
            400, "BadRequest", f"Invalid action '{action}'. Supported: {', '.join(actions)}."
        )
    definition = check_role_definition(ctx.tenant, body.get("roleDefinitionId"))
    principal = check_principal(ctx.tenant, body.get("principalId"))
    scope = check_scope(body.get("directoryScopeId"))
    return body, action, definition, principal, scope


@graph_route(
    "POST",
    rf"{_BASE}/roleEligibilityScheduleRequests",
    throttle_class="identity",
    permissions=ELIGIBILITY_WRITE,
)
def create_eligibility_request(ctx: GraphContext) -> Response:
    """Apply an eligibility request at once and answer 201 with the request.

    ``adminAssign`` creates a schedule (400 RoleAssignmentExists when one exists);
    ``adminRemove`` deletes it (request status ``Revoked``); ``adminUpdate`` / ``adminExtend``
    replace its scheduleInfo. Removing or changing a missing schedule is 400
    RoleAssignmentDoesNotExist.
    """
    now = ctx.now()
    with ctx.tenant.lock:
        body, action, definition, principal, scope = _read_request_body(ctx, _ELIGIBILITY_ACTIONS)
        purge_expired(ctx.tenant, now)
        schedules = ctx.tenant.eligibility_schedules
        existing = _find_schedule(schedules, definition["id"], principal["id"], scope)
        if action == "adminAssign" and existing is not None:
            raise GraphHttpError(400, "RoleAssignmentExists", "The Role assignment already exists.")
        if action != "adminAssign" and existing is None:
            raise GraphHttpError(
                400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist."
            )
        if action == "adminRemove":
            assert existing is not None
            end = schedule_end(existing["scheduleInfo"])
            request = _new_request(
                ctx,
                body,
                action=action,
                definition=definition,
                principal=principal,
                scope=scope,
                schedule_info=None,
            )
            request["status"] = "Revoked"
            request["targetScheduleId"] = existing["id"]
            lagging_remove(schedules, existing["id"], now, ctx.tenant.propagation.pim_seconds)
            activity = f"Remove eligible member from role in PIM completed ({_bound(end)})"
        else:
            schedule_info, end = normalise_schedule(body.get("scheduleInfo"), now)
            request = _new_request(
                ctx,
                body,
                action=action,
                definition=definition,
                principal=principal,
                scope=scope,
                schedule_info=schedule_info,
            )
            if existing is None:
                schedule = {
                    "id": str(uuid.uuid4()),
                    "principalId": principal["id"],
                    "roleDefinitionId": definition["id"],
                    "directoryScopeId": scope,
                    "appScopeId": None,
                    "createdUsing": request["id"],
                    "createdDateTime": format_timestamp(now),
                    "modifiedDateTime": None,
                    "status": "Provisioned",
                    "memberType": "Direct",
                    "scheduleInfo": schedule_info,
                }
                if ctx.tenant.propagation.pim_seconds > 0:
                    schedule["_visibleAt"] = now.timestamp() + ctx.tenant.propagation.pim_seconds
                schedules[schedule["id"]] = schedule
                activity = f"Add eligible member to role in PIM completed ({_bound(end)})"
            else:
                existing["scheduleInfo"] = schedule_info
                existing["modifiedDateTime"] = format_timestamp(now)
                schedule = existing
                activity = "Update eligible member in PIM requested (extend)"
            request["targetScheduleId"] = schedule["id"]
        start_provisioning(request, now, ctx.tenant.propagation.pim_seconds)
        ctx.tenant.eligibility_requests[request["id"]] = request
        answer = render(request)
    record_audit(
        ctx,
        category="RoleManagement",
        activity=activity,
        target_resources=[role_target(definition), principal_target(principal)],
        additional_details=_pim_details(request, end),
        logged_by_service="PIM",
    )
    context = ctx.context_url("roleManagement/directory/roleEligibilityScheduleRequests/$entity")
    return json_response(ctx, {"@odata.context": context, **answer}, status=201)


# --- PIM: time-bound active assignments ---------------------------------------------------------

# The Tenant's fields are fixed between the emulator's engineers, so active-assignment requests
# share ``tenant.eligibility_requests`` with eligibility requests, told apart by a private
# ``_kind`` key (never rendered). A re-seed replaces both together.
_ACTIVE_KIND = "active"


def _requests_of_kind(tenant: Tenant, kind: str | None) -> list[dict[str, Any]]:
    return [r for r in tenant.eligibility_requests.values() if r.get("_kind") == kind]


@graph_route(
    "GET",
    rf"{_BASE}/roleAssignmentScheduleRequests",
    throttle_class="identity",
    permissions=ACTIVE_SCHEDULE_READ,
)
def list_assignment_requests(ctx: GraphContext) -> Response:
    """Active-assignment requests made through this API."""
    with ctx.tenant.lock:
        purge_expired(ctx.tenant, ctx.now())
        items = _filtered_expanded(ctx, _requests_of_kind(ctx.tenant, _ACTIVE_KIND))
    return collection_response(
        ctx,
        items,
        context="roleManagement/directory/roleAssignmentScheduleRequests",
        filtered=True,
    )


@graph_route(
    "POST",
    rf"{_BASE}/roleAssignmentScheduleRequests",
    throttle_class="identity",
    permissions=ACTIVE_SCHEDULE_WRITE,
)
def create_assignment_request(ctx: GraphContext) -> Response:
    """``adminAssign`` an active (optionally time-bound) assignment, or ``adminRemove`` one.

    The default PIM policy for directory roles requires a justification on active assignment:
    without one Graph answers 400 RoleAssignmentRequestPolicyValidationFailed.
    """
    now = ctx.now()
    with ctx.tenant.lock:
        body, action, definition, principal, scope = _read_request_body(ctx, _ACTIVE_ACTIONS)
        purge_expired(ctx.tenant, now)
        existing = next(
            (
                a
                for a in ctx.tenant.role_assignments.values()
                if live(a)
                and (a["roleDefinitionId"], a["principalId"], a["directoryScopeId"])
                == (definition["id"], principal["id"], scope)
            ),
            None,
        )
        # Provisioned by PIM, then replicated by the directory.
        lag = ctx.tenant.propagation.pim_seconds + ctx.tenant.propagation.role_assignment_seconds
        if action == "adminAssign":
            if not body.get("justification"):
                raise GraphHttpError(
                    400,
                    "RoleAssignmentRequestPolicyValidationFailed",
                    'The following policy rules failed: ["JustificationRule"]',
                )
            if existing is not None:
                raise GraphHttpError(
                    400, "RoleAssignmentExists", "The Role assignment already exists."
                )
            schedule_info, end = normalise_schedule(body.get("scheduleInfo"), now)
            request = _new_request(
                ctx,
                body,
                action=action,
                definition=definition,
                principal=principal,
                scope=scope,
                schedule_info=schedule_info,
            )
            assignment = add_active_assignment(
                ctx.tenant,
                role_definition_id=definition["id"],
                principal_id=principal["id"],
                directory_scope_id=scope,
                schedule_info=schedule_info,
                visible_at=now.timestamp() + lag if lag > 0 else None,
            )
            request["targetScheduleId"] = assignment["id"]
            activity = f"Add member to role in PIM completed ({_bound(end)})"
        else:
            if existing is None:
                raise GraphHttpError(
                    400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist."
                )
            info = existing.get("_scheduleInfo")
            end = schedule_end(info) if info else None
            request = _new_request(
                ctx,
                body,
                action=action,
                definition=definition,
                principal=principal,
                scope=scope,
                schedule_info=None,
            )
            request["status"] = "Revoked"
            request["targetScheduleId"] = existing["id"]
            lagging_remove(ctx.tenant.role_assignments, existing["id"], now, lag)
            activity = f"Remove member from role in PIM completed ({_bound(end)})"
        start_provisioning(request, now, ctx.tenant.propagation.pim_seconds)
        request["_kind"] = _ACTIVE_KIND
        ctx.tenant.eligibility_requests[request["id"]] = request
        answer = render(request)
    # The directory writes its own membership event, initiated by the MS-PIM service, as PIM
    # provisions the change; PIM then writes its "... in PIM completed" event, initiated by the
    # caller. Docs silent on the pair (the audit activity reference lists both activities,
    # https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities,
    # but not which service writes which for one request); the shape is that of public samples.
    record_ms_pim_membership_event(ctx, definition, principal, removed=action == "adminRemove")
    record_audit(
        ctx,
        category="RoleManagement",
        activity=activity,
        target_resources=[role_target(definition), principal_target(principal)],
        additional_details=_pim_details(request, end),
        logged_by_service="PIM",
    )
    context = ctx.context_url("roleManagement/directory/roleAssignmentScheduleRequests/$entity")
    return json_response(ctx, {"@odata.context": context, **answer}, status=201)
