"""Entra's directory audit log (the "identity and access reports" budget: 5 per 10 s).

Entra keeps 7 days (Free) or 30 days (P1/P2); the portal's own cache is the longer history, kept
up to date by an incremental sync that calls :func:`iter_directory_audits` with ``since``.
Graph documents no default order for the list: ask with ``newest_first`` when order matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from graph import odata
from graph.client import GraphClient
from graph.operations import operation
from graph.results import DirectoryAudit, Page, typed_items

MAX_PAGE_SIZE = 999

_LIST_DIRECTORY_AUDITS = operation(
    "audit_logs.directory_audits",
    "GET",
    "/v1.0/auditLogs/directoryAudits",
    reference="https://learn.microsoft.com/graph/api/directoryaudit-list",
    filter_properties=(
        "activityDateTime",
        "category",
        "activityDisplayName",
        "targetResources/id",
        "initiatedBy/user/id",
    ),
    # The directoryAudit resource: activityDateTime "Supports $filter (eq, ge, le) and
    # $orderby". Graph documents no default order, so a caller that needs one asks for it.
    orderby=("activityDateTime",),
    paged=True,
)


def directory_audit_filter(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    category: str | None = None,
    activity_display_name: str | None = None,
    target_id: str | None = None,
    initiated_by_user_id: str | None = None,
) -> str | None:
    """The ``$filter`` for the given conditions (all must hold), or None for no condition."""
    clauses = []
    if since is not None:
        clauses.append(f"activityDateTime ge {odata.datetime_literal(since)}")
    if until is not None:
        clauses.append(f"activityDateTime le {odata.datetime_literal(until)}")
    if category is not None:
        clauses.append(f"category eq {odata.quote(category)}")
    if activity_display_name is not None:
        clauses.append(f"activityDisplayName eq {odata.quote(activity_display_name)}")
    if target_id is not None:
        clauses.append(f"targetResources/any(t:t/id eq {odata.quote(target_id)})")
    if initiated_by_user_id is not None:
        clauses.append(f"initiatedBy/user/id eq {odata.quote(initiated_by_user_id)}")
    return " and ".join(clauses) or None


def directory_audits_page(
    client: GraphClient,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    category: str | None = None,
    activity_display_name: str | None = None,
    target_id: str | None = None,
    initiated_by_user_id: str | None = None,
    top: int = 100,
    next_link: str | None = None,
    newest_first: bool | None = None,
) -> Page[DirectoryAudit]:
    """One page of audit events matching the conditions; with ``next_link`` (from the previous
    page) the conditions are ignored and the link is followed verbatim. A sync can store
    ``next_link`` and resume from it.

    ``newest_first`` True or False asks Graph for that order (``$orderby=activityDateTime``);
    None asks for none, and Graph documents no default order: a caller that reads only the
    first page must ask."""
    # Reference: https://learn.microsoft.com/graph/api/directoryaudit-list
    query: dict[str, str] | None = None
    if next_link is None:
        if not 1 <= top <= MAX_PAGE_SIZE:
            raise ValueError(f"top must be between 1 and {MAX_PAGE_SIZE}, not {top}")
        query = {"$top": str(top)}
        condition = directory_audit_filter(
            since=since,
            until=until,
            category=category,
            activity_display_name=activity_display_name,
            target_id=target_id,
            initiated_by_user_id=initiated_by_user_id,
        )
        if condition:
            query["$filter"] = condition
        if newest_first is not None:
            query["$orderby"] = "activityDateTime " + ("desc" if newest_first else "asc")
    page = client.get_page(_LIST_DIRECTORY_AUDITS, query=query, next_link=next_link)
    return Page(typed_items(page.values, DirectoryAudit.from_graph), page.next_link, page.count)


def iter_directory_audits(
    client: GraphClient,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    category: str | None = None,
    activity_display_name: str | None = None,
    target_id: str | None = None,
    initiated_by_user_id: str | None = None,
    top: int = 100,
) -> Iterator[DirectoryAudit]:
    """Every matching audit event, following ``@odata.nextLink`` lazily (one request a page)."""
    # Reference: https://learn.microsoft.com/graph/api/directoryaudit-list
    page = directory_audits_page(
        client,
        since=since,
        until=until,
        category=category,
        activity_display_name=activity_display_name,
        target_id=target_id,
        initiated_by_user_id=initiated_by_user_id,
        top=top,
    )
    while True:
        yield from page.items
        if not page.next_link:
            return
        page = directory_audits_page(client, next_link=page.next_link)
