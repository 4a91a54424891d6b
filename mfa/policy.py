"""Who may do what to whom: target tiering, allowed actions, approvals, rate limits, TAP bounds.

The rules (DESIGN.md, "Policy"):

* A target is **privileged** when it holds any directory role (active or PIM-eligible, directly or
  through a role-assignable group) or belongs to a group in ``PORTAL_PROTECTED_GROUP_IDS``.
* Any portal role (Agent, Lead, Admin) may request actions; an action on a privileged target waits
  for the approval of a Lead or Admin who is not the requester.
* Nobody acts on their own account through the portal, and guests are out of scope (their methods
  and sessions live in their home tenant).
* Each agent may submit ``PORTAL_AGENT_RATE_LIMIT`` requests per
  ``PORTAL_AGENT_RATE_WINDOW_MINUTES``; more needs a Lead's or Admin's override.
* A Temporary Access Pass must fit the tenant's TAP policy, read from Graph.

Every refusal is a :class:`PolicyError` whose message is written for the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

# The role sets are declared once, in accounts.roles; kept importable from here because
# mfa/services.py reads ``policy.APPROVER_ROLES``.
from accounts.roles import APPROVER_ROLES as APPROVER_ROLES
from accounts.roles import REQUESTER_ROLES as REQUESTER_ROLES
from accounts.roles import has_role, portal_roles_of
from graph import GraphClient
from graph import methods as graph_methods
from graph import roles as graph_roles
from graph import users as graph_users
from graph.results import Group, TemporaryAccessPassPolicy, User
from mfa.models import ActionKind, ActionRequest, Tier
from outbox.errors import InvalidRequest as InvalidRequest
from outbox.errors import NotAllowed as NotAllowed
from outbox.errors import PolicyError as PolicyError

# Kept importable from here for the views, forms and tests that read them.
from outbox.inputs import REASON_MAX_LENGTH as REASON_MAX_LENGTH
from outbox.inputs import REASON_MIN_LENGTH as REASON_MIN_LENGTH
from outbox.inputs import clean_reason as clean_reason
from outbox.inputs import clean_ticket as clean_ticket
from roles.tiering import tiering_refusal

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1
_ROLE_NAME_CACHE_SECONDS = 24 * 3600
_TAP_POLICY_CACHE_SECONDS = 60
# Requests that touch the same thing of one person: at most one open request per family.
KIND_FAMILIES: dict[str, str] = {
    ActionKind.REREGISTER: "methods",
    ActionKind.DELETE_METHOD: "methods",
    ActionKind.ISSUE_TAP: "methods",
    ActionKind.REVOKE_SESSIONS: "sessions",
    ActionKind.SET_MFA_STATE: "mfa_state",
}


# --- errors ----------------------------------------------------------------------------------
# PolicyError, InvalidRequest and NotAllowed are the engine's (outbox.errors): every flow raises
# them. They stay importable from here.


class VerificationRequired(PolicyError):
    """The action needs a fresh caller verification by this agent for this target."""


class RateLimited(PolicyError):
    """The agent has used up their request budget; ``count`` of ``limit`` in ``window_minutes``."""

    def __init__(self, message: str, *, count: int, limit: int, window_minutes: int) -> None:
        self.count = count
        self.limit = limit
        self.window_minutes = window_minutes
        super().__init__(message)


class TargetBusy(PolicyError):
    """Another open request already covers this target and kind family; ``existing`` is it."""

    def __init__(self, message: str, *, existing: ActionRequest | None = None) -> None:
        self.existing = existing
        super().__init__(message)


# --- the target --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleHolding:
    """One directory role the target holds: ``active`` or PIM-``eligible`` directly, or either
    through the role-assignable group ``via_group`` (``how`` is then ``group``); ``ends`` is when
    an eligibility expires (None: no end known)."""

    role_name: str
    template_id: str
    how: Literal["active", "eligible", "group"]
    via_group: str = ""
    ends: datetime | None = None


@dataclass(frozen=True)
class TargetProfile:
    """What the policy decides with about one person. Methods and MFA state are read separately
    by the person page (they change with every action and draw on the small reports budget)."""

    user: User
    manager: User | None
    roles: tuple[RoleHolding, ...]
    protected_groups: tuple[str, ...]
    tier: Tier

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def privileged(self) -> bool:
        return self.tier == Tier.PRIVILEGED


def target_tier(roles: Sequence[RoleHolding], protected_groups: Sequence[str]) -> Tier:
    """``privileged`` if the person holds any directory role or is in a protected group."""
    return Tier.PRIVILEGED if (roles or protected_groups) else Tier.STANDARD


def _cache_key(target_id: str) -> str:
    return f"mfa:target:v{_CACHE_VERSION}:{target_id}"


def target_profile_forget(target_id: str) -> None:
    """Drop the cached profile (after a change to the person's roles or groups)."""
    cache.delete(_cache_key(target_id))


def target_profile(client: GraphClient, target_id: str, *, use_cache: bool = True) -> TargetProfile:
    """The person ``target_id`` (object id or UPN) with manager, directory roles and tier.

    Cached in the Django cache (Redis, shared by every process) for
    ``PORTAL_TARGET_CACHE_SECONDS`` under the object id; ``use_cache=False`` reads Graph afresh
    (and refreshes the cache), as the action form does before it decides the tier of a request.
    Raises GraphNotFound for an unknown person and any other GraphError as it comes.
    """
    if use_cache:
        cached = cache.get(_cache_key(target_id))
        if isinstance(cached, TargetProfile):
            return cached
    user = graph_users.get_user(client, target_id)
    manager = graph_users.get_manager(client, user.id)
    memberships = graph_users.list_transitive_member_of(client, user.id)
    groups = [m for m in memberships if isinstance(m, Group)]

    holdings: list[RoleHolding] = []
    for assignment in graph_roles.list_role_assignments(client, principal_id=user.id):
        holdings.append(
            RoleHolding(
                role_name=_role_name(client, assignment.role_definition_id),
                template_id=assignment.role_definition_id,
                how="active",
            )
        )
    for schedule in graph_roles.list_role_eligibility_schedules(client, principal_id=user.id):
        holdings.append(
            RoleHolding(
                role_name=_role_name(client, schedule.role_definition_id),
                template_id=schedule.role_definition_id,
                how="eligible",
                ends=schedule.end,
            )
        )
    # Roles held by a role-assignable group pass to its (transitive) members, active or eligible.
    for group in groups:
        if not group.is_assignable_to_role:
            continue
        name = group.display_name or group.id
        for assignment in graph_roles.list_role_assignments(client, principal_id=group.id):
            holdings.append(
                RoleHolding(
                    role_name=_role_name(client, assignment.role_definition_id),
                    template_id=assignment.role_definition_id,
                    how="group",
                    via_group=name,
                )
            )
        for schedule in graph_roles.list_role_eligibility_schedules(client, principal_id=group.id):
            holdings.append(
                RoleHolding(
                    role_name=_role_name(client, schedule.role_definition_id),
                    template_id=schedule.role_definition_id,
                    how="group",
                    via_group=f"{name} (eligible)",
                    ends=schedule.end,
                )
            )
    # Activated roles also show up in transitiveMemberOf as directoryRole objects: a role seen
    # only there (e.g. a PIM activation) still makes the person privileged.
    known = {h.template_id for h in holdings}
    for membership in memberships:
        template = membership.role_template_id
        if membership.is_directory_role and template and template not in known:
            known.add(template)
            holdings.append(
                RoleHolding(
                    role_name=membership.display_name or _role_name(client, template),
                    template_id=template,
                    how="active",
                )
            )

    protected_ids = {str(g).strip().lower() for g in settings.PORTAL_PROTECTED_GROUP_IDS if g}
    protected = tuple(
        sorted({g.display_name or g.id for g in groups if g.id.lower() in protected_ids})
    )
    roles = tuple(_dedupe(holdings))
    profile = TargetProfile(
        user=user,
        manager=manager,
        roles=roles,
        protected_groups=protected,
        tier=target_tier(roles, protected),
    )
    cache.set(_cache_key(user.id), profile, timeout=settings.PORTAL_TARGET_CACHE_SECONDS)
    return profile


def _dedupe(holdings: Iterable[RoleHolding]) -> list[RoleHolding]:
    seen: set[tuple[str, str, str]] = set()
    unique: list[RoleHolding] = []
    for holding in holdings:
        key = (holding.template_id, holding.how, holding.via_group)
        if key not in seen:
            seen.add(key)
            unique.append(holding)
    return sorted(unique, key=lambda h: (h.role_name.lower(), h.how, h.via_group))


def _role_name(client: GraphClient, role_definition_id: str) -> str:
    """The display name of a role definition; built-in ids are known without a Graph call."""
    for name, template in graph_roles.ROLE_TEMPLATES.items():
        if template == role_definition_id:
            return name
    key = f"mfa:role-name:{role_definition_id}"
    cached = cache.get(key)
    if isinstance(cached, str):
        return cached
    definition = graph_roles.get_role_definition_by_template(client, role_definition_id)
    name = definition.display_name if definition else f"Directory role {role_definition_id}"
    cache.set(key, name, timeout=_ROLE_NAME_CACHE_SECONDS)
    return name


# --- who may do what ---------------------------------------------------------------------------


def _oid_of(user: Any) -> str:
    profile = getattr(user, "portal_profile", None)
    return str(getattr(profile, "oid", "") or getattr(user, "username", ""))


def check_may_request(agent: Any, profile: TargetProfile, kind: str) -> None:
    """Raises NotAllowed (or InvalidRequest for an unknown kind) unless ``agent`` may request
    ``kind`` on ``profile``'s person (it may still need an approval: see needs_approval)."""
    if kind not in ActionKind.values:
        raise InvalidRequest(f"Unknown action {kind!r}.")
    if not has_role(agent, *REQUESTER_ROLES):
        raise NotAllowed("Your account holds no helpdesk role in the portal.")
    if _oid_of(agent).lower() == profile.user.id.lower():
        raise NotAllowed("You cannot act on your own account. Ask a colleague.")
    if profile.user.is_guest:
        raise NotAllowed(
            "This is a guest account: its sign-in methods and sessions belong to its home "
            "organisation, which must handle the request."
        )
    # Role administration (issue 5): the portal's tiering follows Entra's. Only people who hold
    # Privileged Authentication Administrator in the tenant act on privileged people.
    refusal = tiering_refusal(agent, privileged=profile.privileged)
    if refusal:
        raise NotAllowed(refusal)


def allowed_actions(agent: Any, profile: TargetProfile) -> list[str]:
    """The ActionKind values ``agent`` may request on this person, in display order. Actions on
    a privileged person are included: they wait for an approval (see needs_approval)."""
    allowed: list[str] = []
    for kind in ActionKind.values:
        try:
            check_may_request(agent, profile, kind)
        except PolicyError:
            continue
        allowed.append(kind)
    return allowed


def needs_approval(profile: TargetProfile) -> bool:
    """Whether requests on this person wait for a Lead's or Admin's approval."""
    return profile.tier == Tier.PRIVILEGED


def check_may_decide(approver: Any, action_request: ActionRequest) -> None:
    """Raises NotAllowed unless ``approver`` may approve or reject ``action_request``: a Lead or
    Admin who is neither the requester nor the person acted on."""
    if not has_role(approver, *APPROVER_ROLES):
        raise NotAllowed("Only a Lead or an Admin can approve or reject requests.")
    if approver.pk == action_request.requester_id:
        raise NotAllowed("You cannot approve or reject your own request: ask another lead.")
    if _oid_of(approver).lower() == action_request.target_id.lower():
        raise NotAllowed("You cannot decide a request about your own account.")


def kind_family(kind: str) -> str:
    """The family of ``kind``: requests of one family on one person are never open together."""
    return KIND_FAMILIES[kind]


# --- rate limit --------------------------------------------------------------------------------


def agent_rate_usage(agent: Any, *, now: datetime | None = None) -> tuple[int, int]:
    """(requests ``agent`` made in the current window, the limit). Counted from ActionRequest
    rows, so every process agrees and a restart forgets nothing."""
    now = now or timezone.now()
    window = timedelta(minutes=settings.PORTAL_AGENT_RATE_WINDOW_MINUTES)
    count = ActionRequest.objects.filter(requester=agent, created_at__gte=now - window).count()
    return count, int(settings.PORTAL_AGENT_RATE_LIMIT)


def check_rate(agent: Any, *, override_by: Any = None) -> bool:
    """Raises RateLimited when ``agent`` is at the limit and no valid override is given; returns
    True when the request goes through only thanks to ``override_by`` (to be recorded).

    Raises NotAllowed when ``override_by`` is not a Lead or Admin, or is the agent themself.
    """
    count, limit = agent_rate_usage(agent)
    if count < limit:
        return False
    window = int(settings.PORTAL_AGENT_RATE_WINDOW_MINUTES)
    if override_by is None:
        raise RateLimited(
            f"You have made {count} requests in the last {window} minutes (the limit is {limit}). "
            "A lead must override the limit for this request.",
            count=count,
            limit=limit,
            window_minutes=window,
        )
    if not has_role(override_by, *APPROVER_ROLES):
        raise NotAllowed("Only a Lead or an Admin can override the rate limit.")
    if override_by.pk == agent.pk:
        raise NotAllowed("You cannot override your own rate limit.")
    return True


# --- input ---------------------------------------------------------------------------------------


def tap_policy(client: GraphClient, *, use_cache: bool = True) -> TemporaryAccessPassPolicy:
    """The tenant's TAP policy, from Graph (cached for a minute: it changes rarely and every read
    costs a token of the small reports budget)."""
    key = "mfa:tap-policy"
    if use_cache:
        cached = cache.get(key)
        if isinstance(cached, TemporaryAccessPassPolicy):
            return cached
    policy = graph_methods.get_tap_policy(client)
    cache.set(key, policy, timeout=_TAP_POLICY_CACHE_SECONDS)
    return policy


def tap_lifetime_bounds(policy: TemporaryAccessPassPolicy) -> tuple[int, int]:
    """(shortest, longest) lifetime in minutes that Graph and the tenant policy both allow."""
    low = max(graph_methods.TAP_MIN_LIFETIME, policy.minimum_lifetime_in_minutes or 0)
    high = min(
        graph_methods.TAP_MAX_LIFETIME,
        policy.maximum_lifetime_in_minutes or graph_methods.TAP_MAX_LIFETIME,
    )
    return low, high


def check_tap_params(
    policy: TemporaryAccessPassPolicy, *, lifetime_minutes: int, usable_once: bool
) -> None:
    """Raises InvalidRequest when a pass with these settings falls outside the tenant policy."""
    if not policy.enabled:
        raise InvalidRequest(
            "Temporary Access Pass is turned off in this tenant's authentication methods policy."
        )
    low, high = tap_lifetime_bounds(policy)
    if not low <= lifetime_minutes <= high:
        raise InvalidRequest(
            f"The tenant's policy allows a pass lifetime of {low} to {high} minutes, "
            f"not {lifetime_minutes}."
        )
    if policy.is_usable_once and not usable_once:
        raise InvalidRequest("The tenant's policy allows one-time passes only.")


def portal_roles_text(user: Any) -> str:
    """The person's portal roles, for event details (``Agent, Lead``)."""
    return ", ".join(sorted(portal_roles_of(user)))
