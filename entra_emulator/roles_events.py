"""The directoryAudit events of role management, in the shape Entra writes them (``roles_api``).

"Add member to role" / "Remove member from role" (Core Directory) name the member first, with the
role in its modified properties (``Role.ObjectID``: the directoryRole object id,
``Role.DisplayName``, ``Role.TemplateId``, ``Role.WellKnownObjectName``), then the directoryRole
object as the Role target. The audit activity reference
(https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities) lists the
activities but not their properties: docs silent; the shape is that of public samples of
``GET /auditLogs/directoryAudits``. For an active assignment PIM makes, the directory's event is
initiated by the MS-PIM app, and PIM writes its own "... in PIM completed" event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from entra_emulator.audit_api import build_audit_event
from entra_emulator.graph_core import GraphContext
from entra_emulator.tenant import Tenant

# The first-party app Entra names as the initiator of the directory's own "Add member to role" /
# "Remove member from role" events for a change PIM provisions. Docs silent: Microsoft's audit
# reference does not name it; public samples and Microsoft's own Sentinel detection rule
# ("User added to Azure Active Directory Privileged Groups", which filters out
# ``initiatedBy.app.displayName == "MS-PIM"``) show it, and the appId is MS-PIM's well-known id.
MS_PIM_APP_ID = "01fc33a7-78ba-4d2f-a4b7-768e336e890e"
MS_PIM_DISPLAY_NAME = "MS-PIM"
# Role.WellKnownObjectName of a few built-in roles, as public samples of directoryAudit show it
# (docs silent: no learn.microsoft.com page lists them); other roles: the display name without
# spaces, as samples of newer roles show ("PurviewWorkloadContentWriter").
_WELL_KNOWN_NAMES = {
    "62e90394-69f5-4237-9190-012177145e10": "TenantAdmins",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "PrivilegedRoleAdmins",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "UserAccountAdmins",
}


def directory_role_id(definition: Mapping[str, Any]) -> str:
    """The object id of the (activated) directoryRole of a role definition.

    A directoryRole has its own ``id`` and names its template in ``roleTemplateId``
    (https://learn.microsoft.com/graph/api/resources/directoryrole); in a real tenant the two
    differ (the object id is the tenant's own). The same id users_api gives the directoryRole
    objects of ``memberOf``.
    """
    template_id = definition.get("templateId") or definition["id"]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"directoryRole/{template_id}"))


def role_target(definition: Mapping[str, Any]) -> dict[str, Any]:
    # The Role target of PIM's own events names the role definition (docs silent on its id;
    # for a built-in role the definition id is the template id).
    return {"id": definition["id"], "displayName": definition["displayName"], "type": "Role"}


def directory_role_target(definition: Mapping[str, Any]) -> dict[str, Any]:
    # In the directory's "Add member to role" / "Remove member from role" the Role target is the
    # directoryRole object, and its displayName is null (public samples of directoryAudit;
    # docs silent); the template id is only in the member's Role.TemplateId.
    return {"id": directory_role_id(definition), "displayName": None, "type": "Role"}


def role_member_targets(
    definition: Mapping[str, Any], principal: Mapping[str, Any], *, removed: bool = False
) -> list[dict[str, Any]]:
    """The ``targetResources`` of "Add member to role" (``removed``: "Remove member from role"):
    the member, with the role in its modified properties, then the directoryRole object."""
    props = role_properties(definition)
    if removed:
        props = [{**p, "oldValue": p["newValue"], "newValue": None} for p in props]
    return [principal_target(principal, props), directory_role_target(definition)]


def principal_target(
    principal: Mapping[str, Any], modified: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    kind = principal["@odata.type"].removeprefix("#microsoft.graph.")
    return {
        "id": principal["id"],
        "displayName": principal.get("displayName"),
        "type": {"user": "User", "group": "Group", "servicePrincipal": "ServicePrincipal"}[kind],
        "userPrincipalName": principal.get("userPrincipalName"),
        "modifiedProperties": modified or [],
    }


def role_properties(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    # Entra lists these on the member for "Add member to role" / "Remove member from role": the
    # directoryRole's object id, its name, its template id and its well-known name (docs silent:
    # the audit reference names no properties; taken from public samples of directoryAudit).
    template_id = definition.get("templateId") or definition["id"]
    well_known = _WELL_KNOWN_NAMES.get(template_id) or definition["displayName"].replace(" ", "")
    return [
        {
            "displayName": "Role.ObjectID",
            "oldValue": None,
            "newValue": f'"{directory_role_id(definition)}"',
        },
        {
            "displayName": "Role.DisplayName",
            "oldValue": None,
            "newValue": f'"{definition["displayName"]}"',
        },
        {
            "displayName": "Role.TemplateId",
            "oldValue": None,
            "newValue": f'"{template_id}"',
        },
        {
            "displayName": "Role.WellKnownObjectName",
            "oldValue": None,
            "newValue": f'"{well_known}"',
        },
    ]


def ms_pim_initiator(tenant: Tenant) -> dict[str, Any]:
    """``initiatedBy`` of the directory's events for changes PIM provisions: the MS-PIM app
    (its service principal id is the tenant's own; a fixed one per tenant here)."""
    return {
        "app": {
            "appId": MS_PIM_APP_ID,
            "displayName": MS_PIM_DISPLAY_NAME,
            "servicePrincipalId": str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"servicePrincipal/{tenant.tenant_id}/ms-pim")
            ),
            "servicePrincipalName": None,
        }
    }


def record_ms_pim_membership_event(
    ctx: GraphContext,
    definition: Mapping[str, Any],
    principal: Mapping[str, Any],
    *,
    removed: bool,
) -> dict[str, Any]:
    """Append the Core Directory "Add member to role" ("Remove member from role" when
    ``removed``) that Entra writes, initiated by MS-PIM, for an active assignment PIM makes."""
    event = build_audit_event(
        initiated_by=ms_pim_initiator(ctx.tenant),
        category="RoleManagement",
        activity="Remove member from role" if removed else "Add member to role",
        target_resources=role_member_targets(definition, principal, removed=removed),
        activity_time=ctx.now(),
        logged_by_service="Core Directory",
        correlation_id=ctx.request_id,
    )
    with ctx.tenant.lock:
        ctx.tenant.audit_events.append(event)
    return event
