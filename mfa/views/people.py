"""Search and the person page: who the person is, roles and tier, recent requests, the caller
verification and the actions this agent may take (the shell, drawn at once), and its panels:
methods and per-user MFA (fragments that may wait for Graph's budget), the Entra events (local
audit cache) with "sync this person now", and Refresh."""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST
from kombu.exceptions import OperationalError

from accounts.roles import REQUESTER_ROLES, role_required
from audit import sync as audit_sync
from audit import tasks as audit_tasks
from graph.errors import GraphError
from mfa import escalations, panels, person_cache, policy, selectors
from mfa.forms import SEARCH_MAX_LENGTH, CheckCodeForm, ManualCheckForm, SendCodeForm
from mfa.mailbox import mailbox_active
from mfa.search import people_search
from mfa.verification import code_destinations, verification_state, verification_valid_until
from mfa.views.pages import graph_problem, is_htmx, profile_or_problem
from portal.graph_client import get_graph_client

logger = logging.getLogger(__name__)

PANEL_TITLES = {panels.METHODS_PANEL: "Sign-in methods", panels.MFA_PANEL: "Per-user MFA"}
# While "sync this person now" runs, the events panel asks again this often (seconds).
ENTRA_SYNC_POLL_SECONDS = 2


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


@functools.lru_cache(maxsize=4)
def _manual_check_fields(checks: tuple[str, ...]) -> SafeString:
    """The manual check's fields, unbound (their choices are ``checks``, PORTAL_MANUAL_CHECKS):
    the same on every person page, so drawn once per process. Their widget templates (a radio
    button each) were about a tenth of the page's CPU."""
    html = render_to_string("mfa/_manual_check_fields.html", {"manual_form": ManualCheckForm()})
    return mark_safe(html)  # noqa: S308 - our own template's output, escaped by it


def _verification_context(request: HttpRequest, profile: policy.TargetProfile) -> dict[str, Any]:
    """The caller-verification panel of the person page: its state and its three forms."""
    current, pending = verification_state(agent=request.user, target_id=profile.user.id)
    return {
        "verification": current,
        "verification_until": verification_valid_until(current) if current else None,
        "pending": pending,
        # The choices SendCodeForm validates a send against (mfa/_code_destinations.html).
        "code_choices": SendCodeForm.choices_for(code_destinations(profile)),
        "check_form": CheckCodeForm(initial={"verification": pending.pk} if pending else None),
        "manual_fields": _manual_check_fields(tuple(settings.PORTAL_MANUAL_CHECKS)),
        "mailbox_url": reverse("mfa:mailbox") if mailbox_active() else "",
    }


def _agent_key(user: Any) -> str:
    """The agent's fair-share key in the Graph budget: their Entra object id."""
    profile = getattr(user, "portal_profile", None)
    return str(getattr(profile, "oid", "") or getattr(user, "username", ""))


def _entra_context(request: HttpRequest, oid: str) -> dict[str, Any]:
    events = selectors.entra_events(viewer=request.user, target_id=oid)
    return {
        "oid": oid,
        "entra_events": events.rows,
        "entra_synced_at": events.synced_at,
        "entra_sync_pending": audit_sync.person_sync_pending(oid),
        "entra_retry_seconds": ENTRA_SYNC_POLL_SECONDS,
    }


@require_GET
@role_required(*REQUESTER_ROLES)
def user_detail(request: HttpRequest, oid: str) -> HttpResponse:
    """``/users/<oid>/``: the person page's shell (``mfa.selectors.person_shell``: identity-class
    data only) with the caller verification panel and the Entra events from the local cache; the
    methods and per-user MFA panels load as fragments (:func:`user_panel`). Http404 for an
    unknown person, a 502/503 page when reading them fails."""
    found = profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    shell = selectors.person_shell(agent=request.user, profile=found)
    context = {
        **shell.context(),
        # An agent without PAA on a privileged person: "Escalate to ..." (mfa.escalations).
        "escalation": escalations.escalation_notice(request.user, found),
        **_verification_context(request, found),
        **_entra_context(request, found.user.id),
        # The per-user MFA panel loads by itself when the cache holds the state (no Graph
        # call); else it is read when the agent asks.
        "mfa_on_demand": not person_cache.holds(found.user.id, person_cache.MFA_STATE),
    }
    return render(request, "mfa/user_detail.html", context)


@require_GET
@role_required(*REQUESTER_ROLES)
def user_panel(request: HttpRequest, oid: str, panel: str) -> HttpResponse:
    """``/users/<oid>/panels/<methods|mfa>/``: one Graph panel of the person page
    (``mfa.panels.person_panel``): from the cache, read now, or waiting for the budget (the
    panel says how long and asks again by itself); ``?default=1``: the methods with the default
    method. A fragment for the page's script; a page of its own without it."""
    shown = panels.person_panel(
        get_graph_client(),
        oid=oid,
        panel=panel,
        agent_key=_agent_key(request.user),
        # "Show the default method": the methods panel with the sign-in preferences read too.
        with_default=request.GET.get("default") == "1",
    )
    context = shown.context()
    template = f"mfa/_panel_{panel}.html"
    if not is_htmx(request):
        context.update(panel_template=template, title=PANEL_TITLES[panel])
        template = "mfa/panel_page.html"
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    # What a panel shows changes with the cache and the budget: never keep it.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(*REQUESTER_ROLES)
def user_panels_refresh(request: HttpRequest, oid: str) -> HttpResponse:
    """Refresh: forget what the portal holds about the person's methods, default method and MFA
    state (``mfa.person_cache.forget``) and reload the page, whose panels then read Graph."""
    person_cache.forget(oid)
    return redirect(reverse("mfa:user_detail", args=[oid]) + "#panels")


@require_GET
@role_required(*REQUESTER_ROLES)
def user_entra_events(request: HttpRequest, oid: str) -> HttpResponse:
    """The person's recent Entra events from the local audit cache (no Graph call): the panel
    the page's script fetches again while a "sync this person now" runs."""
    response = render(request, "mfa/_panel_entra.html", _entra_context(request, oid))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(*REQUESTER_ROLES)
def user_entra_sync(request: HttpRequest, oid: str) -> HttpResponse:
    """ "Sync this person now": queue the read of the person's newest Entra events into the local
    cache (``audit.tasks.entra_audit_sync_person``, for this agent at interactive priority) and
    go back to the page, whose events panel fills in when the task has run."""
    if audit_sync.person_sync_pending(oid):
        # One is queued already: a second press would spend the reports budget again.
        return redirect(reverse("mfa:user_detail", args=[oid]) + "#entra-title")
    audit_sync.person_sync_mark(oid)
    agent_key = _agent_key(request.user)

    def enqueue() -> None:
        try:
            audit_tasks.entra_audit_sync_person.apply_async(
                args=(oid, agent_key), queue="interactive"
            )
        except OperationalError:
            logger.exception("could not queue the audit sync of %s", oid)
            audit_sync.person_sync_forget(oid)
            messages.error(request, "The portal's queue cannot be reached: try again shortly.")

    transaction.on_commit(enqueue)
    messages.info(request, "Reading this person's events from Entra: the panel fills in.")
    return redirect(reverse("mfa:user_detail", args=[oid]) + "#entra-title")
