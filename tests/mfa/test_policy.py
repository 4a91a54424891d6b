"""mfa.policy: tiering from the emulator's directory roles and groups, who may do what."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings

from entra_emulator.seed import GROUP_IDS, GUEST_ID, PROTECTED_GROUP, ROLE_ASSIGNABLE_GROUP
from graph.results import TemporaryAccessPassPolicy, User
from mfa import policy
from mfa.models import ActionKind, CallerVerification, Tier
from mfa.policy import InvalidRequest, NotAllowed, RoleHolding
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, portal_user

ALL_KINDS = list(ActionKind.values)


def _profile(oid: str) -> policy.TargetProfile:
    return policy.target_profile(get_graph_client(), oid, use_cache=False)


def test_standard_and_privileged_personas(emulator: Any) -> None:
    sam = _profile(PERSONAS.standard_target.oid)
    assert sam.tier == Tier.STANDARD and sam.roles == () and sam.protected_groups == ()
    assert sam.manager is not None and not policy.needs_approval(sam)

    priya = _profile(PERSONAS.privileged_target.oid)
    assert priya.tier == Tier.PRIVILEGED and policy.needs_approval(priya)
    assert (
        RoleHolding(
            "Authentication Administrator", "c4e39bd9-1100-46d3-8c65-fb160da0071f", "active"
        )
        in priya.roles
    )


def test_roles_through_a_role_assignable_group_make_a_target_privileged(emulator: Any) -> None:
    members = sorted(emulator.tenant.group_members[GROUP_IDS[ROLE_ASSIGNABLE_GROUP]])
    assert members
    profile = _profile(members[0])
    assert profile.tier == Tier.PRIVILEGED
    assert any(r.how == "group" and r.via_group == ROLE_ASSIGNABLE_GROUP for r in profile.roles)


def test_eligible_roles_count(emulator: Any) -> None:
    schedules = [
        s
        for s in emulator.tenant.eligibility_schedules.values()
        if s["principalId"] in emulator.tenant.users
    ]
    assert schedules
    profile = _profile(schedules[0]["principalId"])
    eligible = [r for r in profile.roles if r.how == "eligible"]
    assert eligible and eligible[0].ends is not None
    assert profile.tier == Tier.PRIVILEGED


def test_protected_group_members_are_privileged_without_a_role(emulator: Any) -> None:
    executives = sorted(emulator.tenant.group_members[GROUP_IDS[PROTECTED_GROUP]])
    # The demo protects the group (PORTAL_PROTECTED_GROUP_IDS): find a member standard without it.
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[]):
        member = next(oid for oid in executives if _profile(oid).tier == Tier.STANDARD)
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[GROUP_IDS[PROTECTED_GROUP].upper()]):
        profile = _profile(member)
    assert profile.protected_groups == (PROTECTED_GROUP,)
    assert profile.tier == Tier.PRIVILEGED


def test_profile_is_cached_under_the_object_id(emulator: Any) -> None:
    oid = PERSONAS.standard_target.oid
    first = policy.target_profile(get_graph_client(), PERSONAS.standard_target.upn)
    assert cache.get(f"mfa:target:v2:{oid}") == first
    assert policy.target_profile(get_graph_client(), oid) == first
    policy.target_profile_forget(oid)
    assert cache.get(f"mfa:target:v2:{oid}") is None


def test_target_tier() -> None:
    holding = RoleHolding("Global Administrator", "62e90394-69f5-4237-9190-012177145e10", "active")
    assert policy.target_tier((), ()) == Tier.STANDARD
    assert policy.target_tier((holding,), ()) == Tier.PRIVILEGED
    assert policy.target_tier((), ("Executives",)) == Tier.PRIVILEGED


@pytest.mark.django_db
def test_allowed_actions_by_persona(emulator: Any) -> None:
    sam = _profile(PERSONAS.standard_target.oid)
    priya = _profile(PERSONAS.privileged_target.oid)
    for persona in (PERSONAS.agent, PERSONAS.lead, PERSONAS.admin):
        user = portal_user(persona)
        assert policy.allowed_actions(user, sam) == ALL_KINDS
        # Entra's tiering, mirrored: without PAA in the tenant, every action on a privileged
        # person is offered as an escalation to a PAA holder (mfa.escalations).
        assert policy.allowed_actions(user, priya) == ALL_KINDS
        with override_settings(PORTAL_MIRROR_ENTRA_TIERING=False):
            assert policy.allowed_actions(user, priya) == ALL_KINDS
    # Aaron holds PAA: privileged people are offered (the request then waits for approval).
    assert policy.allowed_actions(portal_user(PERSONAS.privileged_agent), priya) == ALL_KINDS
    assert policy.allowed_actions(portal_user(PERSONAS.outsider), sam) == []


@pytest.mark.django_db
def test_nobody_acts_on_themselves_or_on_a_guest(emulator: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    with pytest.raises(NotAllowed, match="your own account"):
        policy.check_may_request(agent, _profile(PERSONAS.agent.oid), ActionKind.REVOKE_SESSIONS)
    assert policy.allowed_actions(agent, _profile(GUEST_ID)) == []
    with pytest.raises(InvalidRequest):
        policy.check_may_request(agent, _profile(PERSONAS.standard_target.oid), "format_disk")


def test_tap_bounds_follow_graph_and_the_tenant_policy() -> None:
    tenant = TemporaryAccessPassPolicy("enabled", 8, 60, 30, 480, False)
    assert policy.tap_lifetime_bounds(tenant) == (30, 480)
    policy.check_tap_params(tenant, lifetime_minutes=30, usable_once=False)
    with pytest.raises(InvalidRequest, match="30 to 480"):
        policy.check_tap_params(tenant, lifetime_minutes=20, usable_once=True)
    once_only = TemporaryAccessPassPolicy("enabled", 8, 60, None, None, True)
    assert policy.tap_lifetime_bounds(once_only) == (10, 43200)
    with pytest.raises(InvalidRequest, match="one-time"):
        policy.check_tap_params(once_only, lifetime_minutes=60, usable_once=False)
    off = TemporaryAccessPassPolicy("disabled", 8, 60, 10, 480, False)
    with pytest.raises(InvalidRequest, match="turned off"):
        policy.check_tap_params(off, lifetime_minutes=60, usable_once=True)


@override_settings(PORTAL_TICKET_PATTERN=r"CHG\d{4}", PORTAL_TICKET_HINT="CHG1234")
def test_ticket_pattern_is_configurable() -> None:
    assert policy.clean_ticket(" chg1234 ") == "CHG1234"
    with pytest.raises(InvalidRequest, match="CHG1234"):
        policy.clean_ticket("INC0012345")
    with pytest.raises(InvalidRequest):
        policy.clean_ticket("CHG1234; DROP")


# --- issue 10: the helpdesk's own staff, who approves whom, manual checks ------------------------


@pytest.mark.parametrize(
    "persona",
    [PERSONAS.agent, PERSONAS.lead, PERSONAS.other_lead, PERSONAS.admin],
    ids=lambda p: p.key,
)
def test_portal_staff_are_privileged_targets(emulator: Any, persona: Any) -> None:
    profile = _profile(persona.oid)
    assert profile.tier == Tier.PRIVILEGED
    assert profile.portal_roles == (persona.portal_role,)
    assert f"holds the portal role {persona.portal_role}" in profile.reasons
    assert policy.needs_approval(profile)
    # What the request keeps of it, for the approver's rule.
    columns = policy.target_columns(profile)
    assert columns["target_tier"] == Tier.PRIVILEGED
    assert {
        "role_name": f"Portal role: {persona.portal_role}",
        "how": "app role",
        "portal_role": persona.portal_role,
    } in columns["target_roles"]


def test_a_portal_role_given_to_a_group_reaches_its_direct_members(fresh_tenant: Any) -> None:
    sam = PERSONAS.standard_target.oid
    assert _profile(sam).tier == Tier.STANDARD and _profile(sam).portal_roles == ()
    with fresh_tenant.tenant.lock:
        groups = fresh_tenant.tenant.group_members
        group_id = next(g for g, members in sorted(groups.items()) if sam in members)
        fresh_tenant.tenant.app_role_assignments[group_id] = {"Helpdesk.Agent"}
    profile = _profile(sam)
    assert profile.portal_roles == ("Agent",) and profile.tier == Tier.PRIVILEGED


def test_portal_roles_that_cannot_be_read_make_the_person_privileged(fresh_tenant: Any) -> None:
    sam = PERSONAS.standard_target.oid
    fresh_tenant.faults.add_fail_next(
        "GET", "appRoleAssignedTo", 403, "Authorization_RequestDenied", "denied", count=1
    )
    profile = policy.target_profile(get_graph_client(), sam, use_cache=False)
    assert profile.tier == Tier.PRIVILEGED and profile.portal_roles == ()
    assert "Authorization_RequestDenied" in profile.portal_roles_unknown
    assert policy.profile_portal_roles(profile) == {"Admin"}  # the strictest approval
    assert cache.get(f"mfa:target:v2:{sam}") is None, "a fail-closed profile is not cached"


@pytest.mark.parametrize(
    ("approver", "requester", "target", "allowed"),
    [
        # Agent's request on a privileged person (or an Agent): any Lead or Admin.
        ({"Lead"}, {"Agent"}, set(), True),
        ({"Admin"}, {"Agent"}, set(), True),
        ({"Lead"}, {"Agent"}, {"Agent"}, True),
        # An action on a Lead or an Admin needs an Admin.
        ({"Lead"}, {"Agent"}, {"Lead"}, False),
        ({"Lead"}, {"Agent"}, {"Admin"}, False),
        ({"Admin"}, {"Agent"}, {"Lead"}, True),
        ({"Admin"}, {"Agent"}, {"Admin"}, True),
        # A peer never approves for a peer: a Lead's request needs an Admin; an Admin's another.
        ({"Lead"}, {"Lead"}, set(), False),
        ({"Lead"}, {"Agent", "Lead"}, set(), False),
        ({"Lead"}, {"Admin"}, set(), False),
        ({"Admin"}, {"Lead"}, {"Lead"}, True),
        ({"Admin"}, {"Admin"}, {"Admin"}, True),
        # No approver role, no approval.
        ({"Agent"}, {"Agent"}, set(), False),
        (set(), {"Agent"}, set(), False),
    ],
)
def test_who_may_approve_whom(
    approver: set[str], requester: set[str], target: set[str], allowed: bool
) -> None:
    refusal = policy.approver_refusal(
        approver_roles=approver, requester_roles=requester, target_roles=target
    )
    assert (refusal is None) is allowed, refusal


def _verification(method: str) -> CallerVerification:
    return CallerVerification(method=method)


def test_a_manual_check_alone_does_not_unlock_a_pass_or_turning_mfa_off() -> None:
    sam = policy.TargetProfile(
        user=User(
            id=PERSONAS.standard_target.oid,
            display_name="Sam Standard",
            user_principal_name=PERSONAS.standard_target.upn,
        ),
        manager=None,
        roles=(),
        protected_groups=(),
        tier=Tier.STANDARD,
    )
    manual, code = _verification("manual"), _verification("email_code")
    tap = {"lifetime_minutes": 480, "usable_once": False}
    assert policy.needs_approval(sam, ActionKind.ISSUE_TAP, tap, manual)
    assert not policy.needs_approval(sam, ActionKind.ISSUE_TAP, tap, code)
    assert policy.needs_approval(sam, ActionKind.SET_MFA_STATE, {"state": "disabled"}, manual)
    assert not policy.needs_approval(sam, ActionKind.SET_MFA_STATE, {"state": "enforced"}, manual)
    assert not policy.needs_approval(sam, ActionKind.REREGISTER, {}, manual)
    assert not policy.needs_approval(sam)  # the person alone: standard
    [why] = policy.approval_reasons(sam, ActionKind.ISSUE_TAP, tap, manual)
    assert "manual caller check" in why
    with override_settings(PORTAL_MANUAL_CHECK_NEEDS_APPROVAL=["reregister"]):
        assert not policy.needs_approval(sam, ActionKind.ISSUE_TAP, tap, manual)
        assert policy.needs_approval(sam, ActionKind.REREGISTER, {}, manual)
    with override_settings(PORTAL_MANUAL_CHECK_NEEDS_APPROVAL=["set_mfa_state"]):
        assert policy.needs_approval(sam, ActionKind.SET_MFA_STATE, {"state": "enabled"}, manual)
