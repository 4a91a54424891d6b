"""Legacy per-user MFA state (beta only, see graph/beta.py)."""

from __future__ import annotations

from graph.client import GraphClient
from graph.operations import operation
from graph.results import PerUserMfa, PerUserMfaState

_GET_REQUIREMENTS = operation(
    "requirements.get",
    "GET",
    "/beta/users/{user_id}/authentication/requirements",
    reference="https://learn.microsoft.com/graph/api/authentication-get?view=graph-rest-beta",
)
_UPDATE_REQUIREMENTS = operation(
    "requirements.update",
    "PATCH",
    "/beta/users/{user_id}/authentication/requirements",
    reference="https://learn.microsoft.com/graph/api/authentication-update?view=graph-rest-beta",
    body=("perUserMfaState",),
)


def get_per_user_mfa_state(client: GraphClient, user_id: str) -> PerUserMfaState:
    """The user's per-user MFA state (``disabled``, ``enabled`` or ``enforced``)."""
    # Reference: https://learn.microsoft.com/graph/api/authentication-get?view=graph-rest-beta
    response = client.call(_GET_REQUIREMENTS, path={"user_id": user_id})
    return PerUserMfaState.from_graph(user_id, response.data)


def set_per_user_mfa_state(client: GraphClient, user_id: str, state: PerUserMfa | str) -> None:
    """Set the per-user MFA state. ``enabled`` for a user who already has methods becomes
    ``enforced`` at Graph: re-read with :func:`get_per_user_mfa_state` to know the result.

    Raises ValueError for an unknown state. A PATCH is not repeated after a lost answer.
    """
    # Reference: https://learn.microsoft.com/graph/api/authentication-update?view=graph-rest-beta
    value = PerUserMfa(state)
    client.call(
        _UPDATE_REQUIREMENTS, path={"user_id": user_id}, body={"perUserMfaState": value.value}
    )
