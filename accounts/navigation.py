"""The portal's areas, for the header navigation and the home page.

An area appears only once its URL name resolves, so a link is never shown before the page is
built: an engineer adding an area registers the URL name listed here (or adds a line).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from accounts.roles import (
    ADMIN_ROLES,
    ALL_ROLES,
    APPROVER_ROLES,
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


def nav_items_for(roles: Set[str]) -> list[NavLink]:
    """The areas a person holding ``roles`` may open, in order, skipping unbuilt ones."""
    links: list[NavLink] = []
    for item in AREAS:
        if not roles & set(item.roles):
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        links.append(NavLink(url=url, label=item.label, description=item.description))
    return links
