"""Entra's directory audit log: the writer every change goes through, and its Graph endpoints.

Every change made through the emulated Graph appends exactly one ``directoryAudit`` via
``record_audit()`` (the seeded history is built with ``build_audit_event()`` directly). Events are
stored oldest first in ``tenant.audit_events`` and served newest first, as Graph does.

Graph calls served here (v1.0):

- ``GET /auditLogs/directoryAudits`` with ``$filter`` (``activityDateTime ge/le``, ``category eq``,
  ``activityDisplayName eq``, ``initiatedBy/user/id eq``, ``initiatedBy/app/appId eq``,
  ``targetResources/any(t:t/id eq '...')``, ``correlationId eq``, joined with ``and``), ``$top``
  (1..1000, default 1000) and ``@odata.nextLink`` paging.
- ``GET /auditLogs/directoryAudits/{id}``

Reference: https://learn.microsoft.com/graph/api/directoryaudit-list and
https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities
(activity names and categories).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from werkzeug import Response

from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    graph_base,
    graph_route,
    json_response,
)

# Graph caps a directoryAudits page at 1000 items, and a request without $top gets the same size.
MAX_PAGE_SIZE = 1000
READ_PERMISSIONS = ("AuditLog.Read.All",)

# Verbs Entra puts in ``operationType``, derived from the activity's first word.
_OPERATION_TYPES = {
    "add": "Add",
    "admin": "Update",
    "user": "Update",
    "update": "Update",
    "remove": "Delete",
    "delete": "Delete",
    "enable": "Update",
    "disable": "Update",
}


def format_timestamp(moment: datetime) -> str:
    """Graph's DateTimeOffset text in UTC with a ``Z`` suffix (``2026-01-02T03:04:05.123456Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def operation_type_for(activity: str) -> str:
    """The ``operationType`` Entra reports for an activity (``Add``, ``Update``, ``Delete``)."""
    first = activity.split(" ", 1)[0].lower()
    if " deleted " in f" {activity.lower()} ":
        return "Delete"
    if " registered " in f" {activity.lower()} ":
        return "Add"
    return _OPERATION_TYPES.get(first, "Update")


def build_audit_event(
    *,
    initiated_by: Mapping[str, Any],
    category: str,
    activity: str,
    target_resources: Iterable[Mapping[str, Any]],
    activity_time: datetime,
    result: str = "success",
    result_reason: str = "",
    additional_details: Iterable[tuple[str, str]] = (),
    logged_by_service: str = "Core Directory",
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One Graph ``directoryAudit`` dict, shaped exactly as Graph returns it.

    ``initiated_by`` holds either ``user`` or ``app`` (the other is rendered as null, as Graph
    does). Each target resource is completed with the keys Graph always sends (``displayName``,
    ``type``, ``userPrincipalName``, ``groupType``, ``modifiedProperties``). ``result`` is one of
    ``success``, ``failure``, ``timeout``.
    """
    if result not in {"success", "failure", "timeout"}:
        raise ValueError(f"unknown audit result {result!r}")
    initiator: dict[str, Any] = {"user": None, "app": None}
    if initiated_by.get("user"):
        user = dict(initiated_by["user"])
        user.setdefault("ipAddress", None)
        user.setdefault("userType", None)
        user.setdefault("homeTenantId", None)
        user.setdefault("homeTenantName", None)
        initiator["user"] = user
    elif initiated_by.get("app"):
        app = dict(initiated_by["app"])
        app.setdefault("servicePrincipalName", None)
        initiator["app"] = app
    else:
        raise ValueError("initiated_by must name a user or an app")
    targets = []
    for target in target_resources:
        targets.append(
            {
                "id": target["id"],
                "displayName": target.get("displayName"),
                "type": target.get("type", "Other"),
                "userPrincipalName": target.get("userPrincipalName"),
                "groupType": target.get("groupType"),
                "modifiedProperties": [
                    {
                        "displayName": prop["displayName"],
                        "oldValue": prop.get("oldValue"),
                        "newValue": prop.get("newValue"),
                    }
                    for prop in target.get("modifiedProperties", ())
                ],
            }
        )
    return {
        "id": event_id or str(uuid.uuid4()),
        "category": category,
        "correlationId": correlation_id or str(uuid.uuid4()),
        "result": result,
        "resultReason": result_reason,
        "activityDisplayName": activity,
        "activityDateTime": format_timestamp(activity_time),
        "loggedByService": logged_by_service,
        "operationType": operation_type_for(activity),
        "initiatedBy": initiator,
        "targetResources": targets,
        "additionalDetails": [{"key": key, "value": value} for key, value in additional_details],
    }


def user_target(
    user: Mapping[str, Any], modified_properties: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """A ``targetResource`` naming a user, as Entra writes it for user-directed activities."""
    return {
        "id": user["id"],
        "displayName": user.get("displayName"),
        "type": "User",
        "userPrincipalName": user.get("userPrincipalName"),
        "modifiedProperties": list(modified_properties),
    }


def record_audit(
    ctx: GraphContext,
    *,
    category: str,
    activity: str,
    target_resources: Iterable[Mapping[str, Any]],
    result: str = "success",
    result_reason: str = "",
    additional_details: Iterable[tuple[str, str]] = (),
    logged_by_service: str = "Core Directory",
) -> dict[str, Any]:
    """Append one directoryAudit for a change made by the caller of ``ctx`` and return it.

    ``initiatedBy`` is ``ctx.actor()``: the app for an app-only token, the signed-in user for a
    delegated one. The Graph request id doubles as the correlation id, so one change that writes
    several events (none today) would share it, as in Entra.
    """
    event = build_audit_event(
        initiated_by=ctx.actor(),
        category=category,
        activity=activity,
        target_resources=target_resources,
        activity_time=ctx.now(),
        result=result,
        result_reason=result_reason,
        additional_details=additional_details,
        logged_by_service=logged_by_service,
        correlation_id=ctx.request_id,
    )
    with ctx.tenant.lock:
        ctx.tenant.audit_events.append(event)
    return event


# --- paging ---------------------------------------------------------------------------------------


def encode_audit_skiptoken(position: int) -> str:
    """The opaque ``$skiptoken`` naming where the next (older) page starts.

    ``position`` is an index into the append-only, oldest-first event list: events appended
    while a client pages do not shift it, so a client never sees an event twice or skips one.
    """
    return base64.urlsafe_b64encode(f"audit:{position}".encode()).decode().rstrip("=")


def decode_audit_skiptoken(token: str) -> int:
    """Inverse of ``encode_audit_skiptoken``; raises GraphHttpError(400) for a foreign token."""
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "audit":
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GraphHttpError(
            400, "Request_BadRequest", "The specified page token value has expired or is invalid."
        ) from exc


def select_page(
    events: list[dict[str, Any]],
    *,
    matches: Any,
    top: int,
    before: int | None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest-first page of ``events`` (stored oldest first) that satisfy ``matches``.

    Looks only at indexes below ``before`` (all when None). Returns the page and the index to
    continue from, or None when no older matching event remains.
    """
    page: list[dict[str, Any]] = []
    index = len(events) if before is None else min(before, len(events))
    while index > 0:
        index -= 1
        event = events[index]
        if matches is not None and not matches(event):
            continue
        if len(page) == top:
            # There is at least one more matching event: continue just above it.
            return page, index + 1
        page.append(event)
    return page, None


def _apply_select(item: Mapping[str, Any], select: list[str] | None) -> dict[str, Any]:
    if not select:
        return dict(item)
    return {key: item[key] for key in select if key in item}


@graph_route(
    "GET",
    r"/auditLogs/directoryAudits",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def list_directory_audits(ctx: GraphContext) -> Response:
    """``GET /auditLogs/directoryAudits``: newest first, filtered, paged by ``@odata.nextLink``."""
    query = ctx.query
    top = MAX_PAGE_SIZE if query.top is None else query.top
    if not 1 <= top <= MAX_PAGE_SIZE:
        raise GraphHttpError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE_SIZE} "
            "inclusive.",
        )
    before = decode_audit_skiptoken(query.skiptoken) if query.skiptoken else None
    matches = query.filter.matches if query.filter is not None else None
    with ctx.tenant.lock:
        page, next_position = select_page(
            ctx.tenant.audit_events, matches=matches, top=top, before=before
        )
    body: dict[str, Any] = {
        "@odata.context": ctx.context_url("auditLogs/directoryAudits"),
        "value": [_apply_select(item, query.select) for item in page],
    }
    if next_position is not None:
        args = {k: v for k, v in ctx.request.args.items() if k.lstrip("$") != "skiptoken"}
        args["$top"] = str(top)
        args["$skiptoken"] = encode_audit_skiptoken(next_position)
        body["@odata.nextLink"] = (
            f"{graph_base(ctx.runtime)}/{ctx.version}/auditLogs/directoryAudits?{urlencode(args)}"
        )
    return json_response(ctx, body)


@graph_route(
    "GET",
    r"/auditLogs/directoryAudits/(?P<audit_id>[^/]+)",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def get_directory_audit(ctx: GraphContext) -> Response:
    """``GET /auditLogs/directoryAudits/{id}``; 404 when no such event exists."""
    audit_id = ctx.params["audit_id"]
    with ctx.tenant.lock:
        found = next((e for e in ctx.tenant.audit_events if e["id"] == audit_id), None)
    if found is None:
        raise GraphHttpError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{audit_id}' does not exist or one of its queried reference-property "
            "objects are not present.",
        )
    body = {
        "@odata.context": ctx.context_url("auditLogs/directoryAudits/$entity"),
        **_apply_select(found, ctx.query.select),
    }
    return json_response(ctx, body)
