"""What waits for a signed-in person: the approvals they may give, the role grants waiting for a
second Admin, the escalations they may take; and, the other way round, who can act on a request
that starts waiting (the people :mod:`mfa.notifications` tells).

The nav's counts, the home page's list and the notices all read these functions, so a request
counted in the nav is one the person finds on the page behind the link. No Graph call here: the
rank rules use the portal roles the portal knows (the approvals page and the services check the
rest, Entra's tiering included, when the person acts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.models import PortalProfile
from accounts.roles import APPROVER_ROLES, Role, portal_roles_of
from mfa.models import ActionRequest
from mfa.policy import approver_refusal, target_portal_roles
from outbox.states import Status
from roles.models import RoleChangeRequest

WaitingRow = ActionRequest | RoleChangeRequest
_ACTION = "action"
_ROLE_CHANGE = "role_change"


def ref_of(row: WaitingRow) -> str:
    """A short reference naming ``row`` in a task message ("action:12", "role_change:3"): a
    primary key and a model, nothing about the person."""
    prefix = _ROLE_CHANGE if isinstance(row, RoleChangeRequest) else _ACTION
    return f"{prefix}:{row.pk}"


def row_of(ref: str) -> WaitingRow | None:
    """The request ``ref`` (from :func:`ref_of`) names, or None when it is gone or malformed."""
    prefix, _sep, pk = ref.partition(":")
    if not pk.isdigit():
        return None
    if prefix == _ROLE_CHANGE:
        return RoleChangeRequest.objects.filter(pk=int(pk)).first()
    if prefix == _ACTION:
        return (
            ActionRequest.objects.select_related("requester", "verification")
            .filter(pk=int(pk))
            .first()
        )
    return None


def _oid(user: Any) -> str:
    profile = getattr(user, "portal_profile", None)
    return str(getattr(profile, "oid", "") or getattr(user, "username", "") or "").lower()


def hold_text(row: RoleChangeRequest) -> str:
    """How the role is to be held, in words: "Active, permanent", "Active until 3 Dec 2026,
    14:05", "Eligible (PIM) until ..."."""
    if row.ends_at is None:
        return str(row.get_hold_kind_display())
    local = timezone.localtime(row.ends_at)
    until = f"{local.day} {local:%b %Y, %H:%M}"
    start = "Eligible (PIM)" if row.hold_kind == "eligible_until" else "Active"
    return f"{start} until {until}"


# --- what waits for one person ------------------------------------------------------------------


def may_approve(user: Any, row: ActionRequest) -> bool:
    """Whether ``row`` (awaiting approval) waits for ``user``: a Lead or an Admin who is neither
    the requester nor the person acted on, and whom the rank rule lets approve it."""
    if row.status != Status.AWAITING_APPROVAL or row.requester_id == user.pk:
        return False
    if _oid(user) == row.target_id.lower():
        return False
    roles = portal_roles_of(user)
    refusal = approver_refusal(
        approver_roles=roles,
        requester_roles=portal_roles_of(row.requester),
        target_roles=target_portal_roles(row),
    )
    return refusal is None


def may_decide_grant(user: Any, row: RoleChangeRequest) -> bool:
    """Whether the role change ``row`` (awaiting approval) waits for ``user``: an Admin who
    neither asked for it nor receives the role (a group's members are checked when they act)."""
    return (
        row.status == Status.AWAITING_APPROVAL
        and Role.ADMIN in portal_roles_of(user)
        and row.requester_id != user.pk
        and _oid(user) != row.principal_id.lower()
    )


def approvals_for(user: Any) -> list[ActionRequest]:
    """The actions waiting for ``user``'s approval, oldest first."""
    if not portal_roles_of(user) & set(APPROVER_ROLES):
        return []
    rows = (
        ActionRequest.objects.filter(status=Status.AWAITING_APPROVAL)
        .exclude(requester_id=user.pk)
        .select_related("requester__portal_profile")
        .order_by("created_at")
    )
    return [row for row in rows if may_approve(user, row)]


def role_grants_for(user: Any) -> list[RoleChangeRequest]:
    """The role changes waiting for ``user`` as the second Admin, oldest first."""
    if Role.ADMIN not in portal_roles_of(user):
        return []
    rows = (
        RoleChangeRequest.objects.filter(status=Status.AWAITING_APPROVAL)
        .exclude(requester_id=user.pk)
        .order_by("created_at")
    )
    return [row for row in rows if may_decide_grant(user, row)]


def escalations_for(user: Any) -> list[ActionRequest]:
    """The escalations ``user`` may take now (``mfa.escalations.waiting_for``), oldest first."""
    from mfa import escalations

    queryset: QuerySet[ActionRequest] = escalations.waiting_for(user)
    return list(queryset.order_by("created_at"))


@dataclass(frozen=True)
class WaitingItem:
    """One thing waiting for a person, as the home page lists it."""

    kind: str  # "approval", "role_grant", "escalation"
    kind_label: str
    title: str
    person: str
    asked_by: str
    asked_at: datetime
    expires_at: datetime
    url: str
    act_label: str


@dataclass(frozen=True)
class Waiting:
    """Everything waiting for one person."""

    approvals: list[ActionRequest]
    role_grants: list[RoleChangeRequest]
    escalations: list[ActionRequest]

    @property
    def on_approvals_page(self) -> int:
        """What /approvals/ holds for this person: actions and role grants."""
        return len(self.approvals) + len(self.role_grants)

    @property
    def total(self) -> int:
        return self.on_approvals_page + len(self.escalations)

    def items(self) -> list[WaitingItem]:
        """Every waiting thing, the one expiring first first."""
        approvals_url = reverse("mfa:approvals")
        found: list[WaitingItem] = [
            WaitingItem(
                kind="approval",
                kind_label="Approval",
                title=f"{row.get_kind_display()} for {row.target_name}",
                person=row.target_upn,
                asked_by=row.requester_name,
                asked_at=row.created_at,
                expires_at=row.approval_expires_at(),
                url=f"{approvals_url}#appr-{row.pk}",
                act_label="Approve or reject",
            )
            for row in self.approvals
        ]
        found += [
            WaitingItem(
                kind="role_grant",
                kind_label="Role grant",
                title=f"{row.role_name} for {row.principal_name}",
                person=row.principal_upn,
                asked_by=row.requester_name,
                asked_at=row.created_at,
                expires_at=row.approval_expires_at(),
                url=f"{approvals_url}#grant-{row.pk}",
                act_label="Approve or reject",
            )
            for row in self.role_grants
        ]
        escalations_url = _escalations_url()
        found += [
            WaitingItem(
                kind="escalation",
                kind_label="Escalation",
                title=f"{row.get_kind_display()} for {row.target_name}",
                person=row.target_upn,
                asked_by=row.requester_name,
                asked_at=row.created_at,
                expires_at=row.approval_expires_at(),
                url=f"{escalations_url}#esc-{row.pk}" if escalations_url else "",
                act_label="Take or refuse",
            )
            for row in self.escalations
        ]
        return sorted(found, key=lambda item: item.expires_at)


def _escalations_url() -> str:
    from django.urls import NoReverseMatch

    try:
        return reverse("mfa:escalations")
    except NoReverseMatch:
        return ""


def waiting_for(user: Any) -> Waiting:
    """What waits for ``user`` now (nothing for someone without a portal role)."""
    if not portal_roles_of(user):
        return Waiting(approvals=[], role_grants=[], escalations=[])
    return Waiting(
        approvals=approvals_for(user),
        role_grants=role_grants_for(user),
        escalations=escalations_for(user),
    )


def nav_counts(user: Any) -> dict[str, int]:
    """The navigation's counts for ``user`` (accounts.navigation.counter_register): approvals
    and role grants behind Approvals, escalations behind Escalations."""
    found = waiting_for(user)
    return {"mfa:approvals": found.on_approvals_page, "mfa:escalations": len(found.escalations)}


# --- who can act on one request -----------------------------------------------------------------


def _staff() -> Iterable[Any]:
    """Every active portal user holding a portal role (the people a request can wait for)."""
    users = (
        get_user_model()
        .objects.filter(is_active=True, portal_profile__isnull=False)
        .select_related("portal_profile")
        .order_by("pk")
    )
    for user in users:
        try:
            if portal_roles_of(user):
                yield user
        except PortalProfile.DoesNotExist:
            continue


def who_can_act(row: WaitingRow) -> list[Any]:
    """The portal users ``row`` waits for now: its approvers while it awaits approval, the people
    who may take it while escalated; nobody once it waits no more."""
    if isinstance(row, RoleChangeRequest):
        return [user for user in _staff() if may_decide_grant(user, row)]
    if row.status == Status.AWAITING_APPROVAL:
        return [user for user in _staff() if may_approve(user, row)]
    if row.status == Status.ESCALATED:
        from mfa import escalations

        found = escalations.takers_for(requester_oid=_oid(row.requester), target_id=row.target_id)
        if found is not None:
            oids = {taker.oid.lower() for taker in found}
            return [user for user in _staff() if _oid(user) in oids and user.pk != row.requester_id]
        return [
            user for user in _staff() if escalations.waiting_for(user).filter(pk=row.pk).exists()
        ]
    return []


def address_of(user: Any) -> str:
    """Where a portal user's mail goes: their email, else their UPN (Entra's sign-in name)."""
    profile = getattr(user, "portal_profile", None)
    return str(getattr(user, "email", "") or getattr(profile, "upn", "") or "").strip()
