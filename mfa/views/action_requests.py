"""The requests: the list (mine, or everyone's for leads), one request with its live status,
cancel, and the one-time reveal of a Temporary Access Pass."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import REQUESTER_ROLES, role_required
from mfa import policy, selectors, services
from mfa.models import ActionRequest, Status
from mfa.permissions import (
    can_cancel,
    can_reveal_tap,
    get_request_for_user,
    get_request_to_cancel_for_user,
    get_tap_request_for_user,
)
from mfa.tap_vault import tap_available
from mfa.views.pages import is_htmx


@require_GET
@role_required(*REQUESTER_ROLES)
def request_list(request: HttpRequest) -> HttpResponse:
    """``/requests/``: my requests; leads and admins may add ``?all=1``; ``?status=`` filters."""
    found = selectors.request_list_for(
        request.user,
        want_all=request.GET.get("all") == "1",
        status=request.GET.get("status", ""),
    )
    return render(
        request,
        "mfa/request_list.html",
        {
            "requests": found.rows,
            "can_see_all": found.can_see_all,
            "show_all": found.show_all,
            "status": found.status,
            "statuses": Status.choices,
        },
    )


def _status_context(request: HttpRequest, action_request: ActionRequest) -> dict[str, Any]:
    """The live status fragment: the request, its result and the buttons this user gets."""
    revealable = (
        can_reveal_tap(request.user, action_request)
        and action_request.status == Status.SUCCEEDED
        and tap_available(public_id=action_request.public_id)
    )
    return {
        "ar": action_request,
        "result": action_request.result or {},
        "tap_revealable": revealable,
        "is_requester": action_request.requester_id == request.user.pk,
        # In the live fragment, so the button goes away as soon as the request moves on.
        "can_cancel": can_cancel(request.user, action_request),
    }


@require_GET
@role_required(*REQUESTER_ROLES)
def request_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """One request. htmx polls it for the live status fragment until the request is final."""
    action_request = get_request_for_user(request.user, public_id)
    context = _status_context(request, action_request)
    if is_htmx(request):
        response = render(request, "mfa/_request_status.html", context)
    else:
        context["params"] = selectors.params_for_display(action_request)
        response = render(request, "mfa/request_detail.html", context)
    response["Vary"] = "HX-Request"
    # A page that may offer a pass's reveal button must not be served from a cache later.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(*REQUESTER_ROLES)
def request_cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    """Cancel a request that has not started (its requester, a lead or an admin)."""
    action_request = get_request_to_cancel_for_user(request.user, public_id)
    try:
        services.action_request_cancel(
            action_request=action_request, by=request.user, http_request=request
        )
    except policy.PolicyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Request cancelled.")
    return redirect("mfa:request_detail", action_request.public_id)


@never_cache
@require_http_methods(["GET", "POST"])
@role_required(*REQUESTER_ROLES)
def request_tap(request: HttpRequest, public_id: str) -> HttpResponse:
    """Reveal a Temporary Access Pass, once, to its requester (POST). The answer is ``no-store``;
    a reload (GET) shows that the pass is gone."""
    action_request = get_tap_request_for_user(request.user, public_id)
    pass_value: str | None = None
    if request.method == "POST":
        pass_value = services.tap_reveal(
            action_request=action_request, agent=request.user, http_request=request
        )
    response = render(
        request, "mfa/tap_reveal.html", {"ar": action_request, "pass_value": pass_value}
    )
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    response["Pragma"] = "no-cache"
    return response
