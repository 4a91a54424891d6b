"""Entra's directory audit log: the writer every change goes through, and its Graph endpoints.

Every change made through the emulated Graph appends exactly one ``directoryAudit`` via
``record_audit()`` (the seeded history is built with ``build_audit_event()`` directly). Events are
stored oldest first in ``tenant.audit_events``.

Graph calls served here (v1.0):

- ``GET /auditLogs/directoryAudits`` with ``$filter`` (``activityDateTime ge/le``, ``category eq``,
  ``activityDisplayName eq``, ``initiatedBy/user/id eq``, ``initiatedBy/app/appId eq``,
  ``targetResources/any(t:t/id eq '...')``, ``correlationId eq``, joined with ``and``),
  ``$orderby=activityDateTime [asc|desc]``, ``$top`` (1..1000, default 1000) and
  ``@odata.nextLink`` paging.
- ``GET /auditLogs/directoryAudits/{id}``

Order: "List directoryAudits" documents ``$orderby`` and the directoryAudit resource says
``activityDateTime`` "Supports $filter (eq, ge, le) and $orderby"; neither page documents a
default order. Without ``$orderby`` the emulator answers oldest first, so that a client which
assumes newest first without asking for it is caught by the tests.

Retention: only events within the tenant's licence's retention are listed or found: 7 days for
Microsoft Entra ID Free, 30 days for P1 and P2 ("Microsoft Entra data retention", Activity
reports, Audit logs).

Activity names and categories come from Microsoft's audit activity reference; the portal's
copy of the names it relies on is ``audit/activities.py``.

Reference: https://learn.microsoft.com/graph/api/directoryaudit-list,
https://learn.microsoft.com/graph/api/resources/directoryaudit,
https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention and
https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities
(activity names and categories).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
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

# How long Entra keeps audit logs, by licence: "Audit logs | Seven days | 30 days | 30 days"
# (Free, P1, P2). Reference:
# https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention
# Not modelled (the same page): after an upgrade from Free, data older than the 7 days kept
# does not come back; here switching the licence widens or narrows the window at once.
RETENTION_DAYS = {"free": 7, "p1": 30, "p2": 30}

# Activity names, exactly as Microsoft's audit activity reference spells them:
# https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities
# Authentication Methods (UserManagement): the per-user MFA row, listed from the 2024-10-04
# revision on, next to Graph's per-user MFA API (docs silent on which row that API writes).
PER_USER_MFA_ACTIVITY = "Update per-user multifactor authentication state"
AUTHENTICATION_METHODS_SERVICE = "Authentication Methods"
# Device Registration Service (UserManagement): the deletion rows for FIDO2 keys (named
# "Passkey (device-bound)" since the 2024-10-04 revision; "Delete FIDO2 security key(s)" before)
# and Windows Hello for Business credentials. Docs silent on whether an admin's Graph DELETE of
# such a method is logged here or as "Admin deleted security info": the emulator writes the
# Device Registration Service row, so the portal must expect both.
DEVICE_REGISTRATION_SERVICE = "Device Registration Service"
_DEVICE_REGISTRATION_DELETIONS = {
    "#microsoft.graph.fido2AuthenticationMethod": "Delete Passkey (device-bound)",
    "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod": (
        "Delete Windows Hello for Business credential"
    ),
}

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


def method_deletion_activity(method_type: str, who: str) -> tuple[str, str]:
    """``(activityDisplayName, loggedByService)`` for the deletion of a method of ``@odata.type``
    ``method_type`` by ``who`` ("Admin" or "User"): the Device Registration Service row for a
    FIDO2 key or a Windows Hello credential, else "{who} deleted security info" (Authentication
    Methods). Names from the audit activity reference (see the constants above)."""
    device_row = _DEVICE_REGISTRATION_DELETIONS.get(method_type)
    if device_row is not None:
        return device_row, DEVICE_REGISTRATION_SERVICE
    return f"{who} deleted security info", AUTHENTICATION_METHODS_SERVICE


def retention_cutoff(licence: str, now: datetime) -> datetime:
    """The oldest ``activityDateTime`` Graph still lists for a tenant of ``licence``."""
    return now - timedelta(days=RETENTION_DAYS.get(licence, RETENTION_DAYS["free"]))


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
    """The opaque ``$skiptoken`` naming the last event of a page: its index in the append-only,
    oldest-first event list. The next page holds the events after it in the request's order
    (``$orderby``, which the next link repeats), so events appended while a client pages never
    make it see an event twice or skip one.
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


def _moment(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["activityDateTime"]))


def select_page(
    events: list[dict[str, Any]],
    *,
    matches: Any,
    top: int,
    after: int | None,
    newest_first: bool,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of ``events`` (stored in append order) that satisfy ``matches``, ordered by
    ``activityDateTime`` (ties by position), newest or oldest first.

    ``after`` is the position of the previous page's last event (None for the first page): the
    page holds only events that come after it in that order. Returns the page and the position
    of its last event when more matching events follow, else None. Raises GraphHttpError(400)
    for a position that names no event.
    """
    if after is not None and not 0 <= after < len(events):
        raise GraphHttpError(
            400, "Request_BadRequest", "The specified page token value has expired or is invalid."
        )

    def key(index: int) -> tuple[datetime, int]:
        return (_moment(events[index]), index)

    chosen = [i for i, event in enumerate(events) if matches is None or matches(event)]
    if after is not None:
        last = key(after)
        chosen = [i for i in chosen if (key(i) < last if newest_first else key(i) > last)]
    chosen.sort(key=key, reverse=newest_first)
    page = chosen[:top]
    more = len(chosen) > top
    return [events[i] for i in page], (page[-1] if more else None)


def _newest_first(ctx: GraphContext) -> bool:
    """Whether ``$orderby`` asks for the newest first; without it, oldest first (see the
    module docstring).

    "List directoryAudits" supports ``$orderby`` and the directoryAudit resource documents it on
    ``activityDateTime`` only; docs silent on the default order and on the error for another
    property (this 400 is the emulator's wording).
    Reference: https://learn.microsoft.com/graph/api/directoryaudit-list,
    https://learn.microsoft.com/graph/api/resources/directoryaudit
    """
    newest_first = False
    for prop, descending in ctx.query.orderby:
        if prop != "activityDateTime":
            raise GraphHttpError(
                400,
                "Request_UnsupportedQuery",
                f"Sorting by '{prop}' is not supported: $orderby supports activityDateTime.",
            )
        newest_first = descending
    return newest_first


def _retained(ctx: GraphContext) -> Any:
    """A predicate keeping the events within the licence's audit retention (7 or 30 days).
    Reference: https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention
    """
    cutoff = retention_cutoff(ctx.tenant.licence, ctx.now())
    return lambda event: _moment(event) >= cutoff


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
    """``GET /auditLogs/directoryAudits``: the retained events, filtered, in ``$orderby``'s order
    (oldest first without it), paged by ``@odata.nextLink``."""
    query = ctx.query
    top = MAX_PAGE_SIZE if query.top is None else query.top
    if not 1 <= top <= MAX_PAGE_SIZE:
        raise GraphHttpError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE_SIZE} "
            "inclusive.",
        )
    newest_first = _newest_first(ctx)
    after = decode_audit_skiptoken(query.skiptoken) if query.skiptoken else None
    retained = _retained(ctx)
    condition = query.filter.matches if query.filter is not None else None

    def matches(event: Mapping[str, Any]) -> bool:
        return bool(retained(event)) and (condition is None or condition(event))

    with ctx.tenant.lock:
        page, next_position = select_page(
            ctx.tenant.audit_events,
            matches=matches,
            top=top,
            after=after,
            newest_first=newest_first,
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
    """``GET /auditLogs/directoryAudits/{id}``; 404 when no such event exists, or when it is
    older than the licence's retention."""
    audit_id = ctx.params["audit_id"]
    retained = _retained(ctx)
    with ctx.tenant.lock:
        found = next((e for e in ctx.tenant.audit_events if e["id"] == audit_id), None)
    if found is None or not retained(found):
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
