"""Every Entra activity name the portal relies on is Microsoft's, and the cache keeps it.

Entra matches nothing loosely: an activity is kept (``audit.sync.KeepRule``), linked to a
request (``audit.correlation``) or counted as drift only when its ``activityDisplayName`` is
exactly one the portal names. Today's defect was a keep list that said "Remove eligible member
from role in PIM completed" where Entra writes "... (permanent)" or "... (timebound)": every PIM
eligibility removal was dropped.

``REFERENCE`` below is a transcription of the rows of Microsoft's audit activity reference for
the services the portal touches (category, activity), from its revisions of 2024-04-15 and
2024-10-04: https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities

What would break if these failed: a name in ``audit/activities.py`` that Entra never writes (a
silent hole in the audit trail), a default keep rule that drops a name the portal relies on, or
an emulator that writes for a portal action a name that is not Microsoft's, so that the tests
would pass against names a real tenant never sends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests

from audit import activities
from audit.sync import KeepRule
from entra_emulator.audit_api import build_audit_event
from graph import BudgetRate, GraphClient
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph import roles as graph_roles
from graph import sessions as graph_sessions
from graph.results import AuthenticationMethod, DirectoryAudit, MethodKind
from mfa.audit_sources import EXPECTED_ACTIVITIES
from mfa.models import ActionKind
from roles.catalog import ADD_ACTIVITIES, REMOVE_ACTIVITIES
from tests.graph.test_against_emulator import client_for
from tests.personas import PERSONAS

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer

SAM = PERSONAS.standard_target

_AUTHENTICATION_METHODS = """
Admin deleted security info
Admin registered security info
Admin started password reset
Admin updated security info
Get passkey creation options
Restore multifactor authentication on all remembered devices
Update per-user multifactor authentication state
User canceled security info registration
User changed default security info
User deleted security info
User registered all required security info
User registered security info
User reviewed security info
User started password change
user started password reset
User started security info registration
User updated security info
"""
_CORE_DIRECTORY_USERS = """
Add app role assignment to group
Add user
Add user sponsor
Add users strong authentication phone app detail
Change user license
Change user password
Convert federated user to managed
Create application password for user
Delete application password for user
Delete user
Disable Strong Authentication
Disable account
Enable Strong Authentication
Enable account
Hard Delete user
Remove app role assignment from user
Remove user sponsor
Remove users strong authentication phone app detail
Reset password
Restore user
Set force change user password
Set user manager
Set user oath token metadata enabled
Update StsRefreshTokenValidFrom Timestamp
Update external secrets
Update user
"""
_CORE_DIRECTORY_ROLES = """
Add EligibleRoleAssignment to RoleDefinition
Add eligible member to role
Add member to role
Add member to role scoped over Restricted Management Administrative Unit
Add role assignment to role definition
Add role definition
Add role from template
Add scoped member to role
Delete role definition
Remove EligibleRoleAssignment from RoleDefinition
Remove eligible member from role
Remove member from role
Remove member from role scoped over Restricted Management Administrative Unit
Remove role assignment from role definition
Remove scoped member from role
Update role
Update role definition
"""
_DEVICE_REGISTRATION_USERS = """
Add FIDO2 security key
Add Passkey (device-bound)
Add Windows Hello for Business credential
Add passwordless phone sign-in credential
Add platform credential
Delete FIDO2 security key(s)
Delete Passkey (device-bound)
Delete Windows Hello for Business credential
Delete passwordless phone sign-in credential
Delete platform credential
"""
_PIM_ROLES = """
Add eligible member to role in PIM canceled (permanent)
Add eligible member to role in PIM canceled (renew)
Add eligible member to role in PIM canceled (timebound)
Add eligible member to role in PIM completed (permanent)
Add eligible member to role in PIM completed (timebound)
Add eligible member to role in PIM requested (permanent)
Add eligible member to role in PIM requested (renew)
Add eligible member to role in PIM requested (timebound)
Add member to role approval requested (PIM activation)
Add member to role canceled (PIM activation)
Add member to role completed (PIM activation)
Add member to role in PIM canceled (renew)
Add member to role in PIM canceled (timebound)
Add member to role in PIM completed (permanent)
Add member to role in PIM completed (timebound)
Add member to role in PIM requested (permanent)
Add member to role in PIM requested (renew)
Add member to role in PIM requested (timebound)
Add member to role outside of PIM (permanent)
Add member to role request approved (PIM activation)
Add member to role request denied (PIM activation)
Add member to role requested (PIM activation)
Remove eligible member from role in PIM completed (permanent)
Remove eligible member from role in PIM completed (timebound)
Remove eligible member from role in PIM requested (permanent)
Remove eligible member from role in PIM requested (timebound)
Remove member from role (PIM activation expired)
Remove member from role completed (PIM deactivate)
Remove member from role in PIM completed (permanent)
Remove member from role in PIM completed (timebound)
Remove member from role in PIM requested (permanent)
Remove member from role in PIM requested (timebound)
Remove member from role requested (PIM deactivate)
Remove permanent direct role assignment
Remove permanent eligible role assignment
"""
_SELF_SERVICE_PASSWORDS = """
Blocked from self-service password reset
Change password (self-service)
Reset password (by admin)
Reset password (self-service)
Security info saved for self-service password reset
Self-service password reset flow activity progress
Unlock user account (self-service)
"""


def _rows(category: str, block: str) -> set[tuple[str, str]]:
    return {(category, line.strip()) for line in block.splitlines() if line.strip()}


# (category, activity) rows of the reference's tables: Authentication Methods, Core Directory,
# Device Registration Service, Privileged Identity Management (Microsoft Entra roles: category
# RoleManagement), Self-service password management.
REFERENCE: frozenset[tuple[str, str]] = frozenset(
    _rows("UserManagement", _AUTHENTICATION_METHODS)
    | _rows("UserManagement", _CORE_DIRECTORY_USERS)
    | _rows("RoleManagement", _CORE_DIRECTORY_ROLES)
    | _rows("UserManagement", _DEVICE_REGISTRATION_USERS)
    | _rows("RoleManagement", _PIM_ROLES)
    | _rows("UserManagement", _SELF_SERVICE_PASSWORDS)
)
REFERENCE_NAMES = {activity: category for category, activity in REFERENCE}


def _names_in_activities_module() -> set[str]:
    """Every activity name ``audit/activities.py`` defines, single or in a group."""
    names: set[str] = set()
    skip = {"REFERENCE", "MFA_REQUIREMENT_PROPERTY", "DEFAULT_KEEP_ACTIVITIES"}
    for attribute, value in vars(activities).items():
        if not attribute.isupper() or attribute in skip or attribute.endswith("CATEGORIES"):
            continue
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, tuple | frozenset):
            names.update(str(v) for v in value)
    return names


def _audit(activity: str, *, category: str, modified: tuple[str, ...] = ()) -> DirectoryAudit:
    event = build_audit_event(
        initiated_by={"app": {"appId": "portal", "displayName": "Portal"}},
        category=category,
        activity=activity,
        target_resources=[
            {
                "id": SAM.oid,
                "type": "User",
                "modifiedProperties": [
                    {"displayName": name, "oldValue": "[]", "newValue": "[]"} for name in modified
                ],
            }
        ],
        activity_time=datetime.now(UTC),
    )
    return DirectoryAudit.from_graph(event)


def test_every_name_the_portal_relies_on_is_in_the_reference() -> None:
    names = _names_in_activities_module()
    assert len(names) > 30
    assert sorted(names - REFERENCE_NAMES.keys()) == []
    # Categories too: the default keep rule filters on them.
    assert {REFERENCE_NAMES[n] for n in names} <= set(activities.DEFAULT_KEEP_CATEGORIES)


def test_the_default_keep_rule_keeps_every_name_the_portal_relies_on() -> None:
    rule = KeepRule.from_settings()
    dropped = [
        name
        for name in sorted(_names_in_activities_module())
        if not rule.keeps(
            _audit(
                name,
                category=REFERENCE_NAMES[name],
                modified=(activities.MFA_REQUIREMENT_PROPERTY,),
            )
        )
    ]
    assert dropped == []
    # "Update user" is kept only when it changed the per-user MFA state.
    assert not rule.keeps(_audit("Update user", category="UserManagement", modified=("JobTitle",)))


@pytest.mark.parametrize("bound", ["permanent", "timebound"])
def test_pim_eligibility_removals_are_kept(bound: str) -> None:
    """The defect: the keep list named the removal without the suffix Entra writes."""
    name = f"Remove eligible member from role in PIM completed ({bound})"
    assert ("RoleManagement", name) in REFERENCE
    assert KeepRule.from_settings().keeps(_audit(name, category="RoleManagement"))
    assert name in REMOVE_ACTIVITIES


# --- what the emulator writes for each portal action ---------------------------------------------


def _emulator_events(server: EmulatorServer) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{server.base_url.rstrip('/')}/_emulator/audit", verify=str(server.ca_path), timeout=30
    )
    answer.raise_for_status()
    return list(answer.json()["value"])


def _user_with(server: EmulatorServer, odata_type: str) -> tuple[str, dict[str, Any]]:
    """A member holding a method of ``odata_type`` that is not their default method."""
    tenant = server.tenant
    for user_id, methods in sorted(tenant.methods.items()):
        for method in methods:
            if (
                method["@odata.type"] == odata_type
                and tenant.default_method.get(user_id) != (method["id"])
            ):
                return user_id, method
    raise AssertionError(f"the seeded tenant holds no {odata_type} that is not a default")


def _delete_every_method(client: GraphClient, user_id: str, default_id: str | None) -> None:
    """A re-registration's deletions: alternateMobile before mobile, the default last."""
    listed = [
        m for m in graph_methods.list_methods(client, user_id) if m.kind is not MethodKind.PASSWORD
    ]

    def order(method: AuthenticationMethod) -> tuple[bool, bool]:
        return (method.id == default_id, method.phone_type == "mobile")

    for method in sorted(listed, key=order):
        graph_methods.delete_method(client, user_id, method)


class _Recorder:
    """Runs each portal action and keeps the audit events the emulator wrote for it."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.by_action: dict[str, list[dict[str, Any]]] = {}

    def run(self, kind: str, call: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        before = len(_emulator_events(self.server))
        call(*args, **kwargs)
        written = _emulator_events(self.server)[before:]
        assert written, f"{kind} wrote no audit event"
        self.by_action.setdefault(kind, []).extend(written)


def test_every_activity_the_emulator_writes_for_a_portal_action_is_microsofts_and_kept(
    fresh_tenant: EmulatorServer,
) -> None:
    fresh_tenant.throttle.configure(enabled=False)
    client = client_for(
        fresh_tenant, budgets={"reports": BudgetRate(500, 10), "identity": BudgetRate(3500, 10)}
    )
    tenant = fresh_tenant.tenant
    fido2_user, fido2 = _user_with(fresh_tenant, "#microsoft.graph.fido2AuthenticationMethod")
    whfb_user, whfb = _user_with(
        fresh_tenant, "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod"
    )
    record = _Recorder(fresh_tenant)

    # mfa: each kind of action request, through the graph calls its runner makes.
    record.run(
        ActionKind.DELETE_METHOD,
        lambda: graph_methods.delete_method(
            client, fido2_user, AuthenticationMethod.from_graph(fido2)
        ),
    )
    record.run(
        ActionKind.DELETE_METHOD,
        lambda: graph_methods.delete_method(
            client, whfb_user, AuthenticationMethod.from_graph(whfb)
        ),
    )
    record.run(
        ActionKind.REREGISTER,
        lambda: _delete_every_method(client, SAM.oid, tenant.default_method.get(SAM.oid)),
    )
    record.run(
        ActionKind.REREGISTER, lambda: graph_sessions.revoke_sign_in_sessions(client, SAM.oid)
    )
    record.run(
        ActionKind.REVOKE_SESSIONS, lambda: graph_sessions.revoke_sign_in_sessions(client, SAM.oid)
    )
    record.run(
        ActionKind.ISSUE_TAP,
        lambda: graph_methods.create_temporary_access_pass(
            client, SAM.oid, lifetime_in_minutes=60, is_usable_once=True
        ),
    )
    for state in ("enforced", "disabled"):
        record.run(
            ActionKind.SET_MFA_STATE,
            graph_requirements.set_per_user_mfa_state,
            client,
            SAM.oid,
            state,
        )

    # roles: a role given and taken away, directly and through PIM, permanent and time-bound.
    role = graph_roles.ROLE_TEMPLATES["Authentication Administrator"]
    now = datetime.now(UTC)
    for end in (None, now + timedelta(days=7)):
        record.run(
            "add",
            graph_roles.create_role_eligibility_schedule_request,
            client,
            action="adminAssign",
            role_definition_id=role,
            principal_id=SAM.oid,
            justification="INC0012345",
            start=now,
            end=end,
        )
        record.run(
            "remove",
            lambda: graph_roles.create_role_eligibility_schedule_request(
                client,
                action="adminRemove",
                role_definition_id=role,
                principal_id=SAM.oid,
                justification="INC0012345",
                start=now,
            ),
        )
        record.run(
            "add",
            graph_roles.create_role_assignment_schedule_request,
            client,
            action="adminAssign",
            role_definition_id=role,
            principal_id=SAM.oid,
            justification="INC0012345",
            start=now,
            end=end,
        )
        record.run(
            "remove",
            lambda: graph_roles.create_role_assignment_schedule_request(
                client,
                action="adminRemove",
                role_definition_id=role,
                principal_id=SAM.oid,
                justification="INC0012345",
            ),
        )
    assignment: list[str] = []
    record.run(
        "add",
        lambda: assignment.append(
            graph_roles.create_role_assignment(
                client, role_definition_id=role, principal_id=SAM.oid
            ).id
        ),
    )
    record.run("remove", lambda: graph_roles.delete_role_assignment(client, assignment[0]))

    expected = {
        **{str(kind): names for kind, names in EXPECTED_ACTIVITIES.items()},
        "add": frozenset(ADD_ACTIVITIES),
        "remove": frozenset(REMOVE_ACTIVITIES),
    }
    rule = KeepRule.from_settings()
    written: set[str] = set()
    for action, events in record.by_action.items():
        for event in events:
            name, category = event["activityDisplayName"], event["category"]
            written.add(name)
            assert (category, name) in REFERENCE, f"{action}: {category}/{name} is not Microsoft's"
            assert name in activities.RELIED_ON, f"{action}: the portal does not name {name}"
            assert rule.keeps(DirectoryAudit.from_graph(event)), f"{action}: {name} is dropped"
            # Correlation can link it to the portal change that made it.
            assert name in expected[action] or (
                action == ActionKind.SET_MFA_STATE and name == activities.USER_UPDATED
            ), f"{action} does not expect {name}"
    # The names of the defect and of the issue's point 8 were all exercised.
    assert {
        activities.PIM_ELIGIBLE_REMOVED_PERMANENT,
        activities.PIM_ELIGIBLE_ADDED_TIMEBOUND,
        activities.PER_USER_MFA_STATE_UPDATED,
        activities.SESSIONS_REVOKED,
        activities.ADMIN_REGISTERED_SECURITY_INFO,
        activities.ADMIN_DELETED_SECURITY_INFO,
    } <= written
    assert written & set(activities.FIDO2_DELETIONS)
    assert written & set(activities.WINDOWS_HELLO_DELETIONS)
