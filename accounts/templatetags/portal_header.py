"""The header's navigation, laid out to fit one row at 1024 px (``{% portal_header_nav %}``).

``accounts.navigation`` says which areas a person may open, with what waits in each. The header
draws them in three places: the Home area is the brand itself (it links home already), the areas
only Admins open go under one "Admin" menu, and the rest are plain links.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django import template
from django.urls import NoReverseMatch, reverse

from accounts.navigation import AREAS, NavLink
from accounts.roles import ADMIN_ROLES

register = template.Library()

HOME_URL_NAME = "home"
# Fewer Admin-only links than this stay plain links.
MENU_MIN_LINKS = 2
# From this many entries (links and the menu) the header is "crowded": below 1200 px it shows the
# brand's icon only and smaller links, so that it still fits one row at 1024 px with counts.
CROWDED_ENTRIES = 6


@dataclass(frozen=True)
class HeaderNav:
    """``home``: the Home link (drawn as the brand), or None; ``main``: the plain links;
    ``admin``: the Admin-only links (one menu); ``current``: the URL of the page shown, when it
    is one of the links. Derived: ``admin_count`` (what waits behind the menu), ``admin_current``
    (the page shown is in the menu) and ``crowded`` (see ``CROWDED_ENTRIES``)."""

    home: NavLink | None = None
    main: tuple[NavLink, ...] = ()
    admin: tuple[NavLink, ...] = ()
    current: str = ""
    admin_count: int = field(init=False)
    admin_current: bool = field(init=False)
    crowded: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "admin_count", sum(link.count for link in self.admin))
        object.__setattr__(self, "admin_current", any(a.url == self.current for a in self.admin))
        entries = len(self.main) + (1 if self.admin else 0)
        object.__setattr__(self, "crowded", entries >= CROWDED_ENTRIES)


def _url(url_name: str) -> str | None:
    try:
        return reverse(url_name)
    except NoReverseMatch:
        return None


def _admin_only_urls() -> frozenset[str]:
    """The URLs of the areas only Admins may open (their roles are ``ADMIN_ROLES``)."""
    return frozenset(
        url
        for item in AREAS
        if set(item.roles) <= set(ADMIN_ROLES)
        for url in [_url(item.url_name)]
        if url is not None
    )


def header_nav(links: Sequence[NavLink], path: str) -> HeaderNav:
    """Split ``links`` (``accounts.navigation.nav_items_for``) for the header; ``path`` is the
    page shown, so its link is marked current."""
    home_url = _url(HOME_URL_NAME)
    admin_urls = _admin_only_urls()
    if sum(link.url in admin_urls for link in links) < MENU_MIN_LINKS:
        admin_urls = frozenset()  # a menu of one link would only hide it
    home = next((link for link in links if link.url == home_url), None)
    current = next((link.url for link in links if link.url == path), "")
    return HeaderNav(
        home=home,
        main=tuple(link for link in links if link is not home and link.url not in admin_urls),
        admin=tuple(link for link in links if link.url in admin_urls),
        current=current,
    )


@register.simple_tag
def portal_header_nav(links: Sequence[NavLink], path: str) -> HeaderNav:
    """``{% portal_header_nav portal_nav request.path as nav %}``: see :func:`header_nav`."""
    return header_nav(links, path)
