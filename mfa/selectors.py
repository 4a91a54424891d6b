"""What the helpdesk pages read: the person page, a person's recent Entra events, the Graph facts
an action form needs, the request list, the approvals queue and the agents an override can help.

Views call one of these and render what it returns, so a view never calls Graph or builds a query
itself. A Graph failure that spoils only one section of a page (the methods, the default method,
the MFA state, the Entra events) is returned beside that section, with Graph's code and
request-id, and the rest of the page still shows; a failure the page cannot do without is raised
(``GraphError``) for the view to turn into its 502/503 page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from graph import GraphClient
from graph import audit_logs as graph_audit
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph.errors import GraphError
from graph.results import AuthenticationMethod, PerUserMfaState, SignInPreferences
from mfa import policy
from mfa.forms import METHOD_NAMES
from mfa.models import ActionKind, ActionRequest, Status
from mfa.permissions import can_decide, can_see_all_requests, can_see_request

T = TypeVar("T")

ENTRA_EVENTS_TOP = 10
ENTRA_EVENTS_CACHE_SECONDS = 60
RECENT_REQUESTS_SHOWN = 10
REQUEST_LIST_LIMIT = 200
PARAM_LABELS: dict[str, str] = {
    "revoke_sessions": "Also revoke sessions",
    "lifetime_minutes": "Lifetime (minutes)",
    "usable_once": "One-time use",
    "state": "New state",
    "method_label": "Method",
}


def _read(call: Callable[[], T]) -> tuple[T | None, GraphError | None]:
    """Run one Graph read for a section of a page: its value, or the error to show there."""
    try:
        return call(), None
    except GraphError as exc:
        return None, exc


def with_viewable(user: Any, requests: list[ActionRequest]) -> list[ActionRequest]:
    """Mark each request with ``viewable``: whether ``user`` may open it (a row links or not)."""
    for item in requests:
        item.viewable = can_see_request(user, item)  # type: ignore[attr-defined]
    return requests


def params_for_display(action_request: ActionRequest) -> list[tuple[str, str]]:
    """The request's parameters as (label, text) rows, in PARAM_LABELS order."""
    shown: list[tuple[str, str]] = []
    params: dict[str, Any] = action_request.params or {}
    for key, label in PARAM_LABELS.items():
        if key in params:
            value = params[key]
            text = "yes" if value is True else "no" if value is False else str(value)
            shown.append((label, text))
    return shown


# --- the person page ------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonPage:
    """Everything the person page shows about one person, besides the caller verification.

    Each Graph section has its value or its error (``methods_error`` and so on); ``methods`` are
    rows of ``method``, ``name`` and ``is_default``; ``actions`` the actions the agent may take.
    """

    profile: policy.TargetProfile
    methods: list[dict[str, Any]]
    methods_error: GraphError | None
    preferences: SignInPreferences | None
    preferences_error: GraphError | None
    default_known: bool
    mfa_state: PerUserMfaState | None
    mfa_error: GraphError | None
    actions: list[dict[str, Any]]
    no_action_reason: str
    approval_needed: bool
    recent_requests: list[ActionRequest]

    def context(self) -> dict[str, Any]:
        """The template context of ``mfa/user_detail.html`` (without the verification part)."""
        return {
            "profile": self.profile,
            "methods": self.methods,
            "methods_error": self.methods_error,
            "preferences": self.preferences,
            "preferences_error": self.preferences_error,
            "default_known": self.default_known,
            "mfa_state": self.mfa_state,
            "mfa_error": self.mfa_error,
            "actions": self.actions,
            "no_action_reason": self.no_action_reason,
            "approval_needed": self.approval_needed,
            "recent_requests": self.recent_requests,
        }


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


def _actions(agent: Any, profile: policy.TargetProfile) -> tuple[list[dict[str, Any]], str]:
    """The actions ``agent`` may take on the person, and why there are none when there are none."""
    allowed = policy.allowed_actions(agent, profile)
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
            policy.check_may_request(agent, profile, ActionKind.REVOKE_SESSIONS)
        except policy.PolicyError as exc:
            no_action_reason = exc.message
    return actions, no_action_reason


def person_page(client: GraphClient, *, agent: Any, profile: policy.TargetProfile) -> PersonPage:
    """The person page of ``profile``'s person as ``agent`` sees it.

    Three Graph reads, in this order: the methods; the sign-in preferences (only when there are
    methods: it costs the small reports budget); the per-user MFA state. Each failure is kept in
    its section's ``..._error``; nothing is raised for them.
    """
    target_id = profile.user.id
    methods, methods_error = _read(lambda: graph_methods.list_methods(client, target_id))
    # The default method comes from beta signInPreferences (graph/requirements.py says why not
    # the v1.0 report). Only worth a call of the small reports budget when there are methods.
    preferences: SignInPreferences | None = None
    preferences_error: GraphError | None = None
    if methods:
        preferences, preferences_error = _read(
            lambda: graph_requirements.get_sign_in_preferences(client, target_id)
        )
    default_id = graph_requirements.default_method_id(methods or [], preferences)
    mfa_state, mfa_error = _read(
        lambda: graph_requirements.get_per_user_mfa_state(client, target_id)
    )
    actions, no_action_reason = _actions(agent, profile)
    recent = list(ActionRequest.objects.for_target(target_id)[:RECENT_REQUESTS_SHOWN])
    return PersonPage(
        profile=profile,
        methods=_method_rows(methods or [], default_id),
        methods_error=methods_error,
        preferences=preferences,
        preferences_error=preferences_error,
        default_known=default_id is not None,
        mfa_state=mfa_state,
        mfa_error=mfa_error,
        actions=actions,
        no_action_reason=no_action_reason,
        approval_needed=policy.needs_approval(profile),
        recent_requests=with_viewable(agent, recent),
    )


@dataclass(frozen=True)
class EntraEvents:
    """A person's recent Entra audit events as plain rows (``when``, ``activity``, ``by``,
    ``result``), or the Graph error that kept them from the page."""

    rows: list[dict[str, Any]]
    error: GraphError | None


def entra_events(client: GraphClient, *, target_id: str) -> EntraEvents:
    """The last ENTRA_EVENTS_TOP directory audit events about ``target_id``.

    Read at ``sync`` priority, so it never takes budget an agent's action needs, and cached for
    ENTRA_EVENTS_CACHE_SECONDS: the same person's page is often reloaded during one call. A
    failure is not cached. Raises ValueError for an id Graph's filter cannot take.
    """
    key = f"mfa:entra-events:{target_id}"
    events = cache.get(key)
    if events is not None:
        return EntraEvents(rows=events, error=None)
    try:
        # Graph documents no default order: ask for the newest first, or the first page could
        # be any ENTRA_EVENTS_TOP of the person's events.
        page = graph_audit.directory_audits_page(
            client.with_priority("sync"),
            target_id=target_id,
            top=ENTRA_EVENTS_TOP,
            newest_first=True,
        )
    except GraphError as exc:
        return EntraEvents(rows=[], error=exc)
    # Plain values: Graph's typed result keeps read-only JSON that does not pickle.
    rows = [
        {
            "when": event.activity_date_time,
            "activity": event.activity_display_name,
            "by": (
                event.initiated_by_user.user_principal_name or event.initiated_by_user.display_name
                if event.initiated_by_user
                else f"app {event.initiated_by_app.display_name}"
                if event.initiated_by_app
                else "unknown"
            ),
            "result": event.result or "",
        }
        for event in page.items
    ]
    cache.set(key, rows, timeout=ENTRA_EVENTS_CACHE_SECONDS)
    return EntraEvents(rows=rows, error=None)


def action_form_extras(
    client: GraphClient, *, kind: str, profile: policy.TargetProfile
) -> dict[str, Any]:
    """Graph facts an action form needs (TAP policy, the methods to choose from), as keyword
    arguments of the form.

    Raises GraphError when Graph cannot give them.
    """
    if kind == ActionKind.ISSUE_TAP:
        return {"tap_policy": policy.tap_policy(client)}
    if kind == ActionKind.DELETE_METHOD:
        return {"methods": graph_methods.list_methods(client, profile.user.id)}
    return {}


# --- requests and approvals -----------------------------------------------------------------


@dataclass(frozen=True)
class RequestList:
    """The request list as ``user`` may see it: ``rows`` (newest first, at most
    REQUEST_LIST_LIMIT), whether they may and do see everyone's, and the status filter kept."""

    rows: list[ActionRequest]
    can_see_all: bool
    show_all: bool
    status: str


def request_list_for(user: Any, *, want_all: bool, status: str) -> RequestList:
    """``user``'s own requests, or everyone's when ``want_all`` and they may see all; filtered
    on ``status`` when it is a Status value (anything else is ignored, not refused)."""
    can_all = can_see_all_requests(user)
    show_all = can_all and want_all
    requests = (
        ActionRequest.objects.all()
        if show_all
        else ActionRequest.objects.filter(requester_id=user.pk)
    )
    if status in Status.values:
        requests = requests.filter(status=status)
    rows = with_viewable(user, list(requests[:REQUEST_LIST_LIMIT]))
    return RequestList(rows=rows, can_see_all=can_all, show_all=show_all, status=status)


def awaiting_approval(user: Any) -> list[dict[str, Any]]:
    """The requests waiting for a decision, oldest first, each as ``ar``, ``own`` (``user`` may
    not decide it), ``blocked`` (why approval is no longer possible, if it is not) and
    ``params``."""
    waiting = (
        ActionRequest.objects.filter(status=Status.AWAITING_APPROVAL)
        .select_related("verification")
        .order_by("created_at")
    )
    return [
        {
            "ar": ar,
            "own": not can_decide(user, ar),
            # Why this user may not approve it (rank, peer, target, or the requester lost PAA):
            # the page then offers no Approve button.
            "blocked": policy.approval_blocked(user, ar),
            "params": params_for_display(ar),
        }
        for ar in waiting
    ]


def rate_override_candidates(lead: Any) -> list[tuple[str, str]]:
    """Agents who made requests in the rate window (the only ones an override can help), as
    (user pk, "name (n of limit)") choices, busiest first; never ``lead`` themselves."""
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
