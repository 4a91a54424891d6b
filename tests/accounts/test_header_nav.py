"""The header's navigation (accounts.templatetags.portal_header): Home is the brand, the areas only
Admins open sit under one menu (with the sum of their counts), the rest are plain links."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.navigation import NavLink, nav_items_for
from accounts.roles import Role
from accounts.templatetags.portal_header import CROWDED_ENTRIES, header_nav

pytestmark = pytest.mark.django_db


def test_an_admin_gets_the_admin_areas_under_one_menu() -> None:
    links = nav_items_for({Role.ADMIN})
    nav = header_nav(links, reverse("roles:directory_roles"))
    assert nav.home is not None and nav.home.url == reverse("home")
    assert [link.label for link in nav.admin] == ["Directory roles", "Tenant check", "Graph budget"]
    assert "Search people" in [link.label for link in nav.main]
    assert not {link.url for link in nav.main} & {link.url for link in nav.admin}
    assert nav.home not in nav.main
    assert nav.admin_current and nav.current == reverse("roles:directory_roles")
    assert nav.crowded and len(nav.main) + 1 >= CROWDED_ENTRIES


def test_a_lead_and_an_agent_have_no_menu() -> None:
    lead = header_nav(nav_items_for({Role.LEAD}), "/")
    assert lead.admin == () and not lead.admin_current
    assert lead.current == "/" and lead.home is not None
    agent = header_nav(nav_items_for({Role.AGENT}), "/nowhere/")
    assert agent.admin == () and agent.current == "" and not agent.crowded


def test_the_menu_sums_its_counts_and_one_admin_link_stays_plain() -> None:
    roles_url = reverse("roles:directory_roles")
    links = [
        NavLink(url="/", label="Home", description=""),
        NavLink(url=roles_url, label="Directory roles", description="", count=2),
        NavLink(url=reverse("ops_budget"), label="Graph budget", description="", count=1),
    ]
    assert header_nav(links, "/").admin_count == 3
    single = header_nav(links[:2], "/")
    assert single.admin == () and [link.url for link in single.main] == [roles_url]
