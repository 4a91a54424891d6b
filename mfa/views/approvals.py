"""The Lead's and Admin's pages: the requests waiting for a decision (helpdesk actions, and for an
Admin the role grants waiting for a second Admin), approve or reject, and the override of one
agent's rate limit (a few more requests)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import APPROVER_ROLES, Role, display_name_of, has_role, role_required
from mfa import policy, selectors, services, waiting
from mfa.forms import DecisionForm, RateOverrideForm
from mfa.overrides import rate_override_grant, rate_override_refusal
from mfa.permissions import get_request_to_decide_for_user
from outbox.errors import NotAllowed
from outbox.states import Status
from roles.models import RoleChangeRequest
from roles.permissions import role_change_check_may_decide


@require_GET
@role_required(*APPROVER_ROLES)
def approvals(request: HttpRequest) -> HttpResponse:
    """Requests waiting for a decision, with full context, and the rate-override form."""
    items = selectors.awaiting_approval(request.user)
    for item in items:
        item["form"] = DecisionForm(prefix=f"d{item['ar'].pk}")
    return render(
        request,
        "mfa/approvals.html",
        {
            "waiting": items,
            "role_grants": _role_grants(request.user),
            "override_form": RateOverrideForm(agents=_override_candidates(request.user)),
            "rate_limit": settings.PORTAL_AGENT_RATE_LIMIT,
            "rate_window": settings.PORTAL_AGENT_RATE_WINDOW_MINUTES,
            "override_requests": settings.PORTAL_RATE_OVERRIDE_REQUESTS,
        },
    )


@require_POST
@role_required(*APPROVER_ROLES)
def approval_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """Approve or reject (``decision``) with a comment."""
    action_request = get_request_to_decide_for_user(request.user, public_id)
    form = DecisionForm(request.POST, prefix=f"d{action_request.pk}")
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject") or not form.is_valid():
        messages.error(request, "Write a comment, then choose Approve or Reject.")
        return redirect("mfa:approvals")
    decide = (
        services.action_request_approve if decision == "approve" else services.action_request_reject
    )
    try:
        decide(
            action_request=action_request,
            approver=request.user,
            comment=form.cleaned_data["comment"],
            http_request=request,
        )
    except policy.PolicyError as exc:
        messages.error(request, exc.message)
    else:
        verb = "Approved" if decision == "approve" else "Rejected"
        messages.success(
            request,
            f"{verb}: {action_request.get_kind_display()} for {action_request.target_name}.",
        )
    return redirect("mfa:approvals")


def _role_grants(user: Any) -> list[dict[str, Any]]:
    """For an Admin: the role changes waiting for a second Admin, oldest first, each as ``row``,
    ``hold`` (how the role is to be held, in words), ``own`` (``user`` asked for it) and
    ``blocked`` (why ``user`` may not decide it). Empty for a Lead, who never decides them."""
    if not has_role(user, Role.ADMIN):
        return []
    rows = RoleChangeRequest.objects.filter(status=Status.AWAITING_APPROVAL).order_by("created_at")
    grants: list[dict[str, Any]] = []
    for row in rows:
        own = row.requester_id == user.pk
        blocked = ""
        if not own:
            try:
                role_change_check_may_decide(user, row)
            except NotAllowed as exc:
                blocked = exc.message
        grants.append({"row": row, "hold": waiting.hold_text(row), "own": own, "blocked": blocked})
    return grants


def _override_candidates(lead: Any) -> list[tuple[str, str]]:
    """The agents ``lead`` may let past the rate limit (a Lead's and an Admin's only an Admin)."""
    choices = selectors.rate_override_candidates(lead)
    people = get_user_model().objects.in_bulk([int(pk) for pk, _ in choices])
    return [
        (pk, label)
        for pk, label in choices
        if int(pk) in people and not rate_override_refusal(lead, people[int(pk)])
    ]


@require_POST
@role_required(*APPROVER_ROLES)
def rate_override(request: HttpRequest) -> HttpResponse:
    """A lead lets one agent make PORTAL_RATE_OVERRIDE_REQUESTS more requests past the limit."""
    form = RateOverrideForm(request.POST, agents=selectors.rate_override_candidates(request.user))
    if not form.is_valid():
        messages.error(request, "Choose the agent and say why.")
        return redirect("mfa:approvals")
    agent = get_user_model().objects.get(pk=int(form.cleaned_data["agent"]))
    try:
        grant = rate_override_grant(
            lead=request.user,
            agent=agent,
            comment=form.cleaned_data["comment"],
            http_request=request,
        )
    except policy.PolicyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Override granted: {display_name_of(agent)} may make {grant.granted} more requests "
            f"in the next {settings.PORTAL_AGENT_RATE_WINDOW_MINUTES} minutes.",
        )
    return redirect("mfa:approvals")
