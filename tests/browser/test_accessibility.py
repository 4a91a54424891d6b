"""Accessibility in a real browser: axe-core on every main page, labels on every form control, and
the helpdesk journey done from the keyboard.

axe-core comes from the npm registry (tests/data/axe/, see its README) and is evaluated in the
page through the DevTools protocol: the portal's strict CSP stays on and the portal never serves
it. A page passes when axe reports no violation at all, of any impact (minor included).

Pages and personas: home, search with results, person page, action form and request page as an
agent; approvals (with a request waiting), history and dashboard as a lead; roles as an admin;
the mailbox; the 403 page (an agent opening approvals).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.support import FINAL_TIMEOUT_MS, check_accessibility, open_page, sign_in
from tests.personas import PERSONAS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The browser and the live portal of the helpdesk flows, shared (used by name).


def _privileged_request_waiting() -> None:
    """Aaron (an agent holding PAA) asks to sign Priya out: it waits for a lead's approval."""
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


def test_main_pages_have_no_accessibility_violation(chromium: Any, portal: str) -> None:
    problems: dict[str, Any] = {}
    sam = PERSONAS.standard_target

    agent = open_page(chromium)
    sign_in(agent, portal, PERSONAS.agent, "/")
    check_accessibility(agent, "home", problems)
    agent.goto(f"{portal}/users/")
    agent.locator("#q").fill("Sam")
    agent.locator("[data-result-list] [data-result]", has_text=sam.upn).wait_for()
    check_accessibility(agent, "search with results", problems)
    agent.goto(f"{portal}/users/{sam.oid}/")
    agent.locator("text=Authenticator app").first.wait_for()
    check_accessibility(agent, "person", problems)
    agent.goto(f"{portal}/users/{sam.oid}/actions/revoke_sessions/")
    check_accessibility(agent, "action form", problems)
    agent.get_by_label("Reason").fill("Caller reports a stolen laptop and wants out everywhere.")
    agent.get_by_label("Ticket").fill("INC0012345")
    agent.get_by_role("button", name="Revoke sign-in sessions").click()
    agent.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    check_accessibility(agent, "request", problems)
    agent.goto(f"{portal}/requests/")
    check_accessibility(agent, "my requests", problems)
    agent.goto(f"{portal}/mailbox/")
    check_accessibility(agent, "mailbox", problems)
    refused = agent.goto(f"{portal}/approvals/")
    assert refused is not None and refused.status == 403
    check_accessibility(agent, "403", problems)

    _privileged_request_waiting()
    lead = open_page(chromium)
    sign_in(lead, portal, PERSONAS.lead, "/approvals/")
    lead.locator("text=Priya Privileged").first.wait_for()
    check_accessibility(lead, "approvals", problems)
    lead.goto(f"{portal}/audit/")
    check_accessibility(lead, "history", problems)
    lead.goto(f"{portal}/dashboard/")
    lead.locator("canvas, [data-chart]").first.wait_for()
    check_accessibility(lead, "dashboard", problems)

    admin = open_page(chromium)
    sign_in(admin, portal, PERSONAS.admin, "/roles/")
    admin.locator("[data-snapshot-at]").first.wait_for(timeout=FINAL_TIMEOUT_MS)
    check_accessibility(admin, "roles", problems)
    admin.goto(f"{portal}/roles/add/")
    check_accessibility(admin, "roles: add a holder", problems)

    assert problems == {}, json.dumps(problems, indent=1)

    # The checks can fail: an unlabelled field added to a page is caught by both.
    admin.evaluate(
        "() => document.querySelector('main').appendChild(document.createElement('input'))"
    )
    caught: dict[str, Any] = {}
    check_accessibility(admin, "planted", caught)
    assert "label" in {v["id"] for v in caught["planted"]["axe"]}
    assert caught["planted"]["unlabelled"] == ["<input>"]


def test_the_helpdesk_journey_works_from_the_keyboard(chromium: Any, portal: str) -> None:
    """Tab reaches the search box, arrow keys move through the results, Enter opens a person,
    and Enter in a form's last field submits it."""
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.agent, "/users/")
    page.locator("body").focus()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    else:
        pytest.fail("Tab never reached the search box")
    page.keyboard.type("Sam")
    page.locator("[data-result-list] [data-result]").first.wait_for()
    page.keyboard.press("ArrowDown")
    first = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.textContent") == first != second
    # Back to the first result that is Sam, then open it with Enter.
    while PERSONAS.standard_target.upn not in page.evaluate("document.activeElement.textContent"):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.locator("h1", has_text="Sam Standard").wait_for()

    page.goto(f"{portal}/users/{PERSONAS.standard_target.oid}/actions/revoke_sessions/")
    page.get_by_label("Reason").focus()
    page.keyboard.type("Caller reports a stolen laptop and wants out everywhere.")
    page.keyboard.press("Tab")
    page.keyboard.type("INC0012345")
    page.keyboard.press("Enter")
    page.locator("[data-status]").first.wait_for()
    assert "/requests/" in page.url
