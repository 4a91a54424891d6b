"""Per-user MFA state (beta only): ``GET`` / ``PATCH /beta/users/{id}/authentication/requirements``.

The resource is ``strongAuthenticationRequirements`` with one property, ``perUserMfaState``:
``disabled``, ``enabled`` or ``enforced``. Graph documents that setting ``enabled`` for a user who
has already registered an MFA method turns the state into ``enforced``; this module applies that
rule with the methods held in ``tenant.methods``. PATCH answers 204.

A change writes "Update per-user multifactor authentication state" (UserManagement,
Authentication Methods), the audit activity reference's row for this act; docs silent on which
of the reference's per-user MFA names (that one, Core Directory's "Update user", "Enable Strong
Authentication", "Disable Strong Authentication") Graph's API writes.

Permissions: read Policy.Read.All (or the write permission); write
Policy.ReadWrite.AuthenticationMethod. Throttling class "reports" (authentication resources).

Reference: https://learn.microsoft.com/graph/api/authentication-get-requirements?view=graph-rest-beta,
https://learn.microsoft.com/graph/api/resources/strongauthenticationrequirements?view=graph-rest-beta,
https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug import Response

from entra_emulator.audit_api import (
    AUTHENTICATION_METHODS_SERVICE,
    PER_USER_MFA_ACTIVITY,
    record_audit,
    user_target,
)
from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    graph_route,
    json_response,
    no_content,
)
from entra_emulator.methods_api import MFA_METHOD_TYPES, require_user

READ_PERMISSIONS = ("Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod")
WRITE_PERMISSIONS = ("Policy.ReadWrite.AuthenticationMethod",)
STATES = ("disabled", "enabled", "enforced")
_PATH = r"/users/(?P<user_id>[^/]+)/authentication/requirements"


def resolve_state(requested: Any, methods: Iterable[Mapping[str, Any]]) -> str:
    """The state stored for a PATCH asking for ``requested``; raises GraphHttpError(400).

    ``enabled`` becomes ``enforced`` when the user already has an MFA-capable method.
    """
    if not isinstance(requested, str) or requested not in STATES:
        raise GraphHttpError(
            400,
            "badRequest",
            f"Invalid value '{requested}' for perUserMfaState. Allowed values: "
            + ", ".join(STATES)
            + ".",
        )
    if requested == "enabled" and any(m["@odata.type"] in MFA_METHOD_TYPES for m in methods):
        return "enforced"
    return requested


@graph_route(
    "GET", _PATH, throttle_class="reports", permissions=READ_PERMISSIONS, versions=("beta",)
)
def get_requirements(ctx: GraphContext) -> Response:
    """The user's ``strongAuthenticationRequirements`` (``disabled`` when never set)."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    with ctx.tenant.lock:
        state = ctx.tenant.per_user_mfa.get(user["id"], "disabled")
    body = {
        "@odata.context": ctx.context_url(
            f"users('{ctx.params['user_id']}')/authentication/requirements/$entity"
        ),
        "perUserMfaState": state,
    }
    return json_response(ctx, body)


@graph_route(
    "PATCH", _PATH, throttle_class="reports", permissions=WRITE_PERMISSIONS, versions=("beta",)
)
def update_requirements(ctx: GraphContext) -> Response:
    """Set ``perUserMfaState``; 204. One audit event when the stored state changes."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    body = ctx.json()
    unknown = sorted(set(body) - {"perUserMfaState", "@odata.type"})
    if unknown or "perUserMfaState" not in body:
        raise GraphHttpError(
            400,
            "badRequest",
            f"Invalid property '{unknown[0]}'." if unknown else "perUserMfaState is required.",
        )
    with ctx.tenant.lock:
        new_state = resolve_state(body["perUserMfaState"], ctx.tenant.methods.get(user["id"], []))
        old_state = ctx.tenant.per_user_mfa.get(user["id"], "disabled")
        ctx.tenant.per_user_mfa[user["id"]] = new_state
    if new_state != old_state:
        # The reference's per-user MFA row (audit_api.PER_USER_MFA_ACTIVITY). Docs silent on
        # the event's modifiedProperties: none are written rather than invented.
        record_audit(
            ctx,
            category="UserManagement",
            activity=PER_USER_MFA_ACTIVITY,
            target_resources=[user_target(user)],
            logged_by_service=AUTHENTICATION_METHODS_SERVICE,
        )
    return no_content(ctx)
