"""Search and the person page: who the person is, their methods, MFA state, roles and tier,
recent requests, the caller verification and the actions this agent may take."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.roles import REQUESTER_ROLES, role_required
from graph.errors import GraphError
from mfa import policy, selectors
from mfa.forms import SEARCH_MAX_LENGTH, CheckCodeForm, ManualCheckForm, SendCodeForm
from mfa.mailbox import mailbox_active
from mfa.search import people_search
from mfa.verification import (
    code_destinations,
    verification_current,
    verification_pending,
    verification_valid_until,
)
from mfa.views.pages import graph_problem, is_htmx, profile_or_problem
from portal.graph_client import get_graph_client


@require_GET
@role_required(*REQUESTER_ROLES)
def user_search(request: HttpRequest) -> HttpResponse:
    """``/users/?q=``: the whole page, or (for htmx) the results fragment.

    Answers 400 for input longer than SEARCH_MAX_LENGTH or refused by the OData quoting, 503 when
    Graph throttles (with Retry-After) and 502 when Graph fails; each with a message.
    """
    raw = request.GET.get("q", "")
    q = raw.strip()
    context: dict[str, Any] = {
        "q": q[:SEARCH_MAX_LENGTH],
        "max_length": SEARCH_MAX_LENGTH,
        "results": (),
        "count": None,
        "problem": None,
    }
    status = 200
    if len(raw) > SEARCH_MAX_LENGTH:
        status = 400
        context["problem"] = {
            "state": "too-long",
            "level": "error",
            "title": "That search is too long.",
            "text": f"Type at most {SEARCH_MAX_LENGTH} characters: a name, a UPN or an email "
            "address.",
        }
    elif q:
        try:
            answer = people_search(get_graph_client(), q)
        except ValueError as exc:
            status = 400
            context["problem"] = {
                "state": "refused",
                "level": "error",
                "title": "The portal cannot search for that.",
                "text": str(exc).capitalize() + ".",
            }
        except GraphError as exc:
            context["problem"] = graph_problem(exc, what="The search")
            status = 503 if context["problem"]["state"] == "throttled" else 502
        else:
            context["results"] = answer.rows
            context["count"] = answer.count
    template = "mfa/_search_results.html" if is_htmx(request) else "mfa/search.html"
    response = render(request, template, context, status=status)
    if context["problem"] and context["problem"].get("retry_after"):
        response["Retry-After"] = str(context["problem"]["retry_after"])
    # The same URL answers a fragment to htmx and a page to a browser: caches must keep both.
    response["Vary"] = "HX-Request"
    return response


def _verification_context(request: HttpRequest, profile: policy.TargetProfile) -> dict[str, Any]:
    """The caller-verification panel of the person page: its state and its three forms."""
    current = verification_current(agent=request.user, target_id=profile.user.id)
    pending = verification_pending(agent=request.user, target_id=profile.user.id)
    return {
        "verification": current,
        "verification_until": verification_valid_until(current) if current else None,
        "pending": pending,
        "send_form": SendCodeForm(destinations=code_destinations(profile)),
        "check_form": CheckCodeForm(initial={"verification": pending.pk} if pending else None),
        "manual_form": ManualCheckForm(),
        "mailbox_url": reverse("mfa:mailbox") if mailbox_active() else "",
    }


@require_GET
@role_required(*REQUESTER_ROLES)
def user_detail(request: HttpRequest, oid: str) -> HttpResponse:
    """``/users/<oid>/``: the person page (``mfa.selectors.person_page``) with the caller
    verification panel; Http404 for an unknown person, a 502/503 page when reading them fails."""
    found = profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    page = selectors.person_page(get_graph_client(), agent=request.user, profile=found)
    context = {**page.context(), **_verification_context(request, found)}
    return render(request, "mfa/user_detail.html", context)


@require_GET
@role_required(*REQUESTER_ROLES)
def user_entra_events(request: HttpRequest, oid: str) -> HttpResponse:
    """The person's recent Entra audit events (a fragment the person page loads lazily); a Graph
    failure shows in the fragment."""
    try:
        events = selectors.entra_events(get_graph_client(), target_id=oid)
    except ValueError as exc:
        raise Http404("No such person") from exc
    context = {"entra_events": events.rows, "entra_error": events.error}
    return render(request, "mfa/_entra_events.html", context)
