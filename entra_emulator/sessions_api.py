"""``POST /users/{id}/revokeSignInSessions``: invalidate a user's refresh tokens and sessions.

Graph resets the user's ``signInSessionsValidFromDateTime`` to now and answers 200 with an
``Edm.Boolean`` ``true``. Entra writes "Update StsRefreshTokenValidFrom Timestamp" (category
UserManagement, Core Directory) with the old and new ``StsRefreshTokensValidFrom`` values.

Permissions: User.RevokeSessions.All (least privileged, application and delegated), or
User.ReadWrite.All / Directory.ReadWrite.All. Throttling class "identity" (a user write).

Reference: https://learn.microsoft.com/graph/api/user-revokesigninsessions
"""

from __future__ import annotations

import json

from werkzeug import Response

from entra_emulator.audit_api import record_audit, user_target
from entra_emulator.graph_core import GraphContext, graph_route, json_response
from entra_emulator.methods_api import require_user

REVOKE_PERMISSIONS = ("User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All")


def _sts_value(timestamp: str | None) -> str:
    # Entra renders this modified property as a JSON array of one timestamp string.
    return json.dumps([timestamp] if timestamp else [])


@graph_route(
    "POST",
    r"/users/(?P<user_id>[^/]+)/revokeSignInSessions",
    throttle_class="identity",
    permissions=REVOKE_PERMISSIONS,
)
def revoke_sign_in_sessions(ctx: GraphContext) -> Response:
    """Set ``signInSessionsValidFromDateTime`` to now; answer ``{"value": true}``."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    # Graph stores whole seconds for this property.
    now = ctx.now().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    with ctx.tenant.lock:
        previous = user.get("signInSessionsValidFromDateTime")
        user["signInSessionsValidFromDateTime"] = now
    record_audit(
        ctx,
        category="UserManagement",
        activity="Update StsRefreshTokenValidFrom Timestamp",
        target_resources=[
            user_target(
                user,
                [
                    {
                        "displayName": "StsRefreshTokensValidFrom",
                        "oldValue": _sts_value(previous),
                        "newValue": _sts_value(now),
                    }
                ],
            )
        ],
        logged_by_service="Core Directory",
    )
    body = {
        "@odata.context": ctx.context_url("Edm.Boolean"),
        "value": True,
    }
    return json_response(ctx, body)
