"""The Entra audit activities the portal relies on, spelt exactly as Microsoft's reference does.

Entra's ``activityDisplayName`` is matched exactly (the keep rules of ``audit.sync``, the
correlation of ``audit.correlation``, the roles' drift), so every name here is copied from
Microsoft's audit activity reference, one group per table of that page ("service": the table's
heading, which is the event's ``loggedByService``; "category": the row's first column):

    https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities

Read in its revisions of 2024-04-15 and 2024-10-04 (ms.date). The later one renamed the FIDO2
rows of the Device Registration Service to "Passkey (device-bound)" and added "Update per-user
multifactor authentication state" to the Authentication Methods service; the portal keeps both
spellings, since a tenant's log holds events written before and after a rename.

The reference lists names; it does not say which action writes which name. Where the portal
expects a name for one of its own actions (``mfa.audit_sources``), it expects every name the
reference gives for that act.

A plain module (no Django import): ``portal/settings_apps.py`` takes the defaults of
``AUDIT_KEEP_ACTIVITIES`` from it.
"""

from __future__ import annotations

REFERENCE = (
    "https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities"
)

# The modified property (targetResources[].modifiedProperties[].displayName) of an "Update
# user" that changed the legacy per-user MFA state. Docs silent: the reference names
# activities, not properties; the name is the one public "Update user" events carry.
MFA_REQUIREMENT_PROPERTY = "StrongAuthenticationRequirement"

# --- Authentication Methods (category UserManagement) -------------------------------------------
ADMIN_DELETED_SECURITY_INFO = "Admin deleted security info"
ADMIN_REGISTERED_SECURITY_INFO = "Admin registered security info"
ADMIN_UPDATED_SECURITY_INFO = "Admin updated security info"
USER_DELETED_SECURITY_INFO = "User deleted security info"
USER_REGISTERED_SECURITY_INFO = "User registered security info"
USER_UPDATED_SECURITY_INFO = "User updated security info"
USER_CHANGED_DEFAULT_SECURITY_INFO = "User changed default security info"
# Listed from the 2024-10-04 revision on, next to the per-user MFA API of Graph
# (``/users/{id}/authentication/requirements``).
PER_USER_MFA_STATE_UPDATED = "Update per-user multifactor authentication state"

AUTHENTICATION_METHODS_ACTIVITIES: tuple[str, ...] = (
    ADMIN_DELETED_SECURITY_INFO,
    ADMIN_REGISTERED_SECURITY_INFO,
    ADMIN_UPDATED_SECURITY_INFO,
    USER_DELETED_SECURITY_INFO,
    USER_REGISTERED_SECURITY_INFO,
    USER_UPDATED_SECURITY_INFO,
    USER_CHANGED_DEFAULT_SECURITY_INFO,
    PER_USER_MFA_STATE_UPDATED,
)

# --- Device Registration Service (category UserManagement) ----------------------------------------
# FIDO2 keys: "Add FIDO2 security key" / "Delete FIDO2 security key(s)" in the 2024-04-15
# revision, "Add Passkey (device-bound)" / "Delete Passkey (device-bound)" in the 2024-10-04 one.
FIDO2_KEY_ADDED = "Add FIDO2 security key"
FIDO2_KEY_DELETED = "Delete FIDO2 security key(s)"
PASSKEY_ADDED = "Add Passkey (device-bound)"
PASSKEY_DELETED = "Delete Passkey (device-bound)"
WINDOWS_HELLO_ADDED = "Add Windows Hello for Business credential"
WINDOWS_HELLO_DELETED = "Delete Windows Hello for Business credential"

DEVICE_REGISTRATION_ACTIVITIES: tuple[str, ...] = (
    FIDO2_KEY_ADDED,
    FIDO2_KEY_DELETED,
    PASSKEY_ADDED,
    PASSKEY_DELETED,
    WINDOWS_HELLO_ADDED,
    WINDOWS_HELLO_DELETED,
)
# The names a deletion of a FIDO2 key or a Windows Hello credential may be logged under.
FIDO2_DELETIONS: tuple[str, ...] = (PASSKEY_DELETED, FIDO2_KEY_DELETED)
WINDOWS_HELLO_DELETIONS: tuple[str, ...] = (WINDOWS_HELLO_DELETED,)

# --- Core Directory (category UserManagement) -----------------------------------------------------
USER_UPDATED = "Update user"
STRONG_AUTHENTICATION_ENABLED = "Enable Strong Authentication"
STRONG_AUTHENTICATION_DISABLED = "Disable Strong Authentication"
SESSIONS_REVOKED = "Update StsRefreshTokenValidFrom Timestamp"
PASSWORD_RESET = "Reset password"
PASSWORD_CHANGED = "Change user password"

# --- Self-service password management (category UserManagement) --------------------------------
PASSWORD_RESET_BY_ADMIN = "Reset password (by admin)"
PASSWORD_RESET_SELF_SERVICE = "Reset password (self-service)"
PASSWORD_CHANGED_SELF_SERVICE = "Change password (self-service)"

PASSWORD_ACTIVITIES: tuple[str, ...] = (
    PASSWORD_RESET,
    PASSWORD_CHANGED,
    PASSWORD_RESET_BY_ADMIN,
    PASSWORD_RESET_SELF_SERVICE,
    PASSWORD_CHANGED_SELF_SERVICE,
)

# Every name the reference gives for a change of someone's per-user MFA state: the
# Authentication Methods row, the two Core Directory rows, and "Update user" when it modified
# StrongAuthenticationRequirement (the keep rules and correlation check the property).
PER_USER_MFA_ACTIVITIES: tuple[str, ...] = (
    PER_USER_MFA_STATE_UPDATED,
    STRONG_AUTHENTICATION_ENABLED,
    STRONG_AUTHENTICATION_DISABLED,
)

# --- Core Directory (category RoleManagement) -----------------------------------------------------
ROLE_MEMBER_ADDED = "Add member to role"
ROLE_MEMBER_REMOVED = "Remove member from role"
ROLE_ELIGIBLE_MEMBER_ADDED = "Add eligible member to role"
ROLE_ELIGIBLE_MEMBER_REMOVED = "Remove eligible member from role"

# --- Privileged Identity Management (category RoleManagement, for Microsoft Entra roles) ----------
# Every PIM row carries its suffix: "(permanent)" or "(timebound)". Names without one do not
# exist in the reference (the keep list once said "Remove eligible member from role in PIM
# completed", which matched nothing).
PIM_ACTIVE_ADDED_PERMANENT = "Add member to role in PIM completed (permanent)"
PIM_ACTIVE_ADDED_TIMEBOUND = "Add member to role in PIM completed (timebound)"
PIM_ACTIVE_REMOVED_PERMANENT = "Remove member from role in PIM completed (permanent)"
PIM_ACTIVE_REMOVED_TIMEBOUND = "Remove member from role in PIM completed (timebound)"
PIM_ELIGIBLE_ADDED_PERMANENT = "Add eligible member to role in PIM completed (permanent)"
PIM_ELIGIBLE_ADDED_TIMEBOUND = "Add eligible member to role in PIM completed (timebound)"
PIM_ELIGIBLE_REMOVED_PERMANENT = "Remove eligible member from role in PIM completed (permanent)"
PIM_ELIGIBLE_REMOVED_TIMEBOUND = "Remove eligible member from role in PIM completed (timebound)"

# A role given to someone, and taken away: directly (Core Directory) or through PIM.
ROLE_ADD_ACTIVITIES: tuple[str, ...] = (
    ROLE_MEMBER_ADDED,
    ROLE_ELIGIBLE_MEMBER_ADDED,
    PIM_ACTIVE_ADDED_PERMANENT,
    PIM_ACTIVE_ADDED_TIMEBOUND,
    PIM_ELIGIBLE_ADDED_PERMANENT,
    PIM_ELIGIBLE_ADDED_TIMEBOUND,
)
ROLE_REMOVE_ACTIVITIES: tuple[str, ...] = (
    ROLE_MEMBER_REMOVED,
    ROLE_ELIGIBLE_MEMBER_REMOVED,
    PIM_ACTIVE_REMOVED_PERMANENT,
    PIM_ACTIVE_REMOVED_TIMEBOUND,
    PIM_ELIGIBLE_REMOVED_PERMANENT,
    PIM_ELIGIBLE_REMOVED_TIMEBOUND,
)

# --- what the portal does with them --------------------------------------------------------------
# What a deletion of one authentication method by an admin (or the portal) may be logged as.
METHOD_DELETIONS: tuple[str, ...] = (
    ADMIN_DELETED_SECURITY_INFO,
    *FIDO2_DELETIONS,
    *WINDOWS_HELLO_DELETIONS,
)

# Changes to someone's sign-in security that the helpdesk would normally make through the
# portal (a role membership change is recognised by its wording, ``audit.correlation``).
WATCHED_ACTIVITIES: frozenset[str] = frozenset(
    {
        *METHOD_DELETIONS,
        ADMIN_REGISTERED_SECURITY_INFO,
        ADMIN_UPDATED_SECURITY_INFO,
        SESSIONS_REVOKED,
        *PER_USER_MFA_ACTIVITIES,
    }
)

# Every name the portal relies on (the keep rules must keep each; tests/audit).
RELIED_ON: tuple[str, ...] = (
    *AUTHENTICATION_METHODS_ACTIVITIES,
    *DEVICE_REGISTRATION_ACTIVITIES,
    USER_UPDATED,
    STRONG_AUTHENTICATION_ENABLED,
    STRONG_AUTHENTICATION_DISABLED,
    SESSIONS_REVOKED,
    *PASSWORD_ACTIVITIES,
    *ROLE_ADD_ACTIVITIES,
    *ROLE_REMOVE_ACTIVITIES,
)

# The default of AUDIT_KEEP_ACTIVITIES: every name above, "Update user" only when it modified
# the per-user MFA property ("Activity:Property", ``audit.sync.KeepRule``).
DEFAULT_KEEP_ACTIVITIES: tuple[str, ...] = tuple(
    f"{USER_UPDATED}:{MFA_REQUIREMENT_PROPERTY}" if name == USER_UPDATED else name
    for name in RELIED_ON
)

# The categories those names are logged under (the reference's first column).
DEFAULT_KEEP_CATEGORIES: tuple[str, ...] = ("UserManagement", "RoleManagement")
