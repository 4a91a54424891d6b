"""Every Graph beta endpoint this package calls, and why there is no v1.0 alternative.

Beta APIs may change without notice and are not supported in production by Microsoft, so the
list is kept short and in one place; the contract test checks that every ``/beta`` operation
declared in the package appears here (and that nothing here is stale).
"""

from __future__ import annotations

BETA_PATHS: tuple[tuple[str, str], ...] = (
    (
        "/beta/users/{user_id}/authentication/requirements",
        "Per-user MFA state (strongAuthenticationRequirements.perUserMfaState) exists only in "
        "beta; the portal reads it and sets enabled/enforced/disabled on the helpdesk's request.",
    ),
    (
        "/beta/users/{user_id}/authentication/signInPreferences",
        "The user's default MFA method (userPreferredMethodForSecondaryAuthentication) from live "
        "state: v1.0 methods do not say which is the default, and v1.0's "
        "userRegistrationDetails report lags and needs more permissions (graph/requirements.py). "
        "The person page shows it; a re-registration deletes it last.",
    ),
)
