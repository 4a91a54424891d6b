"""Sign-in sessions: revoke them all for one user."""

from __future__ import annotations

from graph.client import GraphClient
from graph.operations import operation

_REVOKE_SIGN_IN_SESSIONS = operation(
    "sessions.revoke",
    "POST",
    "/v1.0/users/{user_id}/revokeSignInSessions",
    reference="https://learn.microsoft.com/graph/api/user-revokesigninsessions",
    # Repeating it only moves signInSessionsValidFromDateTime forward again: safe to retry.
    idempotent=True,
)


def revoke_sign_in_sessions(client: GraphClient, user_id: str) -> None:
    """Invalidate the user's refresh tokens and session cookies (takes minutes to propagate;
    does not affect guests' home tenants). Raises GraphError on failure."""
    # Reference: https://learn.microsoft.com/graph/api/user-revokesigninsessions
    client.call(_REVOKE_SIGN_IN_SESSIONS, path={"user_id": user_id})
