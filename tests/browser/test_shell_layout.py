"""The portal's shell in a real browser (headless Debian Chromium against the live portal, a real
worker and the HTTPS Entra emulator): sign-in without a role, the favicon, the search's ranking
and its job titles, the header of an Admin at 1280 and 1024 px, the role-add form, and addresses
in the profile card at 1024 px. Screenshots: ``search``, ``roles`` and ``roles-add``.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from tests.browser.support import (
    FINAL_TIMEOUT_MS,
    check_accessibility,
    open_page,
    shot,
    sign_in,
)
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ICON_TYPES = ("image/x-icon", "image/vnd.microsoft.icon")
COMPUTED_STYLE_JS = """(el) => {
  const s = getComputedStyle(el);
  return [s.paddingLeft, s.borderRadius, s.fontSize];
}"""

# Boxes of the header's parts, and the top of each of its links (the Admin menu included).
HEADER_JS = """() => {
  const box = el => { const r = el.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const inner = document.querySelector('.site-header__inner');
  const parts = Array.from(inner.children).filter(el => el.getBoundingClientRect().width > 0);
  const links = Array.from(document.querySelectorAll('.site-nav > ul > li'));
  return {inner: box(inner), parts: parts.map(el => ({cls: el.className, ...box(el)})),
          links: links.map(el => ({text: el.innerText.trim(), ...box(el)}))};
}"""

# Every address (a text containing "@") inside ``selector``, with where it breaks onto a new
# line: the characters either side of each break.
ADDRESS_BREAKS_JS = """(selector) => {
  const walker = document.createTreeWalker(document.querySelector(selector), NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.data.includes('@')) continue;
    const chars = [];
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (rect && node.data[i].trim()) chars.push({c: node.data[i], top: Math.round(rect.top)});
    }
    const breaks = [];
    for (let i = 1; i < chars.length; i++) {
      if (chars[i].top > chars[i - 1].top + 2) breaks.push(chars[i - 1].c + '|' + chars[i].c);
    }
    found.push({text: node.data.trim(), breaks: breaks});
  }
  return found;
}"""


def _one_row(page: Any) -> None:
    """Every part of the header (brand, navigation, person) and every link share one row."""
    header = page.evaluate(HEADER_JS)
    parts, links = header["parts"], header["links"]
    assert len(parts) >= 3 and len(links) >= 6, header
    middles = [(p["top"] + p["bottom"]) / 2 for p in parts]
    assert max(middles) - min(middles) <= 4, header
    assert len({round(link["top"]) for link in links}) == 1, header
    assert header["inner"]["bottom"] - header["inner"]["top"] <= 64, header
    width = page.viewport_size["width"]
    assert all(p["right"] <= width for p in parts), header


def test_a_person_without_a_role_lands_on_a_plain_page_that_survives_a_reload(
    chromium: Any, portal: str
) -> None:
    """Bug 7: the callback URL gives way to /no-role/; a reload shows the same page, and the
    used callback met again says "already signed in", never "Sign-in failed"."""
    problems: dict[str, Any] = {}
    page = open_page(chromium)
    callbacks: list[str] = []
    page.on(
        "request",
        lambda request: (
            callbacks.append(request.url) if "/oauth2/callback" in request.url else None
        ),
    )
    page.goto(f"{portal}/")
    page.locator(f'button[name="emulator_username"][value="{PERSONAS.outsider.upn}"]').click()
    page.wait_for_url(f"{portal}/no-role/")
    heading = page.get_by_role("heading", name="You have no role in this portal")
    assert heading.is_visible()
    assert "Otto Outsider" in page.locator("main").inner_text()
    check_accessibility(page, "no role", problems)

    page.reload()
    assert page.url == f"{portal}/no-role/"
    assert heading.is_visible()
    assert "Sign-in failed" not in page.locator("body").inner_text()

    # The callback again (the back button, a bookmarked address): nothing is exchanged, and the
    # page agrees with the header that names the person.
    assert callbacks
    page.goto(callbacks[-1])
    body = page.locator("main").inner_text()
    assert "Sign-in failed" not in body and "not started from this browser" not in body
    assert "You are already signed in" in body and "Otto Outsider" in body
    check_accessibility(page, "already signed in", problems)
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{portal}/no-role/")
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_favicon_is_a_real_icon_on_every_page(chromium: Any, portal: str) -> None:
    """Bug 8: /favicon.ico and the icon every page links answer with an image, not a 404."""
    page = open_page(chromium)
    failures: list[str] = []
    page.on(
        "response",
        lambda response: (
            failures.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )
    sign_in(page, portal, PERSONAS.agent, "/")
    for path in ("/", "/users/", "/requests/"):
        page.goto(f"{portal}{path}")
        icon = page.locator('link[rel="icon"]')
        assert icon.count() == 1, path
        href = icon.get_attribute("href")
        answer = page.request.get(f"{portal}{href}")
        assert answer.status == 200 and answer.headers["content-type"] in ICON_TYPES
        assert answer.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    root = page.request.get(f"{portal}/favicon.ico")
    assert root.status == 200, root.status
    assert root.headers["content-type"] in ICON_TYPES
    body = root.body()
    assert body[:4] == b"\x00\x00\x01\x00" and len(body) > 200
    assert "max-age" in root.headers.get("cache-control", "")
    assert failures == []


def _result_names(page: Any, text: str, expected_first: str) -> list[str]:
    page.locator("#q").fill(text)
    page.locator("[data-result-list] [data-result]").first.wait_for()
    page.locator("[data-result-list] [data-result] .result__name").first.filter(
        has_text=expected_first
    ).wait_for()
    return list(page.locator("[data-result-list] [data-result] .result__name").all_inner_texts())


def test_search_puts_exact_and_prefix_matches_first_and_shows_the_job(
    chromium: Any, portal: str
) -> None:
    """Search ranking: the person whose name or UPN is what was typed comes first; every result
    says job title and department."""
    problems: dict[str, Any] = {}
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.agent, "/users/")

    names = _result_names(page, "o'b", "Siobhán O'Brien")
    assert names[0] == "Siobhán O'Brien", names

    names = _result_names(page, "sam", "Sam Standard")
    assert names[0] == "Sam Standard" and len(names) >= 2, names

    names = _result_names(page, "priya", "Priya Privileged")
    priyankas = [i for i, name in enumerate(names) if name.startswith("Priyanka")]
    assert names[0] == "Priya Privileged" and priyankas, names

    sam = page.locator("[data-result]", has_text="Sam Standard")
    page.locator("#q").fill("sam")
    sam.wait_for()
    job = sam.locator("[data-result-job]")
    assert job.locator(".result__title").inner_text() == "Sales Representative"
    assert job.locator(".result__department").inner_text() == "Sales"
    assert page.locator("[data-result]").count() == page.locator("[data-result-job]").count()
    check_accessibility(page, "search", problems)
    shot(page, "search")
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_admin_header_fits_one_row_at_1280_and_1024(chromium: Any, portal: str) -> None:
    """Layout: an Admin's ten areas, name, role and Sign out on one header row; the Admin-only
    areas sit under one menu that the keyboard opens and Escape closes."""
    problems: dict[str, Any] = {}
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.admin, "/roles/")
    page.locator("[data-snapshot-at]").first.wait_for(timeout=FINAL_TIMEOUT_MS)
    _one_row(page)
    shot(page, "roles")
    page.set_viewport_size({"width": 1024, "height": 900})
    _one_row(page)
    check_accessibility(page, "roles at 1024 px", problems)

    menu = page.locator("details[data-nav-menu]")
    summary = menu.locator("summary")
    assert "Administration" in summary.inner_text()
    summary.focus()
    page.keyboard.press("Enter")
    link = menu.get_by_role("link", name="Directory roles")
    link.wait_for()
    assert link.get_attribute("aria-current") == "page"
    check_accessibility(page, "admin menu open", problems)
    page.keyboard.press("Escape")
    assert not link.is_visible()
    summary.click()
    menu.get_by_role("link", name="Tenant check").click()
    page.wait_for_url(re.compile(r".*/preflight/.*"))
    _one_row(page)
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_role_add_form_lists_people_with_job_and_department(chromium: Any, portal: str) -> None:
    """Layout: the find box and the date box are styled, and the people found are a list of rows
    (name, address, job title and department), not inline radios."""
    problems: dict[str, Any] = {}
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.admin, "/roles/add/")
    find = page.get_by_label("Find a person")
    find.fill("Sam")
    people = page.locator("[data-principal-people]")
    people.wait_for()
    row = people.locator("li", has_text="Sam Standard")
    assert row.count() == 1
    text = row.inner_text()
    assert "sam.standard@" in text and "Sales Representative" in text and "Sales" in text
    # A row each: stacked, as wide as the list, the radio inside the row's label.
    boxes = [li.bounding_box() for li in people.locator("li").all()]
    assert len(boxes) >= 2
    assert all(b["x"] == boxes[0]["x"] and b["width"] == boxes[0]["width"] for b in boxes), boxes
    assert all(
        later["y"] >= earlier["y"] + earlier["height"]
        for earlier, later in itertools.pairwise(boxes)
    )
    row.click()
    assert row.locator('input[type="radio"]').is_checked()

    for box in (find, page.get_by_label("Until (date)")):
        padding, radius, size = box.evaluate(COMPUTED_STYLE_JS)
        assert float(padding.removesuffix("px")) >= 6, (padding, radius)
        assert float(radius.removesuffix("px")) >= 4, (padding, radius)
        assert float(size.removesuffix("px")) >= 15, size
    check_accessibility(page, "roles: add a holder", problems)
    shot(page, "roles-add")
    assert problems == {}, json.dumps(problems, indent=1)


def test_addresses_in_the_profile_card_do_not_break_mid_word_at_1024(
    chromium: Any, portal: str
) -> None:
    """Layout: at 1024 px the profile card's email and the manager's address break, if at all,
    after their own "-", "." or "@", never inside a word."""
    problems: dict[str, Any] = {}
    page = open_page(chromium)
    page.set_viewport_size({"width": 1024, "height": 900})
    sam = PERSONAS.standard_target
    sign_in(page, portal, PERSONAS.agent, f"/users/{sam.oid}/")
    card = page.locator('section[aria-labelledby="profile-title"]')
    card.wait_for()
    addresses = page.evaluate(ADDRESS_BREAKS_JS, 'section[aria-labelledby="profile-title"]')
    assert len(addresses) >= 2, addresses  # Sam's email and his manager's
    for address in addresses:
        for where in address["breaks"]:
            before, after = where.split("|")
            # A break inside a word joins two letters or digits: "conto|so".
            assert not (before.isalnum() and after.isalnum()), address
    check_accessibility(page, "person at 1024 px", problems)
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_nav_count_reads_as_waiting(chromium: Any, portal: str) -> None:
    """The header's count badge (what waits behind a link for this person,
    ``accounts.navigation.NavLink.count``): a number on the link, read out as "1 waiting"."""
    from mfa.models import ActionKind
    from tests.mfa.action_requests import action_request_make, target_profile
    from tests.personas import portal_user

    action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=portal_user(PERSONAS.privileged_agent),
        profile=target_profile(PERSONAS.privileged_target),
        reason="Laptop stolen on the train this morning, signing her out everywhere",
        ticket="INC0012346",
    )
    problems: dict[str, Any] = {}
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.lead, "/")
    link = page.locator(".site-nav").get_by_role("link", name=re.compile(r"^Approvals"))
    assert link.locator(".nav-count").text_content() == "1 waiting"
    assert link.locator(".nav-count").evaluate("el => el.firstChild.textContent") == "1"
    assert page.locator(".site-nav").get_by_role("link", name="Approvals 1 waiting").count() == 1
    _one_row(page)
    page.set_viewport_size({"width": 1024, "height": 900})
    _one_row(page)  # a Lead's header, with its count, on one row at 1024 px too
    check_accessibility(page, "home with a count", problems)
    assert problems == {}, json.dumps(problems, indent=1)
