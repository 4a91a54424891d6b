"""The helpdesk pages: search, the person page, caller verification, actions, requests,
approvals and the demo mailbox.

Each view is short: a role decorator, a ``_get_..._for_user`` rule from ``mfa.permissions``, one
service call, then a redirect or a page / htmx fragment. Graph failures are shown with Graph's
code and request-id, never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.role_admin import approval_refusal
from accounts.roles import role_required
from graph import audit_logs as graph_audit
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph.errors import GraphError, GraphNotFound, GraphThrottled
from graph.results import AuthenticationMethod, SignInPreferences
from mfa import policy, services
from mfa.forms import (
    ACTION_FORMS,
    METHOD_NAMES,
    SEARCH_MAX_LENGTH,
    CheckCodeForm,
    DecisionForm,
    ManualCheckForm,
    RateOverrideForm,
    SendCodeForm,
)
from mfa.mailbox import mailbox_active
from mfa.models import ActionKind, ActionRequest, MailboxMessage, Status
from mfa.overrides import OVERRIDE_MINUTES, rate_override_for, rate_override_grant
from mfa.permissions import (
    ACT_ROLES,
    APPROVE_ROLES,
    _get_pending_verification_for_user,
    _get_request_for_user,
    _get_request_to_decide_for_user,
    _get_tap_request_for_user,
    can_cancel,
    can_decide,
    can_reveal_tap,
    can_see_all_requests,
    can_see_request,
)
from mfa.search import people_search
from mfa.tap_vault import tap_available
from mfa.verification import (
    VerificationFailed,
    code_destinations,
    verification_check_code,
    verification_current,
    verification_pending,
    verification_record_manual,
    verification_send_code,
    verification_valid_until,
)
from portal.graph_client import get_graph_client

T = TypeVar("T")

ENTRA_EVENTS_TOP = 10
ENTRA_EVENTS_CACHE_SECONDS = 60
KIND_HELP: dict[str, str] = {
    ActionKind.REREGISTER: (
        "Removes every sign-in method that can be removed (the default last), then checks what "
        "is left. At the next sign-in the person registers again."
    ),
    ActionKind.REVOKE_SESSIONS: (
        "Signs the person out of every session. It can take a few minutes to reach every app."
    ),
    ActionKind.ISSUE_TAP: (
        "Creates a Temporary Access Pass the caller can sign in with to register new methods. "
        "You will see it once, on the request page."
    ),
    ActionKind.SET_MFA_STATE: "Changes the legacy per-user MFA state (Graph beta).",
    ActionKind.DELETE_METHOD: "Removes one registered method.",
}
PARAM_LABELS: dict[str, str] = {
    "revoke_sessions": "Also revoke sessions",
    "lifetime_minutes": "Lifetime (minutes)",
    "usable_once": "One-time use",
    "state": "New state",
    "method_label": "Method",
}


def _is_htmx(request: HttpRequest) -> bool:
    # A history restore asks for the whole page even though htmx sends it.
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def _graph_problem(exc: GraphError, *, what: str) -> dict[str, Any]:
    """A Graph failure as the templates show it: a title, a sentence, code and request-id."""
    if exc.code == "BudgetUnavailable":
        # Not Graph: the portal's own Redis (shared budget, queue) is down. Nothing was sent.
        return {
            "state": "unavailable",
            "level": "error",
            "title": f"{what} could not start.",
            "text": "The portal cannot reach its queue and shared Graph budget (Redis) right "
            "now, so nothing was recorded and nothing was sent to Microsoft. Try again in a "
            "minute; if it keeps happening, tell the portal's administrators.",
            "code": exc.code,
            "message": exc.message,
            "request_id": exc.request_id,
        }
    if isinstance(exc, GraphThrottled):
        wait = math.ceil(exc.retry_after) if exc.retry_after else None
        text = "Microsoft Graph is busy right now" + (
            f": try again in {wait} seconds." if wait else ": try again in a moment."
        )
        return {
            "state": "throttled",
            "level": "warning",
            "title": f"{what} is held back by Graph's throttling.",
            "text": text,
            "code": exc.code,
            "message": exc.message,
            "request_id": exc.request_id,
            "retry_after": wait,
        }
    return {
        "state": "failed",
        "level": "error",
        "title": f"{what} failed.",
        "text": "Microsoft Graph answered with an error. If it keeps happening, report the "
        "code and request-id below.",
        "code": exc.code,
        "message": exc.message,
        "request_id": exc.request_id,
    }


def _graph_problem_response(request: HttpRequest, exc: GraphError, *, what: str) -> HttpResponse:
    problem = _graph_problem(exc, what=what)
    status = 502 if problem["state"] == "failed" else 503
    response = render(request, "mfa/graph_problem.html", {"problem": problem}, status=status)
    if problem.get("retry_after"):
        response["Retry-After"] = str(problem["retry_after"])
    return response


def _read(call: Callable[[], T]) -> tuple[T | None, GraphError | None]:
    """Run one Graph read for a section of a page: its value, or the error to show there."""
    try:
        return call(), None
    except GraphError as exc:
        return None, exc


def _profile_or_problem(
    request: HttpRequest, oid: str, *, use_cache: bool = True
) -> policy.TargetProfile | HttpResponse:
    """The person's TargetProfile; Http404 for an unknown person; a 502/503 page when Graph
    fails."""
    try:
        return policy.target_profile(get_graph_client(), oid, use_cache=use_cache)
    except (GraphNotFound, ValueError) as exc:
        raise Http404("No such person in the directory") from exc
    except GraphError as exc:
        return _graph_problem_response(request, exc, what="Reading this person")


# --- search ---------------------------------------------------------------------------------


@require_GET
@role_required(*ACT_ROLES)
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
            context["problem"] = _graph_problem(exc, what="The search")
            status = 503 if context["problem"]["state"] == "throttled" else 502
        else:
            context["results"] = answer.rows
            context["count"] = answer.count
    template = "mfa/_search_results.html" if _is_htmx(request) else "mfa/search.html"
    response = render(request, template, context, status=status)
    if context["problem"] and context["problem"].get("retry_after"):
        response["Retry-After"] = str(context["problem"]["retry_after"])
    # The same URL answers a fragment to htmx and a page to a browser: caches must keep both.
    response["Vary"] = "HX-Request"
    return response


# --- the person page ------------------------------------------------------------------------


def _method_rows(
    methods: list[AuthenticationMethod], default_id: str | None
) -> list[dict[str, Any]]:
    return [
        {
            "method": m,
            "name": METHOD_NAMES.get(m.kind.type_name, m.odata_type or "Unknown method"),
            "is_default": m.id == default_id,
        }
        for m in methods
    ]


def _verification_context(request: HttpRequest, profile: policy.TargetProfile) -> dict[str, Any]:
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


def _with_viewable(user: Any, requests: list[ActionRequest]) -> list[ActionRequest]:
    for item in requests:
        item.viewable = can_see_request(user, item)  # type: ignore[attr-defined]
    return requests


@require_GET
@role_required(*ACT_ROLES)
def user_detail(request: HttpRequest, oid: str) -> HttpResponse:
    """``/users/<oid>/``: who the person is, their methods, MFA state, roles and tier, recent
    requests, the caller verification and the actions this agent may take."""
    found = _profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    profile = found
    client = get_graph_client()
    methods, methods_error = _read(lambda: graph_methods.list_methods(client, profile.user.id))
    # The default method comes from beta signInPreferences (graph/requirements.py says why not
    # the v1.0 report). Only worth a call of the small reports budget when there are methods.
    preferences: SignInPreferences | None = None
    preferences_error: GraphError | None = None
    if methods:
        preferences, preferences_error = _read(
            lambda: graph_requirements.get_sign_in_preferences(client, profile.user.id)
        )
    default_id = graph_requirements.default_method_id(methods or [], preferences)
    mfa_state, mfa_error = _read(
        lambda: graph_requirements.get_per_user_mfa_state(client, profile.user.id)
    )
    verification = _verification_context(request, profile)
    allowed = policy.allowed_actions(request.user, profile)
    actions = [
        {
            "kind": kind,
            "label": ActionKind(kind).label,
            "url": reverse("mfa:action_form", args=[profile.user.id, kind]),
            "needs_verification": ActionKind.needs_verification(kind),
        }
        for kind in allowed
    ]
    no_action_reason = ""
    if not allowed:
        # Say why (own account, guest, Entra's tiering) instead of showing an empty section.
        try:
            policy.check_may_request(request.user, profile, ActionKind.REVOKE_SESSIONS)
        except policy.PolicyError as exc:
            no_action_reason = exc.message
    recent = list(ActionRequest.objects.for_target(profile.user.id)[:10])
    return render(
        request,
        "mfa/user_detail.html",
        {
            "profile": profile,
            "methods": _method_rows(methods or [], default_id),
            "methods_error": methods_error,
            "preferences": preferences,
            "preferences_error": preferences_error,
            "default_known": default_id is not None,
            "mfa_state": mfa_state,
            "mfa_error": mfa_error,
            "actions": actions,
            "no_action_reason": no_action_reason,
            "approval_needed": policy.needs_approval(profile),
            "recent_requests": _with_viewable(request.user, recent),
            **verification,
        },
    )


@require_GET
@role_required(*ACT_ROLES)
def user_entra_events(request: HttpRequest, oid: str) -> HttpResponse:
    """The person's recent Entra audit events (a fragment the person page loads lazily).

    Read at ``sync`` priority, so it never takes budget an agent's action needs, and cached for a
    minute: the same person's page is often reloaded during one call.
    """
    key = f"mfa:entra-events:{oid}"
    events = cache.get(key)
    error: GraphError | None = None
    if events is None:
        try:
            page = graph_audit.directory_audits_page(
                get_graph_client().with_priority("sync"), target_id=oid, top=ENTRA_EVENTS_TOP
            )
        except ValueError as exc:
            raise Http404("No such person") from exc
        except GraphError as exc:
            error = exc
        else:
            # Plain values: Graph's typed result keeps read-only JSON that does not pickle.
            events = [
                {
                    "when": event.activity_date_time,
                    "activity": event.activity_display_name,
                    "by": (
                        event.initiated_by_user.user_principal_name
                        or event.initiated_by_user.display_name
                        if event.initiated_by_user
                        else f"app {event.initiated_by_app.display_name}"
                        if event.initiated_by_app
                        else "unknown"
                    ),
                    "result": event.result or "",
                }
                for event in page.items
            ]
            cache.set(key, events, timeout=ENTRA_EVENTS_CACHE_SECONDS)
    return render(
        request, "mfa/_entra_events.html", {"entra_events": events or [], "entra_error": error}
    )


# --- caller verification --------------------------------------------------------------------


def _back_to_verify(oid: str) -> HttpResponse:
    return redirect(reverse("mfa:user_detail", args=[oid]) + "#verify")


@require_POST
@role_required(*ACT_ROLES)
def verify_send(request: HttpRequest, oid: str) -> HttpResponse:
    """Email a one-time code to the person's manager or alternate address."""
    found = _profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    form = SendCodeForm(request.POST, destinations=code_destinations(found))
    if not form.is_valid():
        messages.error(request, "Choose where to send the code.")
        return _back_to_verify(oid)
    try:
        verification = verification_send_code(
            agent=request.user,
            profile=found,
            destination=form.cleaned_data["destination"],
            http_request=request,
        )
    except VerificationFailed as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Code sent to {verification.sent_to_masked}. Ask the caller to read it back.",
        )
    return _back_to_verify(oid)


@require_POST
@role_required(*ACT_ROLES)
def verify_check(request: HttpRequest, oid: str) -> HttpResponse:
    """Check the code the caller read back."""
    form = CheckCodeForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return _back_to_verify(oid)
    verification = _get_pending_verification_for_user(
        request.user, oid, form.cleaned_data["verification"]
    )
    try:
        verification_check_code(
            verification=verification,
            agent=request.user,
            code=form.cleaned_data["code"],
            http_request=request,
        )
    except VerificationFailed as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Caller verified. You can act now.")
        return redirect(reverse("mfa:user_detail", args=[oid]) + "#actions")
    return _back_to_verify(oid)


@require_POST
@role_required(*ACT_ROLES)
def verify_manual(request: HttpRequest, oid: str) -> HttpResponse:
    """Record a manual check with the agent's evidence."""
    found = _profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    form = ManualCheckForm(request.POST)
    if not form.is_valid():
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            for error in errors:
                messages.error(request, f"{label}: {error}" if label else str(error))
        return _back_to_verify(oid)
    try:
        verification_record_manual(
            agent=request.user,
            profile=found,
            check=form.cleaned_data["check"],
            evidence=form.cleaned_data["evidence"],
            http_request=request,
        )
    except VerificationFailed as exc:
        messages.error(request, exc.message)
        return _back_to_verify(oid)
    messages.success(request, "Manual check recorded. You can act now.")
    return redirect(reverse("mfa:user_detail", args=[oid]) + "#actions")


# --- actions --------------------------------------------------------------------------------


def _form_extras(kind: str, profile: policy.TargetProfile) -> dict[str, Any]:
    """Graph facts an action form needs (TAP policy, the methods to choose from).

    Raises GraphError when Graph cannot give them.
    """
    client = get_graph_client()
    if kind == ActionKind.ISSUE_TAP:
        return {"tap_policy": policy.tap_policy(client)}
    if kind == ActionKind.DELETE_METHOD:
        return {"methods": graph_methods.list_methods(client, profile.user.id)}
    return {}


@require_http_methods(["GET", "POST"])
@role_required(*ACT_ROLES)
def action_form(request: HttpRequest, oid: str, kind: str) -> HttpResponse:
    """The form of one action. A valid POST makes (or, for a repeated token, finds) the request
    and redirects to its page; a refusal by the policy is shown above the form."""
    form_class = ACTION_FORMS.get(kind)
    if form_class is None:
        raise Http404("No such action")
    # The tier decides whether a second person must approve: read it afresh before deciding.
    found = _profile_or_problem(request, oid, use_cache=request.method == "GET")
    if isinstance(found, HttpResponse):
        return found
    profile = found
    try:
        policy.check_may_request(request.user, profile, kind)
    except policy.PolicyError as exc:
        raise PermissionDenied(exc.message) from exc
    try:
        extras = _form_extras(kind, profile)
    except GraphError as exc:
        return _graph_problem_response(request, exc, what="Preparing this form")
    verification = verification_current(agent=request.user, target_id=profile.user.id)
    policy_error = ""
    if request.method == "POST":
        form = form_class(request.POST, **extras)
        if form.is_valid():
            # One that has just expired still goes to the service, whose refusal then says
            # "too old, verify again" instead of "missing".
            backing = verification or verification_current(
                agent=request.user, target_id=profile.user.id, include_expired=True
            )
            try:
                action_request = services.action_request_create(
                    agent=request.user,
                    profile=profile,
                    kind=kind,
                    reason=form.cleaned_data["reason"],
                    ticket=form.cleaned_data["ticket"],
                    params=form.params(),
                    verification=backing,
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    http_request=request,
                    rate_override_by=rate_override_for(request.user),
                )
            except policy.PolicyError as exc:
                policy_error = exc.message
            else:
                return redirect("mfa:request_detail", action_request.public_id)
    else:
        form = form_class(**extras)
    response = render(
        request,
        "mfa/action_form.html",
        {
            "profile": profile,
            "form": form,
            "kind": kind,
            "kind_label": ActionKind(kind).label,
            "kind_help": KIND_HELP.get(kind, ""),
            "needs_verification": ActionKind.needs_verification(kind),
            "verification": verification,
            "verification_until": verification_valid_until(verification) if verification else None,
            "max_age": settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES,
            "approval_needed": policy.needs_approval(profile),
            "policy_error": policy_error,
        },
        status=409 if policy_error else (400 if request.method == "POST" else 200),
    )
    return response


# --- requests -------------------------------------------------------------------------------


@require_GET
@role_required(*ACT_ROLES)
def request_list(request: HttpRequest) -> HttpResponse:
    """``/requests/``: my requests; leads and admins may add ``?all=1``; ``?status=`` filters."""
    can_all = can_see_all_requests(request.user)
    show_all = can_all and request.GET.get("all") == "1"
    requests = (
        ActionRequest.objects.all()
        if show_all
        else ActionRequest.objects.filter(requester_id=request.user.pk)
    )
    status = request.GET.get("status", "")
    if status in Status.values:
        requests = requests.filter(status=status)
    rows = _with_viewable(request.user, list(requests[:200]))
    return render(
        request,
        "mfa/request_list.html",
        {
            "requests": rows,
            "can_see_all": can_all,
            "show_all": show_all,
            "status": status,
            "statuses": Status.choices,
        },
    )


def _params_for_display(action_request: ActionRequest) -> list[tuple[str, str]]:
    shown: list[tuple[str, str]] = []
    params: dict[str, Any] = action_request.params or {}
    for key, label in PARAM_LABELS.items():
        if key in params:
            value = params[key]
            text = "yes" if value is True else "no" if value is False else str(value)
            shown.append((label, text))
    return shown


def _status_context(request: HttpRequest, action_request: ActionRequest) -> dict[str, Any]:
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
@role_required(*ACT_ROLES)
def request_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """One request. htmx polls it for the live status fragment until the request is final."""
    action_request = _get_request_for_user(request.user, public_id)
    context = _status_context(request, action_request)
    if _is_htmx(request):
        response = render(request, "mfa/_request_status.html", context)
    else:
        context.update(
            {
                "params": _params_for_display(action_request),
            }
        )
        response = render(request, "mfa/request_detail.html", context)
    response["Vary"] = "HX-Request"
    # A page that may offer a pass's reveal button must not be served from a cache later.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(*ACT_ROLES)
def request_cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    action_request = _get_request_for_user(request.user, public_id)
    if not can_cancel(request.user, action_request):
        raise PermissionDenied("This request can no longer be cancelled by you.")
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
@role_required(*ACT_ROLES)
def request_tap(request: HttpRequest, public_id: str) -> HttpResponse:
    """Reveal a Temporary Access Pass, once, to its requester (POST). The answer is ``no-store``;
    a reload (GET) shows that the pass is gone."""
    action_request = _get_tap_request_for_user(request.user, public_id)
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


# --- approvals ------------------------------------------------------------------------------


def _override_choices(lead: Any) -> list[tuple[str, str]]:
    """Agents who made requests in the rate window (the only ones an override can help)."""
    since = timezone.now() - timedelta(minutes=settings.PORTAL_AGENT_RATE_WINDOW_MINUTES)
    rows = (
        ActionRequest.objects.filter(created_at__gte=since)
        .exclude(requester=lead)
        .values("requester", "requester_name")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    limit = settings.PORTAL_AGENT_RATE_LIMIT
    return [
        (str(row["requester"]), f"{row['requester_name']} ({row['n']} of {limit})") for row in rows
    ]


@require_GET
@role_required(*APPROVE_ROLES)
def approvals(request: HttpRequest) -> HttpResponse:
    """Requests waiting for a decision, with full context, and the rate-override form."""
    waiting = (
        ActionRequest.objects.filter(status=Status.AWAITING_APPROVAL)
        .select_related("verification")
        .order_by("created_at")
    )
    items = [
        {
            "ar": ar,
            "own": not can_decide(request.user, ar),
            # Role administration (issue 5): why approval is no longer possible, if it is not.
            "blocked": approval_refusal(ar.requester, privileged=ar.is_privileged),
            "params": _params_for_display(ar),
            "form": DecisionForm(prefix=f"d{ar.pk}"),
        }
        for ar in waiting
    ]
    return render(
        request,
        "mfa/approvals.html",
        {
            "waiting": items,
            "override_form": RateOverrideForm(agents=_override_choices(request.user)),
            "rate_limit": settings.PORTAL_AGENT_RATE_LIMIT,
            "rate_window": settings.PORTAL_AGENT_RATE_WINDOW_MINUTES,
            "override_minutes": OVERRIDE_MINUTES,
        },
    )


@require_POST
@role_required(*APPROVE_ROLES)
def approval_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """Approve or reject (``decision``) with a comment."""
    action_request = _get_request_to_decide_for_user(request.user, public_id)
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


@require_POST
@role_required(*APPROVE_ROLES)
def rate_override(request: HttpRequest) -> HttpResponse:
    """A lead lets one agent past the rate limit for a short while."""
    form = RateOverrideForm(request.POST, agents=_override_choices(request.user))
    if not form.is_valid():
        messages.error(request, "Choose the agent and say why.")
        return redirect("mfa:approvals")
    agent = get_user_model().objects.get(pk=int(form.cleaned_data["agent"]))
    try:
        rate_override_grant(
            lead=request.user,
            agent=agent,
            comment=form.cleaned_data["comment"],
            http_request=request,
        )
    except policy.PolicyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Override granted for the next {OVERRIDE_MINUTES} minutes.")
    return redirect("mfa:approvals")


# --- demo mailbox ---------------------------------------------------------------------------


@require_GET
@role_required()
def mailbox(request: HttpRequest) -> HttpResponse:
    """``/mailbox/``: the emails the demo kept instead of sending (404 outside the demo)."""
    if not mailbox_active():
        raise Http404("The mailbox exists only in the demo")
    return render(
        request,
        "mfa/mailbox.html",
        {"messages_list": MailboxMessage.objects.all()[:50]},
    )
