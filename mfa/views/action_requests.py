"""The requests: the list (everyone's for leads and admins, who may narrow it to their own;
an agent's own), one request with its live status, cancel, and the one-time reveal of a
Temporary Access Pass."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import REQUESTER_ROLES, role_required
from audit.models import PortalEvent
from mfa import policy, selectors, services
from mfa.models import ActionKind, ActionRequest, Status
from mfa.permissions import (
    can_cancel,
    can_reveal_tap,
    get_request_for_user,
    get_request_to_cancel_for_user,
    get_tap_request_for_user,
)
from mfa.tap_display import tap_groups, tap_spelling
from mfa.tap_vault import tap_available
from mfa.views.pages import is_htmx
from outbox.live import live_stamp


@require_GET
@role_required(*REQUESTER_ROLES)
def request_list(request: HttpRequest) -> HttpResponse:
    """``/requests/``: everyone's requests for leads and admins (``?all=0``: their own), an
    agent's own; ``?status=`` filters."""
    found = selectors.request_list_for(
        request.user,
        # Who may see everyone's requests opens on them: "my requests" is empty for a lead.
        want_all=request.GET.get("all", "1") == "1",
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


def _tap_step_detail(action_request: ActionRequest) -> str:
    """What became of an issued pass that no longer waits in the vault: shown (when, to whom),
    or forgotten unseen."""
    shown = (
        PortalEvent.objects.filter(kind=PortalEvent.Kind.TAP_REVEALED, request=action_request.pk)
        .order_by("created_at")
        .first()
    )
    if shown is None:
        return "The pass was not shown in time and is no longer kept: issue a new one if needed."
    when = timezone.localtime(shown.created_at).strftime("%H:%M")
    return f"Shown once to {action_request.requester_name} at {when}; no longer kept."


def _steps(action_request: ActionRequest, *, tap_waiting: bool) -> list[dict[str, Any]]:
    """The request's steps as the page shows them. A pass's step said it waits for the requester
    when it was written; once the pass is gone it says what became of it."""
    steps = [dict(step) for step in action_request.steps or []]
    if (
        action_request.kind == ActionKind.ISSUE_TAP
        and action_request.status == Status.SUCCEEDED
        and not tap_waiting
    ):
        for step in steps:
            if "Temporary Access Pass" in str(step.get("text", "")) and step.get("state") == "done":
                step["detail"] = _tap_step_detail(action_request)
    return steps


def _status_context(request: HttpRequest, action_request: ActionRequest) -> dict[str, Any]:
    """The live fragment: the whole state of the request (status, steps, result, approval,
    facts) and the buttons this user gets, so that nothing on the page goes stale."""
    tap_waiting = (
        action_request.kind == ActionKind.ISSUE_TAP
        and action_request.status == Status.SUCCEEDED
        and tap_available(public_id=action_request.public_id)
    )
    revealable = tap_waiting and can_reveal_tap(request.user, action_request)
    # In the live fragment, so the button goes away as soon as the request moves on.
    cancellable = can_cancel(request.user, action_request)
    return {
        "ar": action_request,
        "result": action_request.result or {},
        "steps": _steps(action_request, tap_waiting=tap_waiting),
        "params": selectors.params_for_display(action_request),
        "tap_revealable": revealable,
        "is_requester": action_request.requester_id == request.user.pk,
        "can_cancel": cancellable,
        "live_stamp": live_stamp(
            action_request,
            action_request.result,
            action_request.taken_by_name,
            revealable,
            cancellable,
        ),
    }


@require_GET
@role_required(*REQUESTER_ROLES)
def request_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """One request. htmx polls it for the live status fragment until the request is final."""
    action_request = get_request_for_user(request.user, public_id)
    context = _status_context(request, action_request)
    if is_htmx(request) and request.GET.get("seen") == context["live_stamp"]:
        # Nothing new since the page's last look: htmx swaps nothing on a 204.
        response = HttpResponse(status=204)
    else:
        template = "mfa/_request_status.html" if is_htmx(request) else "mfa/request_detail.html"
        response = render(request, template, context)
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


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _tap_context(action_request: ActionRequest, pass_value: str | None) -> dict[str, Any]:
    """The reveal page: the pass in groups and spelt out, how often it works, until when."""
    result = action_request.result or {}
    params = action_request.params or {}
    usable_once = result.get("usable_once", params.get("usable_once", True))
    return {
        "ar": action_request,
        "pass_value": pass_value,
        "groups": tap_groups(pass_value or ""),
        "spelling": tap_spelling(pass_value or ""),
        "usable_once": bool(usable_once),
        "lifetime": result.get("lifetime_minutes", params.get("lifetime_minutes")),
        "valid_from": _when(result.get("valid_from")),
        "valid_until": _when(result.get("valid_until")),
        "time_zone": settings.TIME_ZONE,
    }


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
    response = render(request, "mfa/tap_reveal.html", _tap_context(action_request, pass_value))
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    response["Pragma"] = "no-cache"
    return response
