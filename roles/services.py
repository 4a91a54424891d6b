"""Asking for a change of who holds a directory role, and deciding it: one function per state
change, each writing its PortalEvent in the same transaction (the habits of mfa.services).

Life of a role change (the same states as a helpdesk action): ``role_change_create`` checks the
rules and records the request (``awaiting_approval`` when granting a role of
``ROLES_REQUIRING_APPROVAL``, else ``pending``) and enqueues ``roles.tasks.role_change_run`` on
commit; ``role_change_approve`` / ``_reject`` / ``_cancel`` decide it; the task runs it
(``roles.flow`` on the outbox engine, ``roles.runners``); ``roles.refresh`` reads the holders again
and ``roles.linking`` links each change to Entra's audit event.

This module is the app's service surface: it re-exports the public names of those modules, so
views, tasks and tests need only ``from roles import services``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.capabilities import TenantCapabilities, tenant_capabilities
from accounts.roles import display_name_of
from audit.models import PortalEvent
from audit.services import portal_event_record
from graph import GraphClient
from graph import groups as graph_groups
from graph import users as graph_users
from graph.errors import GraphNotFound
from outbox import decisions, engine
from outbox.errors import Deferred, InvalidRequest, NotAllowed
from outbox.flow import enqueue_on_commit, needs_queue
from outbox.inputs import clean_reason, clean_ticket
from outbox.states import Status
from roles.catalog import ROLES_SHOWN, role_is_read_only, role_needs_approval, role_template
from roles.events import event_detail, event_fields
from roles.flow import ROLE_CHANGES
from roles.guards import open_removals, removal_guard_message
from roles.holders import find_holding, read_role
from roles.linking import role_changes_correlate
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from roles.permissions import (
    role_change_check_may_decide,
    role_change_check_may_request,
    role_change_check_not_own_roles,
)
from roles.refresh import role_holders_refresh, role_holders_refresh_request

__all__ = [
    "GuardRefused",
    "Principal",
    "RoleChangeDeferred",
    "open_removals",
    "pim_kinds_refusal",
    "principal_lookup",
    "role_change_approve",
    "role_change_cancel",
    "role_change_check_may_decide",
    "role_change_create",
    "role_change_execute",
    "role_change_reject",
    "role_changes_correlate",
    "role_changes_redispatch",
    "role_holders_refresh",
    "role_holders_refresh_request",
]

logger = logging.getLogger(__name__)
ADD_KINDS = (HoldKind.ACTIVE_PERMANENT, HoldKind.ACTIVE_UNTIL, HoldKind.ELIGIBLE_UNTIL)
REMOVE_KINDS = (HoldKind.ACTIVE, HoldKind.ELIGIBLE)
# The kinds that go through PIM (roleEligibilityScheduleRequests, roleAssignmentScheduleRequests),
# which needs Microsoft Entra ID P2:
# https://learn.microsoft.com/entra/id-governance/privileged-identity-management/pim-getting-started
PIM_HOLD_KINDS = (HoldKind.ACTIVE_UNTIL, HoldKind.ELIGIBLE_UNTIL, HoldKind.ELIGIBLE)
MAX_END_DAYS = 366


class GuardRefused(NotAllowed):
    """A removal the guards refuse (last Global Administrator, last active PAA holder)."""


def _client(client: GraphClient | None) -> GraphClient:
    if client is not None:
        return client
    from portal.graph_client import get_graph_client

    return get_graph_client()


@dataclass(frozen=True)
class Principal:
    id: str
    type: str
    name: str
    upn: str


def principal_lookup(client: GraphClient, *, principal_id: str, principal_type: str) -> Principal:
    """The person or role-assignable group ``principal_id`` as Graph names it now.

    Raises InvalidRequest for an unknown person, a guest, or a group that is not role-assignable;
    GraphError for other failures.
    """
    if principal_type == PrincipalType.USER:
        try:
            user = graph_users.get_user(client, principal_id)
        except GraphNotFound:
            raise InvalidRequest("No such person in the directory.") from None
        if user.is_guest:
            raise InvalidRequest("Guests cannot be given administrator roles through the portal.")
        return Principal(user.id, PrincipalType.USER, user.display_name, user.user_principal_name)
    if principal_type == PrincipalType.GROUP:
        for group in graph_groups.list_role_assignable_groups(client):
            if group.id.lower() == principal_id.lower():
                return Principal(group.id, PrincipalType.GROUP, group.display_name or group.id, "")
        raise InvalidRequest("Only a role-assignable group can hold a directory role.")
    raise InvalidRequest("Choose a person or a role-assignable group.")


def pim_kinds_refusal(capabilities: TenantCapabilities) -> str:
    """Why eligible and time-bound holdings cannot be asked for in this tenant; empty when they
    can (the tenant has PIM)."""
    if capabilities.pim:
        return ""
    return (
        "Eligible and time-bound assignments are unavailable in this tenant: "
        f"{capabilities.pim_unavailable_reason} Choose an active, permanent assignment instead."
    )


def _clean_end(hold_kind: str, ends_at: datetime | None, now: datetime) -> datetime | None:
    if hold_kind == HoldKind.ACTIVE_PERMANENT:
        return None
    if ends_at is None:
        raise InvalidRequest("Choose the date the role ends.")
    if timezone.is_naive(ends_at):
        ends_at = timezone.make_aware(ends_at)
    if ends_at <= now + timedelta(minutes=5):
        raise InvalidRequest("The end date must be in the future.")
    if ends_at > now + timedelta(days=MAX_END_DAYS):
        raise InvalidRequest(f"The end date must be within {MAX_END_DAYS} days.")
    return ends_at


@needs_queue
def role_change_create(
    *,
    requester: Any,
    change: str,
    role_name: str,
    principal_id: str,
    principal_type: str,
    hold_kind: str,
    justification: str,
    ticket: str,
    idempotency_key: str,
    ends_at: datetime | None = None,
    http_request: HttpRequest | None = None,
    client: GraphClient | None = None,
) -> RoleChangeRequest:
    """Record a change of who holds ``role_name`` (with its ``role_change_requested`` event) and,
    unless it waits for approval, enqueue its task on commit.

    The same ``idempotency_key`` again returns the request already made. Raises NotAllowed
    (requester not an Admin, a read-only role such as Global Administrator, a change of one's
    own roles), GuardRefused (the removal would leave no active Global Administrator or no active
    PAA holder, counting removals already under way), InvalidRequest (input, unknown person,
    a group that is not role-assignable, already held / not held, another open change of the same
    role and principal), QueueUnavailable (Redis cannot be reached: nothing was recorded) and
    GraphError from the reads.

    How each kind reaches Entra: active and permanent through ``roleAssignments``; active until a
    date through PIM's ``roleAssignmentScheduleRequests`` (``adminAssign`` with an
    ``afterDateTime`` expiration); eligible until a date through
    ``roleEligibilityScheduleRequests``.
    Removing a time-bound active assignment sends ``adminRemove`` to
    ``roleAssignmentScheduleRequests``; a permanent one is deleted from ``roleAssignments``.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 64:
        raise InvalidRequest("The form is missing its submission token. Reload the page.")
    existing = RoleChangeRequest.objects.filter(idempotency_key=key).first()
    if existing is not None:
        if existing.requester_id != requester.pk:
            raise InvalidRequest("This form was already used. Reload the page and submit again.")
        return existing
    role_change_check_may_request(requester)
    if role_name not in ROLES_SHOWN:
        raise InvalidRequest("Choose one of the roles listed on the page.")
    if change not in RoleChange.values:
        raise InvalidRequest("Choose to add or to remove a holder.")
    kinds = ADD_KINDS if change == RoleChange.ADD else REMOVE_KINDS
    if hold_kind not in kinds:
        raise InvalidRequest("Choose how the role is held.")
    text = clean_reason(justification)
    clean = clean_ticket(ticket) if change == RoleChange.ADD or ticket.strip() else ""
    role_change_check_not_own_roles(requester, principal_id)

    client = _client(client)
    if hold_kind in PIM_HOLD_KINDS:
        # Without PIM (no Entra ID P2) Graph refuses these: say so before anything is recorded.
        no_pim = pim_kinds_refusal(tenant_capabilities(client))
        if no_pim:
            raise InvalidRequest(no_pim)
    now = timezone.now()
    holdings = read_role(client, role_name)
    assignment_id = ""
    if change == RoleChange.REMOVE:
        holding = find_holding(holdings, principal_id=principal_id, how=hold_kind)
        if holding is None:
            raise InvalidRequest(
                f"This principal holds no {HoldKind(hold_kind).label.lower()} of {role_name} now."
            )
        refusal = removal_guard_message(
            holdings, removing=holding, also_removing=open_removals(role_name, holdings)
        )
        if refusal:
            raise GuardRefused(refusal)
        if role_is_read_only(role_name):
            raise NotAllowed(f"{role_name} is shown read-only: change it in Entra itself.")
        principal = Principal(
            holding.principal_id,
            PrincipalType.GROUP if holding.is_group else PrincipalType.USER,
            holding.display_name,
            holding.upn,
        )
        assignment_id = holding.assignment_id
        end = None
    else:
        if role_is_read_only(role_name):
            raise NotAllowed(f"{role_name} is shown read-only: change it in Entra itself.")
        end = _clean_end(hold_kind, ends_at, now)
        principal = principal_lookup(
            client, principal_id=principal_id, principal_type=principal_type
        )
        how = "eligible" if hold_kind == HoldKind.ELIGIBLE_UNTIL else "active"
        if find_holding(holdings, principal_id=principal.id, how=how):
            raise InvalidRequest(f"{principal.name} already holds {role_name} that way.")
    # A group's roles are its members' too: refused when the requester is one (issue 10).
    role_change_check_not_own_roles(requester, principal.id, principal.type, client=client)

    needs_approval = change == RoleChange.ADD and role_needs_approval(role_name)
    try:
        with transaction.atomic():
            row = RoleChangeRequest.objects.create(
                change=change,
                status=Status.AWAITING_APPROVAL if needs_approval else Status.PENDING,
                role_template_id=role_template(role_name),
                role_name=role_name,
                principal_id=principal.id,
                principal_type=principal.type,
                principal_name=principal.name,
                principal_upn=principal.upn,
                hold_kind=hold_kind,
                ends_at=end,
                assignment_id=assignment_id,
                justification=text,
                ticket=clean,
                requester=requester,
                requester_name=display_name_of(requester),
                needs_approval=needs_approval,
                idempotency_key=key,
                open_slot=f"{role_template(role_name)}:{principal.id.lower()}",
                created_at=now,
                enqueued_at=None if needs_approval else now,
            )
            portal_event_record(
                kind=PortalEvent.Kind.ROLE_CHANGE_REQUESTED,
                actor=requester,
                request=http_request,
                new_value={"status": row.status},
                detail=event_detail(
                    row,
                    justification=text,
                    needs_approval=needs_approval,
                    assignment_id=assignment_id,
                ),
                **event_fields(row),
            )
            if not needs_approval:
                enqueue_on_commit(ROLE_CHANGES, row.pk)
    except IntegrityError:
        again = RoleChangeRequest.objects.filter(idempotency_key=key).first()
        if again is not None and again.requester_id == requester.pk:
            return again
        busy = RoleChangeRequest.objects.filter(
            open_slot=f"{role_template(role_name)}:{principal.id.lower()}"
        ).first()
        who = busy.requester_name if busy else "Someone"
        raise InvalidRequest(
            f"{who} already has an open change of {role_name} for {principal.name}: wait for it "
            "to finish."
        ) from None
    return row


def role_change_approve(
    *,
    role_change: RoleChangeRequest,
    approver: Any,
    comment: str = "",
    http_request: HttpRequest | None = None,
) -> RoleChangeRequest:
    """Approve a change ``awaiting_approval``: it becomes ``pending`` and its task is enqueued on
    commit. Raises NotAllowed (not an Admin; the requester; the person the role is for) or
    InvalidRequest (not awaiting approval, expired)."""
    return decisions.decide(
        ROLE_CHANGES,
        row=role_change,
        approver=approver,
        comment=comment,
        approve=True,
        http_request=http_request,
    )


def role_change_reject(
    *,
    role_change: RoleChangeRequest,
    approver: Any,
    comment: str,
    http_request: HttpRequest | None = None,
) -> RoleChangeRequest:
    """Reject a change ``awaiting_approval`` (a comment is required). Same rules as approve."""
    return decisions.decide(
        ROLE_CHANGES,
        row=role_change,
        approver=approver,
        comment=comment,
        approve=False,
        http_request=http_request,
    )


def role_change_cancel(
    *, role_change: RoleChangeRequest, by: Any, http_request: HttpRequest | None = None
) -> RoleChangeRequest:
    """Cancel a change that has not started (``awaiting_approval`` or ``pending``). Any Admin
    may. Raises NotAllowed or InvalidRequest (already running or finished)."""
    return decisions.cancel(ROLE_CHANGES, row=role_change, by=by, http_request=http_request)


# --- execution and beat --------------------------------------------------------------------------

# The engine's: raised by role_change_execute when the task must retry after ``countdown``.
RoleChangeDeferred = Deferred


def role_change_execute(*, request_id: int) -> None:
    """Run role change ``request_id`` if it can be claimed (``outbox.engine.execute``): read who
    holds the role, check the guards again, write once, read back, and end ``succeeded`` or
    ``failed`` with Graph's code, message and request-id.

    Returns quietly when there is nothing to claim or the lease was lost. Raises
    RoleChangeDeferred when Graph throttled or failed transiently (or the database connection was
    lost) and attempts remain. Never leaves the row ``running`` on an exception it can catch.
    """
    engine.execute(ROLE_CHANGES, request_id)


def role_changes_redispatch() -> int:
    """Beat: expire changes that waited for approval longer than ``PORTAL_APPROVAL_TTL_MINUTES``,
    then enqueue again the changes no worker picked up (``pending`` for longer than
    ``PORTAL_REDISPATCH_AFTER_SECONDS``, or ``running`` with a lapsed lease), each with a
    ``role_change_redispatched`` event. Returns how many were dispatched."""
    decisions.expire_stale(ROLE_CHANGES)
    return engine.redispatch(ROLE_CHANGES)
