"""The portal's areas, for the header navigation and the home page.

An area appears only once its URL name resolves, so a link is never shown before the page is
built: an engineer adding an area registers the URL name listed here (or adds a line).

A link carries a count of what waits there for the signed-in person (``NavLink.count``, a badge in
the header). accounts knows nothing of what waits: an app above it registers a counter in its
``AppConfig.ready()`` (:func:`counter_register`; mfa counts approvals, role grants and
escalations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

from accounts.roles import (
    ADMIN_ROLES,
    ALL_ROLES,
    APPROVER_ROLES,
    BULK_ROLES,
    HISTORY_ROLES,
    OVERSIGHT_ROLES,
    REQUESTER_ROLES,
)


@dataclass(frozen=True)
class NavItem:
    url_name: str
    label: str
    description: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class NavLink:
    url: str
    label: str
    description: str
    # What waits behind this link for the signed-in person (approvals, escalations): a badge.
    count: int = 0


AREAS: tuple[NavItem, ...] = (
    NavItem("home", "Home", "Your roles and the areas you can use.", ALL_ROLES),
    NavItem(
        "mfa:user_search",
        "Search people",
        "Find the caller in the directory and act on their sign-in methods.",
        REQUESTER_ROLES,
    ),
    NavItem(
        "mfa:request_list",
        "Requests",
        "Your requests and their live status; leads see everyone's.",
        REQUESTER_ROLES,
    ),
    NavItem(
        "mfa:approvals",
        "Approvals",
        "Approve or reject actions on privileged people.",
        APPROVER_ROLES,
    ),
    NavItem(
        "mfa:escalations",
        "Escalations",
        "Actions on privileged people that an agent prepared and a PAA holder takes on.",
        REQUESTER_ROLES,
    ),
    NavItem(
        "audit:history",
        "History",
        "What the helpdesk did, with Entra's own record beside it.",
        HISTORY_ROLES,
    ),
    NavItem(
        "audit:dashboard",
        "Dashboard",
        "Charts of the helpdesk's actions and the flags that need a look.",
        OVERSIGHT_ROLES,
    ),
    NavItem(
        "bulk:operation_list",
        "Bulk",
        "Incident response: revoke sessions or require re-registration for many people at once.",
        BULK_ROLES,
    ),
    NavItem(
        "roles:directory_roles",
        "Directory roles",
        "Who holds Privileged Authentication Administrator and its neighbours.",
        ADMIN_ROLES,
    ),
    NavItem(
        "preflight:tenant_check",
        "Tenant check",
        "Check the tenant's setup for the portal: permissions, app roles, licence, policies.",
        ADMIN_ROLES,
    ),
    NavItem(
        "ops_budget",
        "Graph budget",
        "The shared Graph budget now and over the last hour: use, waits, 429s, who is waiting.",
        ADMIN_ROLES,
    ),
)


@lru_cache(maxsize=64)
def _area_url(url_name: str, urlconf: str, prefix: str) -> str | None:
    """The URL of an area under ``urlconf`` and the script ``prefix``; None while unbuilt.
    Every page draws the navigation: the areas' URLs are resolved once per URL configuration,
    not ten ``reverse()`` calls a page."""
    try:
        return reverse(url_name, urlconf=urlconf)
    except NoReverseMatch:
        return None


def nav_items_for(roles: Set[str], counts: Mapping[str, int] | None = None) -> list[NavLink]:
    """The areas a person holding ``roles`` may open, in order, skipping unbuilt ones; each
    with ``counts[url_name]`` (what waits there for the person, 0 when not given)."""
    counts = counts or {}
    urlconf = str(get_urlconf() or settings.ROOT_URLCONF)
    prefix = get_script_prefix()
    links: list[NavLink] = []
    for item in AREAS:
        if not roles & set(item.roles):
            continue
        url = _area_url(item.url_name, urlconf, prefix)
        if url is None:
            continue
        links.append(
            NavLink(
                url=url,
                label=item.label,
                description=item.description,
                count=int(counts.get(item.url_name, 0)),
            )
        )
    return links


# A counter answers, for one signed-in user, {URL name: how many things wait there for them}.
Counter = Callable[[Any], Mapping[str, int]]
_COUNTERS: dict[str, Counter] = {}


def counter_register(name: str, counter: Counter) -> None:
    """Add (or replace, under the same ``name``) a counter the navigation asks on every page."""
    _COUNTERS[name] = counter


def waiting_counts(user: Any) -> dict[str, int]:
    """What waits for ``user`` behind each link, summed over the registered counters."""
    totals: dict[str, int] = {}
    for counter in _COUNTERS.values():
        for url_name, count in counter(user).items():
            totals[url_name] = totals.get(url_name, 0) + int(count)
    return totals
