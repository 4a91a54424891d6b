"""The escalation queue (``/escalations/``): what waits for a holder of PAA to take it on, with the
caller verification the agent recorded; take it on (it goes to the usual approval) or refuse it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import REQUESTER_ROLES, role_required
from mfa import escalations, selectors
from mfa.forms import DecisionForm
from mfa.models import ActionRequest, Status
from mfa.permissions import get_request_for_user
from outbox.errors import PolicyError
from roles.catalog import PAA


def _form(row: ActionRequest, data: Any = None) -> DecisionForm:
    form = DecisionForm(data, prefix=f"e{row.pk}")
    comment = form.fields["comment"]
    comment.required = False
    comment.help_text = (
        "Recorded with your decision and shown to the agent. Required when you refuse."
    )
    return form


def _queue(
    request: HttpRequest,
    *,
    problem: tuple[int, str, DecisionForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The queue page; ``problem`` (request pk, message, bound form) shows a refusal inside the
    card it is about, next to its buttons."""
    items = []
    for row in escalations.waiting_for(request.user):
        item: dict[str, Any] = {
            "ar": row,
            "params": selectors.params_for_display(row),
            "form": _form(row),
            "problem": "",
        }
        if problem is not None and problem[0] == row.pk:
            item.update(problem=problem[1], form=problem[2])
        items.append(item)
    shown = problem is not None and any(item["problem"] for item in items)
    raised = ActionRequest.objects.filter(requester_id=request.user.pk, status=Status.ESCALATED)
    return render(
        request,
        "mfa/escalations.html",
        {
            "items": items,
            # A refusal about an escalation no longer in the queue (taken, expired meanwhile).
            "problem": problem[1] if problem is not None and not shown else "",
            "raised": list(raised.order_by("created_at")),
            "may_take": escalations.may_take_escalations(request.user),
            "paa": PAA,
        },
        status=status,
    )


@require_GET
@role_required(*REQUESTER_ROLES)
def escalation_queue(request: HttpRequest) -> HttpResponse:
    """The escalations the signed-in person may take now, oldest first, each with its recorded
    caller verification; and the escalations they raised that still wait."""
    return _queue(request)


@require_POST
@role_required(*REQUESTER_ROLES)
def escalation_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """Take on (``decision=take``) or refuse (``decision=refuse``, with a reason) one escalation.
    A refusal by the rules is shown inside its card on the queue (409); nothing changes."""
    row = get_request_for_user(request.user, public_id)
    if not row.was_escalated:
        raise Http404("No such escalation")
    form = _form(row, request.POST)
    decision = request.POST.get("decision")
    if decision not in ("take", "refuse") or not form.is_valid():
        message = "Choose Take it on or Refuse; a comment is at most 2000 characters."
        return _queue(request, problem=(row.pk, message, form), status=400)
    comment = form.cleaned_data["comment"] or ""
    try:
        if decision == "take":
            row = escalations.escalation_take(
                action_request=row, taker=request.user, comment=comment, http_request=request
            )
        else:
            row = escalations.escalation_refuse(
                action_request=row, taker=request.user, comment=comment, http_request=request
            )
    except PolicyError as exc:
        return _queue(request, problem=(row.pk, exc.message, form), status=409)
    if decision == "take":
        messages.success(
            request,
            f"You took on {row.get_kind_display().lower()} for {row.target_name}: it now waits "
            "for a Lead's or an Admin's approval.",
        )
        return redirect("mfa:request_detail", row.public_id)
    messages.success(
        request, f"You refused {row.get_kind_display().lower()} for {row.target_name}."
    )
    return redirect("mfa:escalations")
