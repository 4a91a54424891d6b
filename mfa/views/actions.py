"""The form of one action on one person: a valid POST makes the request and goes to its page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.roles import REQUESTER_ROLES, role_required
from graph import GraphClient
from graph.errors import GraphError
from mfa import escalations, person_cache, policy, services
from mfa.forms import ACTION_FORMS
from mfa.models import ActionKind
from mfa.verification import (
    verification_carried_request,
    verification_current,
    verification_valid_until,
)
from mfa.views.pages import graph_problem_response, profile_or_problem
from portal.graph_client import get_graph_client

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


def form_extras(
    client: GraphClient, *, kind: str, target_id: str, cached_only: bool = False
) -> dict[str, Any] | None:
    """What an action form needs from Graph, as keyword arguments of the form, from the caches
    the form's GET (or the person page) filled: the tenant's TAP policy (``policy.tap_policy``,
    cached ten minutes) and the person's methods (``mfa.person_cache``). When the person cache
    has lost the methods, they are read (one reports-class call), or with ``cached_only`` None is
    returned instead (the caller reads them after its policy check).

    The choice of a method to delete may come from the cache: the runner deletes it in Graph,
    which answers "not registered" for one that has gone meanwhile. The per-user MFA form gets
    the person's current state (``current_state``) from the cache, or None with
    ``cached_only``. Raises GraphError.
    """
    if kind == ActionKind.ISSUE_TAP:
        return {"tap_policy": policy.tap_policy(client)}
    if kind == ActionKind.SET_MFA_STATE:
        # The state in force now, for the form to show; never worth holding a POST back for.
        held = person_cache.cached(target_id)
        state = held.mfa_state if held is not None else None
        if state is None and not cached_only:
            state = person_cache.load(client, target_id, parts=(person_cache.MFA_STATE,)).mfa_state
        return {"current_state": state}
    if kind == ActionKind.DELETE_METHOD:
        held = person_cache.cached(target_id)
        if held is None or held.methods is None:
            if cached_only:
                return None
            held = person_cache.load(client, target_id, parts=(person_cache.METHODS,))
        return {"methods": list(held.methods or ())}
    return {}


@require_http_methods(["GET", "POST"])
@role_required(*REQUESTER_ROLES)
def action_form(request: HttpRequest, oid: str, kind: str) -> HttpResponse:
    """The form of one action. A valid POST makes (or, for a repeated token, finds) the request
    and redirects to its page; a refusal by the policy is shown above the form (409).

    Graph calls. A POST is validated first, from the caches of ``form_extras``. One that fails
    validation is answered from the cached profile: no Graph call while the profile is cached
    (PORTAL_TARGET_CACHE_SECONDS), else the profile's identity-class reads. A valid one reads the
    person's profile afresh, once, because the tier decides whether a second person must
    approve: identity-class calls only (the person, manager, memberships, role assignments and
    eligibilities, the portal's app role assignments). No POST makes a reports-class call, except
    "Delete one method" when the person cache lost the methods (one read, after the policy
    check): the runner reads what it needs fresh, before it writes.
    """
    form_class = ACTION_FORMS.get(kind)
    if form_class is None:
        raise Http404("No such action")
    client = get_graph_client()
    posted = request.method == "POST"
    form = None
    try:
        extras = form_extras(client, kind=kind, target_id=oid, cached_only=True)
    except GraphError as exc:
        return graph_problem_response(request, exc, what="Preparing this form")
    if posted and extras is not None:
        form = form_class(request.POST, **extras)
    # The tier decides whether a second person must approve: read it afresh for a valid POST.
    found = profile_or_problem(request, oid, use_cache=not (form is not None and form.is_valid()))
    if isinstance(found, HttpResponse):
        return found
    profile = found
    try:
        policy.check_may_request(request.user, profile, kind)
    except policy.PolicyError as exc:
        raise PermissionDenied(exc.message) from exc
    if extras is None:
        # The methods to choose from are no longer cached: read them, now that the agent may act.
        try:
            extras = form_extras(client, kind=kind, target_id=profile.user.id) or {}
        except GraphError as exc:
            return graph_problem_response(request, exc, what="Preparing this form")
        if posted:
            form = form_class(request.POST, **extras)
            if form.is_valid():
                fresh = profile_or_problem(request, oid, use_cache=False)
                if isinstance(fresh, HttpResponse):
                    return fresh
                profile = fresh
                try:
                    policy.check_may_request(request.user, profile, kind)
                except policy.PolicyError as exc:
                    raise PermissionDenied(exc.message) from exc
    if not posted and kind == ActionKind.SET_MFA_STATE and extras.get("current_state") is None:
        # The form shows the state in force now: read it (the person page's panel usually has).
        try:
            extras = form_extras(client, kind=kind, target_id=profile.user.id) or extras
        except GraphError:
            pass  # the form says the state is not known
    verification = verification_current(agent=request.user, target_id=profile.user.id)
    # Carry the call: the ticket and reason of the agent's last request on this person under the
    # same verification fill the next form.
    carried = (
        verification_carried_request(verification=verification)
        if verification is not None and not posted
        else None
    )
    # The agent did this to this person moments ago (two tabs, a second click on a fresh form):
    # say so before they submit, and ask for a confirmation with a reason.
    repeat_of = policy.recent_success(request.user, target_id=profile.user.id, kind=kind)
    policy_error = ""
    if form is None:
        initial = {"reason": carried.reason, "ticket": carried.ticket} if carried else None
        form = form_class(initial=initial, **extras)
    elif form.is_valid():
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
                repeat_reason=form.confirmed_repeat_reason(),
            )
        except policy.RepeatNeedsConfirmation as exc:
            policy_error = exc.message
            repeat_of = exc.previous
        except policy.PolicyError as exc:
            policy_error = exc.message
        else:
            return redirect("mfa:request_detail", action_request.public_id)
    # The tier, and the kind's own rule (e.g. a TAP backed only by a manual check).
    approval_reasons = policy.approval_reasons(
        profile, kind, request.POST if request.method == "POST" else None, verification
    )
    return render(
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
            "approval_needed": bool(approval_reasons),
            "approval_reasons": approval_reasons,
            "policy_error": policy_error,
            "carried": carried,
            # An agent without PAA on a privileged person: the request goes to a PAA holder.
            "escalation": escalations.escalation_notice(request.user, profile),
            "repeat_of": repeat_of,
            "repeat_window": settings.PORTAL_REPEAT_WINDOW_MINUTES,
        },
        status=409 if policy_error else (400 if request.method == "POST" else 200),
    )
