"""The Graph application permissions the portal needs, derived from the operations it can call.

``graph.operations.REGISTRY`` holds every request the portal can make (GraphClient accepts
nothing else). Each operation's reference page (``Operation.reference``, on learn.microsoft.com)
lists the application permissions that allow it; :data:`OPERATION_PERMISSIONS` records them per
operation name: the one the portal asks an admin to grant first, then the others Graph also
accepts. Nothing else here is kept by hand: :func:`needed_permissions` works the list out from the
registry (the fewest permissions that allow every operation), so a new operation shows up at
once, and an operation with no entry fails the preflight and its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import graph
from graph.operations import REGISTRY, Operation


@dataclass(frozen=True)
class Allowed:
    """The application permissions that allow one operation: ``grant`` (what the portal asks
    for) first, then ``also`` (any of them serves too, usually broader)."""

    grant: str
    also: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.grant, *self.also)


_USER_READ = Allowed(
    # user-get / user-list name User.ReadBasic.All as least privileged, but it returns only basic
    # properties; the portal selects accountEnabled, department, jobTitle and more.
    "User.Read.All",
    ("User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
)
_MEMBERSHIP_READ = Allowed(
    "GroupMember.Read.All",
    (
        "Group.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
)
_METHODS_READ = Allowed(
    "UserAuthenticationMethod.Read.All", ("UserAuthenticationMethod.ReadWrite.All",)
)
# Each method kind's delete page also names a per-method permission (UserAuthMethod-Phone...);
# the portal deletes every kind, so it asks for the one that covers them all.
_METHODS_WRITE = Allowed("UserAuthenticationMethod.ReadWrite.All")
_AUTH_POLICY_READ = Allowed(
    # temporaryaccesspassauthenticationmethodconfiguration-get: Policy.Read.AuthenticationMethod
    # (least privileged), Policy.ReadWrite.AuthenticationMethod.
    "Policy.Read.AuthenticationMethod",
    ("Policy.ReadWrite.AuthenticationMethod",),
)
_MFA_REQUIREMENTS_READ = Allowed("Policy.Read.All", ("Policy.ReadWrite.AuthenticationMethod",))
_MFA_REQUIREMENTS_WRITE = Allowed("Policy.ReadWrite.AuthenticationMethod")
_ROLE_READ = Allowed(
    "RoleManagement.Read.Directory",
    (
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
)
_ROLE_WRITE = Allowed("RoleManagement.ReadWrite.Directory")
_ELIGIBILITY_READ = Allowed(
    "RoleEligibilitySchedule.Read.Directory",
    (
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
    ),
)
_ELIGIBILITY_WRITE = Allowed(
    "RoleEligibilitySchedule.ReadWrite.Directory", ("RoleManagement.ReadWrite.Directory",)
)
_ASSIGNMENT_SCHEDULE_READ = Allowed(
    "RoleAssignmentSchedule.Read.Directory",
    (
        "RoleAssignmentSchedule.ReadWrite.Directory",
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
    ),
)
_ASSIGNMENT_SCHEDULE_WRITE = Allowed(
    "RoleAssignmentSchedule.ReadWrite.Directory", ("RoleManagement.ReadWrite.Directory",)
)
_APPLICATION_READ = Allowed(
    "Application.Read.All",
    (
        "Application.ReadWrite.OwnedBy",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
)

# Operation name -> the permissions its reference page lists (application permissions).
OPERATION_PERMISSIONS: Mapping[str, Allowed] = {
    "applications.application": _APPLICATION_READ,
    "applications.app_role_assigned_to": _APPLICATION_READ,
    "applications.service_principal_app_roles": _APPLICATION_READ,
    "audit_logs.directory_audits": Allowed("AuditLog.Read.All"),
    # authenticationmethodsroot-list-userregistrationdetails / userregistrationdetails-get:
    # AuditLog.Read.All only ("Higher privileged permissions: Not available").
    "reports.registration_details": Allowed("AuditLog.Read.All"),
    "reports.registration_details_of": Allowed("AuditLog.Read.All"),
    "groups.members": _MEMBERSHIP_READ,
    # group-list: GroupMember.Read.All is the least privileged application permission.
    "groups.list_startswith": _MEMBERSHIP_READ,
    "groups.role_assignable": _MEMBERSHIP_READ,
    "groups.transitive_members": _MEMBERSHIP_READ,
    "methods.create_tap": _METHODS_WRITE,
    "methods.delete.emailMethods": _METHODS_WRITE,
    "methods.delete.fido2Methods": _METHODS_WRITE,
    "methods.delete.microsoftAuthenticatorMethods": _METHODS_WRITE,
    "methods.delete.phoneMethods": _METHODS_WRITE,
    "methods.delete.platformCredentialMethods": _METHODS_WRITE,
    "methods.delete.softwareOathMethods": _METHODS_WRITE,
    "methods.delete.temporaryAccessPassMethods": _METHODS_WRITE,
    "methods.delete.windowsHelloForBusinessMethods": _METHODS_WRITE,
    "methods.list": _METHODS_READ,
    "methods.tap_policy": _AUTH_POLICY_READ,
    "requirements.get": _MFA_REQUIREMENTS_READ,
    "requirements.sign_in_preferences": _METHODS_READ,
    "requirements.update": _MFA_REQUIREMENTS_WRITE,
    "roles.assignment_schedule_requests": _ASSIGNMENT_SCHEDULE_READ,
    "roles.assignments": _ROLE_READ,
    "roles.create_assignment": _ROLE_WRITE,
    "roles.create_assignment_schedule_request": _ASSIGNMENT_SCHEDULE_WRITE,
    "roles.create_eligibility_request": _ELIGIBILITY_WRITE,
    "roles.definitions": _ROLE_READ,
    "roles.delete_assignment": _ROLE_WRITE,
    "roles.eligibility_requests": _ELIGIBILITY_READ,
    "roles.eligibility_schedules": _ELIGIBILITY_READ,
    # user-revokesigninsessions: User.RevokeSessions.All (least privileged), User.ReadWrite.All,
    # Directory.ReadWrite.All.
    "sessions.revoke": Allowed(
        "User.RevokeSessions.All", ("User.ReadWrite.All", "Directory.ReadWrite.All")
    ),
    "users.get": _USER_READ,
    "users.list_startswith": _USER_READ,
    "users.manager": _USER_READ,
    "users.search": _USER_READ,
    "users.transitive_member_of": _MEMBERSHIP_READ,
}


def all_operations() -> dict[str, Operation]:
    """Every operation the graph package declares (each of its modules imported once)."""
    for module in pkgutil.iter_modules(graph.__path__):
        importlib.import_module(f"graph.{module.name}")
    return dict(REGISTRY)


def unmapped_operations(operations: Iterable[str] | None = None) -> list[str]:
    """Operations with no entry in :data:`OPERATION_PERMISSIONS` (should be none)."""
    names = all_operations() if operations is None else operations
    return sorted(n for n in names if n not in OPERATION_PERMISSIONS)


def needed_permissions(operations: Iterable[str] | None = None) -> tuple[str, ...]:
    """The fewest permissions, from each operation's ``grant``, that allow every operation:
    a ``grant`` is dropped when the others left still allow everything it was for (the
    eligibility write is allowed by RoleManagement.ReadWrite.Directory, which the role writes
    need anyway). Sorted."""
    names = sorted(all_operations() if operations is None else operations)
    allowed = [OPERATION_PERMISSIONS[n] for n in names if n in OPERATION_PERMISSIONS]
    chosen = {a.grant for a in allowed}
    # Try to drop the narrowest-scoped grants first: one granted for few operations.
    for candidate in sorted(chosen, key=lambda p: (sum(a.grant == p for a in allowed), p)):
        rest = chosen - {candidate}
        if all(rest & set(a.accepted) for a in allowed):
            chosen = rest
    return tuple(sorted(chosen))


def needed_for(operation: str) -> str:
    """The needed permission that allows ``operation`` (the one to grant when it is refused)."""
    allowed = OPERATION_PERMISSIONS[operation]
    needed = needed_permissions()
    return next((p for p in allowed.accepted if p in needed), allowed.grant)


@dataclass(frozen=True)
class PermissionReport:
    """The app token's permissions against the need. ``missing``: needed permission -> the
    operations left with none of their accepted permissions; ``broader``: a held permission
    beyond the need that some operation relies on (no needed one held for it) -> the needed one
    to grant instead; ``unneeded``: held permissions no operation relies on."""

    needed: tuple[str, ...]
    held: tuple[str, ...]
    missing: Mapping[str, tuple[str, ...]]
    broader: Mapping[str, str]
    unneeded: tuple[str, ...]
    unmapped: tuple[str, ...]


def compare(held: Iterable[str], operations: Iterable[str] | None = None) -> PermissionReport:
    """Compare the permissions an app token holds (its ``roles`` claim) with the need."""
    names = sorted(all_operations() if operations is None else operations)
    held_set = set(held)
    needed = needed_permissions(names)
    missing: dict[str, list[str]] = {}
    relied_on: set[str] = set()
    broader: dict[str, str] = {}
    for name in names:
        allowed = OPERATION_PERMISSIONS.get(name)
        if allowed is None:
            continue
        have = [p for p in allowed.accepted if p in held_set]
        if not have:
            want = next((p for p in allowed.accepted if p in needed), allowed.grant)
            missing.setdefault(want, []).append(name)
            continue
        using_needed = [p for p in have if p in needed]
        if using_needed:
            relied_on.add(using_needed[0])
        else:
            relied_on.add(have[0])
            want = next((p for p in allowed.accepted if p in needed), allowed.grant)
            broader.setdefault(have[0], want)
    unneeded = sorted(held_set - set(needed) - relied_on)
    return PermissionReport(
        needed=needed,
        held=tuple(sorted(held_set)),
        missing={p: tuple(ops) for p, ops in sorted(missing.items())},
        broader=dict(sorted(broader.items())),
        unneeded=tuple(unneeded),
        unmapped=tuple(unmapped_operations(names)),
    )
