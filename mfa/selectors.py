"""What the helpdesk pages read: the person page's shell, a person's recent Entra events (from
the local audit cache), the Graph facts an action form needs, the request list, the approvals
queue and the agents an override can help.

Views call one of these and render what it returns, so a view never calls Graph or builds a query
itself. The person page's Graph panels (methods, default method, per-user MFA) are fragments read
by ``mfa.panels``; a failure the page cannot do without is raised (``GraphError``) for the view to
turn into its 502/503 page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditSyncState
from audit.selectors import HistoryFilters, HistoryRow, history_query
from mfa import policy
from mfa.models import ActionKind, ActionRequest, Status
from mfa.permissions import can_decide, can_see_all_requests, can_see_request

ENTRA_EVENTS_TOP = 10
RECENT_REQUESTS_SHOWN = 10
REQUEST_LIST_LIMIT = 200
PARAM_LABELS: dict[str, str] = {
    "revoke_sessions": "Also revoke sessions",
    "lifetime_minutes": "Lifetime (minutes)",
    "usable_once": "One-time use",
    "state": "New state",
    "method_label": "Method",
}


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
class PersonShell:
    """What the person page draws at once, besides the caller verification: identity-class data
    and the portal's own rows only, never a reports-class Graph call. The methods, sign-in
    preference and per-user MFA panels are fragments (``mfa.panels``), the Entra events panel
    reads the local audit cache (:func:`entra_events`).

    ``actions`` are the actions the agent may take.
    """

    profile: policy.TargetProfile
    actions: list[dict[str, Any]]
    no_action_reason: str
    approval_needed: bool
    recent_requests: list[ActionRequest]

    def context(self) -> dict[str, Any]:
        """The template context of ``mfa/user_detail.html`` (without the verification part)."""
        return {
            "profile": self.profile,
            "actions": self.actions,
            "no_action_reason": self.no_action_reason,
            "approval_needed": self.approval_needed,
            "recent_requests": self.recent_requests,
        }


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


def person_shell(*, agent: Any, profile: policy.TargetProfile) -> PersonShell:
    """The person page of ``profile``'s person as ``agent`` sees it, from the profile already
    read (identity class) and the portal's database: no Graph call at all."""
    target_id = profile.user.id
    actions, no_action_reason = _actions(agent, profile)
    recent = list(ActionRequest.objects.for_target(target_id)[:RECENT_REQUESTS_SHOWN])
    return PersonShell(
        profile=profile,
        actions=actions,
        no_action_reason=no_action_reason,
        approval_needed=policy.needs_approval(profile),
        recent_requests=with_viewable(agent, recent),
    )


@dataclass(frozen=True)
class EntraEvents:
    """A person's recent Entra audit events from the local cache (``DirectoryAuditRecord``),
    newest first, as history rows (``at``, ``kind_label``, ``initiated_by_name``, ``outcome``),
    and when the tenant-wide sync last finished (None: never)."""

    rows: list[HistoryRow]
    synced_at: datetime | None


def entra_events(*, viewer: Any, target_id: str) -> EntraEvents:
    """The last ENTRA_EVENTS_TOP cached Entra events about ``target_id`` that ``viewer`` may
    read (an agent may read the whole history of a person they open). No Graph call: the
    audit sync fills the cache, and "sync this person now" (``audit.tasks``) tops it up."""
    page = history_query(
        HistoryFilters(target=target_id.lower(), source="entra"),
        viewer,
        page_size=ENTRA_EVENTS_TOP,
    )
    synced_at = (
        AuditSyncState.objects.filter(pk=AuditSyncState.SINGLETON_ID)
        .values_list("last_finished_at", flat=True)
        .first()
    )
    return EntraEvents(rows=page.rows, synced_at=synced_at)


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
