"""Who may see and do what in the helpdesk pages: every rule of mfa's views, in one place.

Views call the ``get_..._for_user`` functions, which return the object or raise Http404 /
PermissionDenied, so a template never decides access. The services check the same rules again
(approver is not the requester, the pass goes only to its requester): these functions decide
what a page shows, the services what may change. The role sets (``REQUESTER_ROLES`` for the
helpdesk pages, ``APPROVER_ROLES`` for approvals) are declared once, in ``accounts.roles``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.roles import APPROVER_ROLES, has_role
from mfa.models import ActionRequest, CallerVerification, Status
from outbox.states import CANCELLABLE_STATUSES


def can_see_all_requests(user: Any) -> bool:
    """Leads and admins review the whole team's requests; agents see their own."""
    return has_role(user, *APPROVER_ROLES)


def can_see_request(user: Any, action_request: ActionRequest) -> bool:
    """The requester, leads and admins, the PAA holder who took an escalation on, and while it
    is escalated those who may take it. A request carries the caller's verification evidence,
    so other agents do not open it (they see that it exists on the person's page)."""
    if action_request.requester_id == user.pk or can_see_all_requests(user):
        return True
    if action_request.taken_by_id is not None:
        return bool(action_request.taken_by_id == user.pk)
    if action_request.status == Status.ESCALATED:
        from mfa.escalations import may_take_escalations

        return may_take_escalations(user)
    return False


def _parse_public_id(public_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(public_id))
    except ValueError as exc:
        raise Http404("No such request") from exc


def get_request_for_user(user: Any, public_id: str) -> ActionRequest:
    """The request ``public_id`` if ``user`` may see it; Http404 otherwise (an agent cannot
    learn whether another agent's request exists)."""
    try:
        action_request = ActionRequest.objects.select_related("verification").get(
            public_id=_parse_public_id(public_id)
        )
    except ActionRequest.DoesNotExist as exc:
        raise Http404("No such request") from exc
    if not can_see_request(user, action_request):
        raise Http404("No such request")
    return action_request


def can_decide(user: Any, action_request: ActionRequest) -> bool:
    """Lead or admin, not the requester, and the request still waits for a decision."""
    return (
        has_role(user, *APPROVER_ROLES)
        and action_request.requester_id != user.pk
        and action_request.status == Status.AWAITING_APPROVAL
    )


def get_request_to_decide_for_user(user: Any, public_id: str) -> ActionRequest:
    """The request ``user`` is about to approve or reject. Raises PermissionDenied for the
    requester (four eyes) and for anyone not Lead or Admin; Http404 for an unknown id."""
    if not has_role(user, *APPROVER_ROLES):
        raise PermissionDenied("Only a Lead or an Admin can approve or reject requests.")
    action_request = get_request_for_user(user, public_id)
    if action_request.requester_id == user.pk:
        raise PermissionDenied("You cannot decide on your own request: ask another lead.")
    return action_request


def can_cancel(user: Any, action_request: ActionRequest) -> bool:
    """The requester, a lead or an admin, while the request has not started."""
    return action_request.status in CANCELLABLE_STATUSES and (
        action_request.requester_id == user.pk or has_role(user, *APPROVER_ROLES)
    )


def get_request_to_cancel_for_user(user: Any, public_id: str) -> ActionRequest:
    """The request ``user`` is about to cancel. Http404 for a request they may not see;
    PermissionDenied once it has started, or for someone who may not cancel it."""
    action_request = get_request_for_user(user, public_id)
    if not can_cancel(user, action_request):
        raise PermissionDenied("This request can no longer be cancelled by you.")
    return action_request


def can_reveal_tap(user: Any, action_request: ActionRequest) -> bool:
    """Only the agent who asked for a Temporary Access Pass ever sees it."""
    return action_request.kind == "issue_tap" and action_request.requester_id == user.pk


def get_tap_request_for_user(user: Any, public_id: str) -> ActionRequest:
    """A TAP request whose pass ``user`` may reveal; Http404 for anyone but its requester."""
    action_request = get_request_for_user(user, public_id)
    if not can_reveal_tap(user, action_request):
        raise Http404("No pass to reveal here")
    return action_request


def get_pending_verification_for_user(
    user: Any, target_id: str, verification_id: int
) -> CallerVerification:
    """A code verification this agent started for this target; Http404 for any other (another
    agent's, another target's), so a code can only be checked where it was sent."""
    try:
        return CallerVerification.objects.get(pk=verification_id, agent=user, target_id=target_id)
    except CallerVerification.DoesNotExist as exc:
        raise Http404("No such verification") from exc
