"""Reading the audit trail: the portal's events and the cached Entra records, merged in time.

One module per job:

- ``filters``: ``HistoryFilters`` (the URL's filters), ``Cursor`` (a keyset position), the
  outcome groups and labels;
- ``queries``: the two querysets (``portal_queryset``, ``entra_queryset``) as index-served
  branches, and the keyset condition;
- ``rows``: ``HistoryRow`` and the request attached to each row;
- ``history``: ``history_query`` (one keyset page, also the person timeline) and
  ``history_rows`` (every row, in batches);
- ``flat``: ``history_flat_rows``, the exports' stream of plain tuples (``FLAT_FIELDS``);
- ``requests``: ``request_history_query``, the default view: one row per request (its events
  folded into it), Entra-only events and events of no request as rows of their own.

The viewer's scope (``audit.permissions``) is applied to every query: an Agent's history is their
own requests, plus the full history of a person they open (``filters.target``). The request a
row belongs to is read through ``audit.sources`` (mfa's ``ActionRequest``, which audit does not
import).

The names below are the package's public API; import them from ``audit.selectors``.
"""

from __future__ import annotations

from audit.selectors.filters import (
    ENTRA_OUTCOMES,
    KNOWN_ENTRA_ACTIVITIES,
    OUTCOME_LABELS,
    PORTAL_OUTCOMES,
    SOURCE_RANK,
    SOURCES,
    Cursor,
    FilterError,
    HistoryFilters,
    Order,
    Source,
)
from audit.selectors.flat import FLAT_FIELDS, FlatRow, history_flat_rows
from audit.selectors.history import (
    PAGE_SIZE,
    PAGE_SIZE_MAX,
    HistoryPage,
    history_query,
    history_rows,
)
from audit.selectors.queries import entra_queryset, portal_queryset
from audit.selectors.requests import HistoryEntry, RequestHistoryPage, request_history_query
from audit.selectors.rows import HistoryRow, LinkedEntraRecord, RequestInfo

__all__ = [
    "ENTRA_OUTCOMES",
    "FLAT_FIELDS",
    "KNOWN_ENTRA_ACTIVITIES",
    "OUTCOME_LABELS",
    "PAGE_SIZE",
    "PAGE_SIZE_MAX",
    "PORTAL_OUTCOMES",
    "SOURCES",
    "SOURCE_RANK",
    "Cursor",
    "FilterError",
    "FlatRow",
    "HistoryEntry",
    "HistoryFilters",
    "HistoryPage",
    "HistoryRow",
    "LinkedEntraRecord",
    "Order",
    "RequestHistoryPage",
    "RequestInfo",
    "Source",
    "entra_queryset",
    "history_flat_rows",
    "history_query",
    "history_rows",
    "portal_queryset",
    "request_history_query",
]
