"""A user's authentication states, beta only (see graph/beta.py): legacy per-user MFA state and
the sign-in preferences that name the default MFA method.

Which source for the default method: beta ``/users/{id}/authentication/signInPreferences``, not
v1.0 ``/reports/authenticationMethods/userRegistrationDetails/{id}`` (whose
``userPreferredMethodForSecondaryAuthentication`` says the same thing). The report is a periodic
snapshot that lags behind changes and needs a P1/P2 licence (and AuditLog.Read.All), while
signInPreferences is read from the user's live state with the UserAuthenticationMethod.Read.All
permission the portal already holds. The portal uses the
default to order deletions right now, so a stale answer would defeat the purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

from graph.client import GraphClient
from graph.operations import operation
from graph.results import (
    AuthenticationMethod,
    MethodKind,
    PerUserMfa,
    PerUserMfaState,
    PreferredSecondaryMethod,
    SignInPreferences,
)

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

_GET_SIGN_IN_PREFERENCES = operation(
    "requirements.sign_in_preferences",
    "GET",
    "/beta/users/{user_id}/authentication/signInPreferences",
    reference="https://learn.microsoft.com/graph/api/authentication-get?view=graph-rest-beta",
)

# The phone type each phone-based preference names.
_PHONE_PREFERENCES: dict[PreferredSecondaryMethod, str] = {
    PreferredSecondaryMethod.SMS: "mobile",
    PreferredSecondaryMethod.VOICE_MOBILE: "mobile",
    PreferredSecondaryMethod.VOICE_ALTERNATE_MOBILE: "alternateMobile",
    PreferredSecondaryMethod.VOICE_OFFICE: "office",
}


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


def get_sign_in_preferences(client: GraphClient, user_id: str) -> SignInPreferences:
    """The user's sign-in preferences: the default MFA method and whether system-preferred MFA
    is on. Needs UserAuthenticationMethod.Read.All (ReadWrite.All also serves). Draws on the
    "reports" budget, like every call under ``/authentication``. Raises GraphNotFound for an
    unknown user."""
    # Reference: https://learn.microsoft.com/graph/api/authentication-get?view=graph-rest-beta
    # (resource: https://learn.microsoft.com/graph/api/resources/signinpreferences?view=graph-rest-beta)
    response = client.call(_GET_SIGN_IN_PREFERENCES, path={"user_id": user_id})
    return SignInPreferences.from_graph(user_id, response.data)


def default_method_id(
    methods: Sequence[AuthenticationMethod], preferences: SignInPreferences | None
) -> str | None:
    """The id of the method in ``methods`` that ``preferences`` names as the default, or None.

    None when there are no preferences, no default, or the match is not unique (two
    Authenticator devices for ``push``, say): Graph names a kind of method, not a method, so a
    guess could make a caller delete the real default too early. ``oath`` is a software OATH
    token when the user has one, else the Authenticator app (which also gives codes).
    """
    if preferences is None or preferences.preferred_method is None:
        return None
    preferred = preferences.preferred_method
    if preferred in _PHONE_PREFERENCES:
        phone_type = _PHONE_PREFERENCES[preferred]
        matches = [m for m in methods if m.kind is MethodKind.PHONE and m.phone_type == phone_type]
    elif preferred is PreferredSecondaryMethod.OATH:
        matches = [m for m in methods if m.kind is MethodKind.SOFTWARE_OATH] or [
            m for m in methods if m.kind is MethodKind.MICROSOFT_AUTHENTICATOR
        ]
    else:
        matches = [m for m in methods if m.kind is MethodKind.MICROSOFT_AUTHENTICATOR]
    return matches[0].id if len(matches) == 1 else None
