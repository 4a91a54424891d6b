"""The audit pages: history (``/audit/``), its exports, the per-person timeline and the lead
dashboard (``/dashboard/``).

Every view is a GET: filters and cursors live in the URL, so any page can be bookmarked and
shared. Access: ``accounts.roles.role_required`` admits the roles, ``audit.permissions`` decides
what each viewer reads (applied inside ``audit.selectors``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import PortalProfile
from accounts.roles import role_required
from audit import dashboard as audit_dashboard
from audit.exports import FORMATS, export_response
from audit.models import PortalEvent
from audit.permissions import HISTORY_ROLES, OVERSIGHT_ROLES, can_see_everything
from audit.selectors import (
    KNOWN_ENTRA_ACTIVITIES,
    OUTCOME_LABELS,
    Cursor,
    FilterError,
    HistoryFilters,
    HistoryPage,
    RequestHistoryPage,
    history_query,
    request_history_query,
)

# Rows per page (module attributes, read at each request, so a test can make pages short).
HISTORY_PAGE_SIZE = 50
PERSON_PAGE_SIZE = 20


def _cursors(request: HttpRequest) -> tuple[Cursor | None, Cursor | None]:
    """``after`` / ``before`` from the URL; FilterError when malformed or both given."""
    after_raw = request.GET.get("after", "").strip()
    before_raw = request.GET.get("before", "").strip()
    if after_raw and before_raw:
        raise FilterError({"cursor": "give after or before, not both"})
    after = Cursor.decode(after_raw) if after_raw else None
    before = Cursor.decode(before_raw) if before_raw else None
    return after, before


def _url(base: str, params: dict[str, str]) -> str:
    return f"{base}?{urlencode(params)}" if params else base


def _agent_choices() -> list[tuple[str, str]]:
    """(oid, name) of everyone who holds a portal role, for the agent filter (a small table)."""
    people = PortalProfile.objects.exclude(roles=[]).order_by("display_name", "upn")
    return [(p.oid, p.display_name or p.upn or p.oid) for p in people]


# ``view=events``: one row per event (the exports' rows); the default is one row per request.
EVENTS_VIEW = "events"


def _page_links(page: HistoryPage | RequestHistoryPage, base: str, view: str) -> dict[str, str]:
    filter_params = page.filters.to_params()
    params = (
        {**filter_params, "view": view}
        if view == EVENTS_VIEW or page.filters.request
        else filter_params
    )
    links = {"first": _url(base, params)}
    if page.next_cursor is not None:
        links["next"] = _url(base, {**params, "after": page.next_cursor.encode()})
    if isinstance(page, HistoryPage) and page.prev_cursor is not None:
        links["prev"] = _url(base, {**params, "before": page.prev_cursor.encode()})
    links["events_view"] = _url(base, {**filter_params, "view": EVENTS_VIEW})
    # With a request filter the default is its events: the request view is asked for by name.
    asked_requests = {"view": "requests"} if page.filters.request else {}
    links["requests_view"] = _url(base, {**filter_params, **asked_requests})
    flipped = dict(params)
    if page.filters.descending:
        flipped["order"] = "asc"
    else:
        flipped.pop("order", None)
    links["flip_order"] = _url(base, flipped)
    links["csv"] = _url(reverse("audit:export", args=["csv"]), filter_params)
    links["jsonl"] = _url(reverse("audit:export", args=["jsonl"]), filter_params)
    return links


@never_cache
@require_GET
@role_required(*HISTORY_ROLES)
def history(request: HttpRequest) -> HttpResponse:
    """``/audit/``: portal events and Entra records together, filtered, one keyset page: one
    row per request (``audit.selectors.requests``), or one per event with ``view=events``.

    Answers 400 (with the form and its messages) for malformed filters or cursor.
    """
    # One request (``request=``) reads as its events: its row would be the whole page.
    asked = request.GET.get("view") or (EVENTS_VIEW if request.GET.get("request") else "")
    view = EVENTS_VIEW if asked == EVENTS_VIEW else "requests"
    context: dict[str, Any] = {
        "kinds": PortalEvent.Kind.choices,
        "activities": KNOWN_ENTRA_ACTIVITIES,
        "outcomes": OUTCOME_LABELS.items(),
        "agents": _agent_choices(),
        "sees_everything": can_see_everything(request.user),
        "params": request.GET,
        "errors": {},
        "page": None,
        "view": view,
    }
    try:
        filters = HistoryFilters.from_params(request.GET)
        after, before = _cursors(request)
    except FilterError as exc:
        context["errors"] = exc.errors
        return render(request, "audit/history.html", context, status=400)
    page: HistoryPage | RequestHistoryPage
    if view == EVENTS_VIEW:
        page = history_query(
            filters, request.user, after=after, before=before, page_size=HISTORY_PAGE_SIZE
        )
    else:
        if before is not None:
            # The request view pages forward only (its rows fold a varying number of events).
            context["errors"] = {"cursor": "pages forward only in the request view"}
            return render(request, "audit/history.html", context, status=400)
        page = request_history_query(
            filters, request.user, after=after, page_size=HISTORY_PAGE_SIZE
        )
    context.update(
        {
            "page": page,
            "filters": filters,
            "links": _page_links(page, request.path, view),
            "is_custom_kind": bool(filters.kind)
            and filters.kind not in PortalEvent.Kind.values
            and filters.kind not in KNOWN_ENTRA_ACTIVITIES,
        }
    )
    return render(request, "audit/history.html", context)


# role_required is typed for HttpResponse views; it passes any response through unchanged.
@never_cache  # type: ignore[type-var]
@require_GET
@role_required(*HISTORY_ROLES)
def history_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    """``/audit/export.csv`` and ``/audit/export.jsonl``: every row the current filters match
    (the viewer's scope applies), streamed; the export itself is logged. 400 for bad filters."""
    if fmt not in FORMATS:
        raise Http404("No such export format")
    try:
        filters = HistoryFilters.from_params(request.GET)
    except FilterError as exc:
        return HttpResponse(
            "Malformed filters: " + str(exc), status=400, content_type="text/plain; charset=utf-8"
        )
    return export_response(request=request, filters=filters, fmt="csv" if fmt == "csv" else "jsonl")


@never_cache
@require_GET
@role_required(*HISTORY_ROLES)
def person_timeline(request: HttpRequest, oid: str) -> HttpResponse:
    """``/audit/person/<oid>/``: one person's history (portal and Entra), newest first, as a
    fragment the person page loads with ``hx-get``; ``?after=`` gives the next rows. Agents may
    read it: it is the history of a person they open (audit.permissions)."""
    oid = str(oid).lower()
    try:
        filters = HistoryFilters.from_params({"target": oid})
        after, _before = _cursors(request)
    except FilterError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    page = history_query(filters, request.user, after=after, page_size=PERSON_PAGE_SIZE)
    more_url = _url(request.path, {"after": page.next_cursor.encode()}) if page.next_cursor else ""
    return render(
        request,
        "audit/_person_timeline.html",
        {
            "page": page,
            "oid": oid,
            "more_url": more_url,
            "continuation": after is not None,
            "history_url": _url(reverse("audit:history"), {"target": oid}),
        },
    )


@never_cache
@require_GET
@role_required(*OVERSIGHT_ROLES)
def dashboard(request: HttpRequest) -> HttpResponse:
    """``/dashboard/``: charts of the helpdesk's actions and the anomaly flags, for Leads and
    Admins. Each flag links to the history filtered on what it is about."""
    figures = audit_dashboard.dashboard_figures()
    return render(
        request,
        "audit/dashboard.html",
        {"figures": figures, "charts": figures.charts_json()},
    )
