"""Who may do what to whom: target tiering, allowed actions, approvals, rate limits, TAP bounds.

The rules (DESIGN.md, "Policy"):

* A target is **privileged** when it holds any directory role (active or PIM-eligible, directly or
  through a role-assignable group), belongs to a group in ``PORTAL_PROTECTED_GROUP_IDS``, or holds
  any of the portal's own app roles (Agent, Lead, Admin, directly or through a group, read from
  the portal app's role assignments in Entra): the helpdesk's own staff are the easiest way
  around four-eyes. A tenant without PIM (no Entra ID P2, ``accounts.capabilities``) has no
  eligibilities: there the tier comes from active and group-held roles alone.
* Any portal role (Agent, Lead, Admin) may request actions; an action on a privileged target, or
  one of ``PORTAL_MANUAL_CHECK_NEEDS_APPROVAL`` backed only by a manual caller check, waits for an
  approval (who may give it: :func:`check_may_decide`).
* Nobody acts on their own account through the portal, and guests are out of scope (their methods
  and sessions live in their home tenant).
* Under ``PORTAL_MIRROR_ENTRA_TIERING`` only holders of PAA carry out actions on privileged
  people; anyone else escalates to them (``mfa.escalations``): refused only when nobody could
  take it.
* Each agent may submit ``PORTAL_AGENT_RATE_LIMIT`` requests per
  ``PORTAL_AGENT_RATE_WINDOW_MINUTES``; each one more takes one of the
  ``PORTAL_RATE_OVERRIDE_REQUESTS`` extra requests of a Lead's or Admin's override (for a Lead or
  an Admin: another Admin's). The same action on the same person by the same agent within
  ``PORTAL_REPEAT_WINDOW_MINUTES`` of a success needs the agent's confirmation with a reason.
* A Temporary Access Pass must fit the tenant's TAP policy, read from Graph.

Every refusal is a :class:`PolicyError` whose message is written for the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
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
from accounts.roles import Role, has_role, portal_roles_of
from graph import GraphClient
from graph import roles as graph_roles
from graph.errors import GraphError, GraphThrottled, GraphTransient
from graph.results import Group, User
from mfa.models import (
    ActionKind,
    ActionRequest,
    CallerVerification,
    RateOverride,
    Status,
    Tier,
    VerificationMethod,
)
from mfa.overrides import rate_override_take
from mfa.tap_rules import check_tap_params as check_tap_params
from mfa.tap_rules import tap_lifetime_bounds as tap_lifetime_bounds
from mfa.tap_rules import tap_policy as tap_policy
from mfa.target_reads import identity_reads, principal_roles
from outbox.errors import InvalidRequest as InvalidRequest
from outbox.errors import NotAllowed as NotAllowed
from outbox.errors import PolicyError as PolicyError

# Kept importable from here for the views, forms and tests that read them.
from outbox.inputs import REASON_MAX_LENGTH as REASON_MAX_LENGTH
from outbox.inputs import REASON_MIN_LENGTH as REASON_MIN_LENGTH
from outbox.inputs import clean_reason as clean_reason
from outbox.inputs import clean_ticket as clean_ticket
from roles.holders import read_portal_roles, read_portal_roles_shared
from roles.tiering import approval_refusal, tiering_refusal

logger = logging.getLogger(__name__)

# 2: profiles carry the person's portal roles.
_CACHE_VERSION = 2
_ROLE_NAME_CACHE_SECONDS = 24 * 3600
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
    # The portal roles (Agent, Lead, Admin) the person holds, from the portal app's role
    # assignments in Entra; ``portal_roles_unknown`` says why they could not be read (the person
    # then counts as privileged: the tier fails closed).
    portal_roles: tuple[str, ...] = ()
    portal_roles_unknown: str = ""

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def privileged(self) -> bool:
        return self.tier == Tier.PRIVILEGED

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the person is privileged, one short phrase each (empty for a standard person)."""
        found = [f"holds {r.role_name}" for r in self.roles]
        found += [f"is in the protected group {g}" for g in self.protected_groups]
        found += [f"holds the portal role {r}" for r in self.portal_roles]
        if self.portal_roles_unknown:
            found.append(f"may hold a portal role ({self.portal_roles_unknown})")
        return tuple(dict.fromkeys(found))


def target_tier(
    roles: Sequence[RoleHolding],
    protected_groups: Sequence[str],
    portal_roles: Sequence[str] = (),
    *,
    portal_roles_unknown: bool = False,
) -> Tier:
    """``privileged`` if the person holds any directory role, is in a protected group, holds a
    portal role, or might hold one (the portal's app role assignments could not be read)."""
    privileged = roles or protected_groups or portal_roles or portal_roles_unknown
    return Tier.PRIVILEGED if privileged else Tier.STANDARD


def portal_roles_held(
    client: GraphClient,
    user_id: str,
    *,
    portal_roles: Mapping[str, tuple[str, ...]] | None = None,
    shared: bool = False,
) -> tuple[tuple[str, ...], str]:
    """(the portal roles ``user_id`` holds now, "") read from the portal app's role assignments
    in Entra (``roles.holders.read_portal_roles``: directly or through a group's direct
    membership); or ((), why) when Graph refused the read (e.g. no Application.Read.All), which
    callers treat as "may hold one". Throttled and transient errors are raised as they come, so
    a worker waits and reads again instead of deciding on nothing. ``portal_roles``: a read of
    ``read_portal_roles`` the caller already made (the worker's check shares one); ``shared``:
    the map every process shares for PORTAL_TARGET_CACHE_SECONDS (a cached profile's read)."""
    if portal_roles is not None:
        return tuple(portal_roles.get(user_id.lower(), ())), ""
    try:
        held = read_portal_roles_shared(client) if shared else read_portal_roles(client)
    except (GraphThrottled, GraphTransient):
        raise
    except GraphError as exc:
        logger.warning("could not read the portal's app role assignments: %s", exc.code)
        return (), f"the portal's app role assignments could not be read: {exc.code}"
    return tuple(held.get(user_id.lower(), ())), ""


def _cache_key(target_id: str) -> str:
    return f"mfa:target:v{_CACHE_VERSION}:{target_id}"


def target_profile_forget(target_id: str) -> None:
    """Drop the cached profile (after a change to the person's roles or groups)."""
    cache.delete(_cache_key(target_id))


def target_profile(
    client: GraphClient,
    target_id: str,
    *,
    use_cache: bool = True,
    portal_roles: Mapping[str, tuple[str, ...]] | None = None,
) -> TargetProfile:
    """The person ``target_id`` (object id or UPN) with manager, directory roles, portal roles
    (:func:`portal_roles_held`) and tier.

    Cached in the Django cache (Redis, shared by every process) for
    ``PORTAL_TARGET_CACHE_SECONDS`` under the object id; ``use_cache=False`` reads Graph afresh
    (and refreshes the cache), as the action form does before it decides the tier of a request.
    ``portal_roles``: a read of ``roles.holders.read_portal_roles`` the caller already made, used
    instead of reading the portal's app role assignments again.
    The independent reads (person, manager, memberships, the person's own roles) go as one
    ``$batch``, the roles of role-assignable groups as a second one (``mfa.target_reads``).
    Raises GraphNotFound for an unknown person and any other GraphError as it comes.
    """
    if use_cache:
        cached = cache.get(_cache_key(target_id))
        if isinstance(cached, TargetProfile):
            return cached
    user, manager, memberships, direct = identity_reads(client, target_id)
    groups = [m for m in memberships if isinstance(m, Group)]

    holdings: list[RoleHolding] = []
    assignments, schedules = direct
    for assignment in assignments:
        holdings.append(
            RoleHolding(
                role_name=_role_name(client, assignment.role_definition_id),
                template_id=assignment.role_definition_id,
                how="active",
            )
        )
    for schedule in schedules:
        holdings.append(
            RoleHolding(
                role_name=_role_name(client, schedule.role_definition_id),
                template_id=schedule.role_definition_id,
                how="eligible",
                ends=schedule.end,
            )
        )
    # Roles held by a role-assignable group pass to its (transitive) members, active or eligible.
    # Fail closed: a group whose isAssignableToRole Graph did not give (None: limited
    # information, an older read) is read as if it were role-assignable.
    held_by_groups = [g for g in groups if g.is_assignable_to_role is not False]
    for group, (assignments, schedules) in zip(
        held_by_groups, principal_roles(client, [g.id for g in held_by_groups]), strict=True
    ):
        name = group.display_name or group.id
        for assignment in assignments:
            holdings.append(
                RoleHolding(
                    role_name=_role_name(client, assignment.role_definition_id),
                    template_id=assignment.role_definition_id,
                    how="group",
                    via_group=name,
                )
            )
        for schedule in schedules:
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
    held_roles, unknown = portal_roles_held(
        client, user.id, portal_roles=portal_roles, shared=use_cache
    )
    profile = TargetProfile(
        user=user,
        manager=manager,
        roles=roles,
        protected_groups=protected,
        tier=target_tier(roles, protected, held_roles, portal_roles_unknown=bool(unknown)),
        portal_roles=held_roles,
        portal_roles_unknown=unknown,
    )
    if not unknown:
        # A profile that fails closed is not kept: the next read may know better.
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
    # The portal's tiering follows Entra's: only holders of Privileged Authentication
    # Administrator act on privileged people. Anyone else escalates to them (mfa.escalations),
    # unless nobody could take it.
    if tiering_refusal(agent, privileged=profile.privileged):
        from mfa.escalations import escalation_refusal

        refusal = escalation_refusal(agent, target_id=profile.user.id)
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


def manual_check_suffices(kind: str, params: Mapping[str, Any] | None = None) -> bool:
    """Whether a manual caller check alone unlocks ``kind`` with ``params`` without an approval:
    not when ``PORTAL_MANUAL_CHECK_NEEDS_APPROVAL`` names the kind, or ``kind:<state>`` for the
    state asked (``set_mfa_state:disabled``)."""
    listed = {str(e).strip().lower() for e in settings.PORTAL_MANUAL_CHECK_NEEDS_APPROVAL}
    state = str((params or {}).get("state", "")).strip().lower()
    return kind not in listed and not (state and f"{kind}:{state}" in listed)


def approval_reasons(
    profile: TargetProfile,
    kind: str | None = None,
    params: Mapping[str, Any] | None = None,
    verification: CallerVerification | None = None,
) -> list[str]:
    """Why a request of ``kind`` (with ``params``, backed by ``verification``) on this person
    waits for an approval, one sentence each; empty when it needs none. Without ``kind``: only
    what holds for every action on the person (the tier)."""
    reasons: list[str] = []
    if profile.privileged:
        why = "; ".join(profile.reasons) or "privileged"
        reasons.append(f"{profile.user.display_name} is a privileged person ({why}).")
    manual_only = verification is not None and verification.method == VerificationMethod.MANUAL
    if kind is not None and manual_only and not manual_check_suffices(kind, params):
        label = ActionKind(kind).label if kind in ActionKind.values else kind
        reasons.append(f"{label} backed only by a manual caller check needs an approval.")
    return reasons


def needs_approval(
    profile: TargetProfile,
    kind: str | None = None,
    params: Mapping[str, Any] | None = None,
    verification: CallerVerification | None = None,
) -> bool:
    """Whether the request waits for a Lead's or Admin's approval (see approval_reasons)."""
    return bool(approval_reasons(profile, kind, params, verification))


def target_columns(profile: TargetProfile) -> dict[str, Any]:
    """The ``ActionRequest`` columns that keep what the tier was decided with: ``target_tier``
    and ``target_roles`` (directory roles, protected groups and portal roles, each a dict with
    ``role_name`` and ``how``; a portal role also names itself under ``portal_role``)."""
    roles: list[dict[str, Any]] = [
        {
            "role_name": r.role_name,
            "template_id": r.template_id,
            "how": r.how,
            "via_group": r.via_group,
            "ends": r.ends.isoformat() if r.ends else None,
        }
        for r in profile.roles
    ]
    roles += [
        {"role_name": f"Protected group: {g}", "how": "group"} for g in profile.protected_groups
    ]
    roles += [
        {"role_name": f"Portal role: {r}", "how": "app role", "portal_role": r}
        for r in profile.portal_roles
    ]
    if profile.portal_roles_unknown:
        roles.append(
            {"role_name": "Portal roles unknown", "how": "app role", "portal_role": "unknown"}
        )
    return {"target_tier": profile.tier, "target_roles": roles}


def profile_portal_roles(profile: TargetProfile) -> frozenset[str]:
    """The portal roles ``profile``'s person holds; Admin when they could not be read (the
    strictest approval then applies)."""
    found = set(profile.portal_roles)
    if profile.portal_roles_unknown:
        found.add(Role.ADMIN.value)
    return frozenset(found)


def target_portal_roles(action_request: ActionRequest) -> frozenset[str]:
    """The portal roles the person acted on held when the tier was last decided (from
    ``target_roles``); "unknown" stands for "could not be read" and counts as Admin."""
    found = {
        str(r.get("portal_role"))
        for r in action_request.target_roles
        if isinstance(r, dict) and r.get("portal_role")
    }
    return frozenset(Role.ADMIN.value if r == "unknown" else r for r in found)


_STAFF_ABOVE_AGENT = frozenset({Role.LEAD.value, Role.ADMIN.value})


def approver_refusal(
    *,
    approver_roles: Iterable[str],
    requester_roles: Iterable[str],
    target_roles: Iterable[str],
) -> str | None:
    """Why someone holding ``approver_roles`` may not approve a request by someone holding
    ``requester_roles`` on someone holding the portal roles ``target_roles``, or None. The rank
    part of :func:`check_may_decide`'s rule (identities are checked there)."""
    approver, requester, target = set(approver_roles), set(requester_roles), set(target_roles)
    if not approver & set(APPROVER_ROLES):
        return "Only a Lead or an Admin can approve requests."
    if Role.ADMIN in approver:
        return None
    if target & _STAFF_ABOVE_AGENT:
        held = " and ".join(sorted(target & _STAFF_ABOVE_AGENT))
        return (
            f"The person acted on holds the portal role {held}: only an Admin may approve an "
            "action on a Lead or an Admin."
        )
    if requester & _STAFF_ABOVE_AGENT:
        return (
            "A Lead never approves for a Lead: this request comes from a Lead (or an Admin), so "
            "an Admin must approve it."
        )
    return None


def check_may_decide(approver: Any, action_request: ActionRequest) -> None:
    """Raises NotAllowed unless ``approver`` may approve or reject ``action_request``: a Lead or
    Admin who is neither the requester nor the person acted on.

    Approving asks more (:func:`check_may_approve`, DESIGN.md "Policy"):

    * an approval is given by a Lead or an Admin who is neither the requester nor the target;
    * an action on a Lead or an Admin (a target holding that portal role) needs an Admin; on an
      Admin that is another Admin, since the target never decides about themself;
    * a peer never approves for a peer: a request by a Lead needs an Admin (a Lead does not
      approve a fellow Lead's request, whatever its target); a request by an Admin needs another
      Admin (there is no rank above);
    * under ``PORTAL_MIRROR_ENTRA_TIERING`` a request on a privileged person whose requester no
      longer holds PAA cannot be approved at all.

    Rejecting needs only this check: refusing never widens what anyone can do.
    """
    if not has_role(approver, *APPROVER_ROLES):
        raise NotAllowed("Only a Lead or an Admin can approve or reject requests.")
    if approver.pk == action_request.requester_id:
        raise NotAllowed("You cannot approve or reject your own request: ask another lead.")
    if approver.pk == action_request.taken_by_id:
        raise NotAllowed("You took this escalation on: another Lead or Admin must decide it.")
    if _oid_of(approver).lower() == action_request.target_id.lower():
        raise NotAllowed("You cannot decide a request about your own account.")


def check_may_approve(approver: Any, action_request: ActionRequest) -> None:
    """Raises NotAllowed unless ``approver`` (who passed :func:`check_may_decide`) may approve
    ``action_request``: the rank rule of :func:`approver_refusal` on the roles the portal knows
    now (the approver's and requester's from their sign-in, the target's from the request), and
    the mirrored Entra tiering. The worker checks the same again on Entra just before it writes
    (``mfa.flow``)."""
    requester_roles = portal_roles_of(action_request.requester)
    if action_request.taken_by is not None:
        # Whoever carries an escalation ranks as the higher of the two.
        requester_roles |= portal_roles_of(action_request.taken_by)
    refusal = approver_refusal(
        approver_roles=portal_roles_of(approver),
        requester_roles=requester_roles,
        target_roles=target_portal_roles(action_request),
    ) or approval_refusal(action_request.acting_agent, privileged=action_request.is_privileged)
    if refusal:
        raise NotAllowed(refusal)


def approval_blocked(approver: Any, action_request: ActionRequest) -> str | None:
    """Why ``approver`` may not approve ``action_request`` (the approvals page then offers no
    Approve button), or None when they may."""
    try:
        check_may_decide(approver, action_request)
        check_may_approve(approver, action_request)
    except PolicyError as exc:
        return exc.message
    return None


def kind_family(kind: str) -> str:
    """The family of ``kind``: requests of one family on one person are never open together."""
    return KIND_FAMILIES[kind]


# --- rate limit and repeats ---------------------------------------------------------------------


class RepeatNeedsConfirmation(PolicyError):
    """The agent's same action on the same person succeeded moments ago (``previous``): a second
    one goes through only when the agent confirms it with a reason."""

    def __init__(self, message: str, *, previous: ActionRequest) -> None:
        self.previous = previous
        super().__init__(message)


def agent_rate_usage(agent: Any, *, now: datetime | None = None) -> tuple[int, int]:
    """(requests ``agent`` made in the current window, the limit). Counted from ActionRequest
    rows, so every process agrees and a restart forgets nothing."""
    now = now or timezone.now()
    window = timedelta(minutes=settings.PORTAL_AGENT_RATE_WINDOW_MINUTES)
    count = ActionRequest.objects.filter(requester=agent, created_at__gte=now - window).count()
    return count, int(settings.PORTAL_AGENT_RATE_LIMIT)


def check_rate(agent: Any, *, now: datetime | None = None) -> RateOverride | None:
    """None when ``agent`` is under the limit; at the limit, the override grant one of whose extra
    requests this request takes (mfa.overrides); else raises RateLimited.

    Count and take are atomic only under the agent's lock, inside the transaction that records
    the request (``mfa.services.action_request_create``): called anywhere else, parallel
    submissions all pass on the same count.
    """
    count, limit = agent_rate_usage(agent, now=now)
    if count < limit:
        return None
    grant = rate_override_take(agent, now=now)
    if grant is not None:
        return grant
    window = int(settings.PORTAL_AGENT_RATE_WINDOW_MINUTES)
    who = "An Admin" if has_role(agent, *APPROVER_ROLES) else "A lead"
    raise RateLimited(
        f"You have made {count} requests in the last {window} minutes (the limit is {limit}). "
        f"{who} must override the limit for this request.",
        count=count,
        limit=limit,
        window_minutes=window,
    )


def recent_success(
    agent: Any, *, target_id: str, kind: str, now: datetime | None = None
) -> ActionRequest | None:
    """``agent``'s latest request of ``kind`` on ``target_id`` that succeeded (wholly or in part)
    within the last PORTAL_REPEAT_WINDOW_MINUTES, or None (always None when the window is 0)."""
    minutes = int(settings.PORTAL_REPEAT_WINDOW_MINUTES)
    if minutes <= 0:
        return None
    now = now or timezone.now()
    return (
        ActionRequest.objects.filter(
            requester=agent,
            target_id__iexact=target_id,
            kind=kind,
            status__in=(Status.SUCCEEDED, Status.PARTIALLY_SUCCEEDED),
            finished_at__gte=now - timedelta(minutes=minutes),
        )
        .order_by("-finished_at", "-id")
        .first()
    )


def check_repeat(
    agent: Any, *, target_id: str, kind: str, confirmed: bool, now: datetime | None = None
) -> ActionRequest | None:
    """The recent success this request repeats (``recent_success``), or None.

    Raises RepeatNeedsConfirmation when there is one and the agent has not ``confirmed`` the
    repeat (with a reason, which the caller records). Two tabs, or a second click with a fresh
    form, must not issue a second pass for one call.
    """
    previous = recent_success(agent, target_id=target_id, kind=kind, now=now)
    if previous is None or confirmed:
        return previous
    finished = timezone.localtime(previous.finished_at).strftime("%H:%M")
    raise RepeatNeedsConfirmation(
        f"You already did this for {previous.target_name} at {finished} "
        f"({previous.get_kind_display()}, {previous.get_status_display().lower()}). "
        'To do it again, tick "Yes, do it again" and say why.',
        previous=previous,
    )


def portal_roles_text(user: Any) -> str:
    """The person's portal roles, for event details (``Agent, Lead``)."""
    return ", ".join(sorted(portal_roles_of(user)))
