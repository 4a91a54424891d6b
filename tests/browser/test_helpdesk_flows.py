"""The helpdesk in a real browser: headless Chromium (Debian's, never a downloaded one) against a
live portal, a real Celery worker, the real Redis and the HTTPS Entra emulator.

Each test signs in on the emulator's own sign-in page, as a person would. The person page's
screenshot is taken here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import FINAL_TIMEOUT_MS, open_page, shot, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _open_person_by_keyboard(page: Any, text: str, upn: str) -> None:
    page.locator("#q").fill(text)
    page.locator("[data-result-list] [data-result]", has_text=upn).wait_for()
    page.locator("#q").press("ArrowDown")
    focused = page.evaluate("document.activeElement.textContent")
    assert upn in focused
    page.keyboard.press("Enter")
    page.locator("h1", has_text=text).wait_for()


def _verify_with_emailed_code(page: Any, portal: str) -> None:
    page.get_by_role("button", name="Send code").click()
    page.locator("[data-verification=pending]").wait_for()
    from mfa.models import MailboxMessage

    # The code reaches the manager's inbox, which the agent cannot open (/mailbox/ shows each
    # person only their own mail): the caller reads it out, the test reads the stored message.
    # The latest verification code (approvers' notices land in the mailbox too).
    mail = (
        MailboxMessage.objects.filter(subject__startswith="Helpdesk verification code")
        .order_by("-id")
        .first()
    )
    assert mail is not None
    body = mail.body
    code = re.search(r"\b(\d{3}) (\d{3})\b", body)
    assert code, body
    page.get_by_label("Code the caller reads back").fill(code.group(1) + code.group(2))
    page.get_by_role("button", name="Check code").click()
    page.locator("[data-verification=current]").wait_for()


def _verify_manually(page: Any) -> None:
    page.get_by_label("Video call: face matched the HR photo, government ID shown").check()
    page.get_by_label("Evidence").fill("Video call, face matched HR photo, passport shown.")
    page.get_by_role("button", name="Record check").click()
    page.locator("[data-verification=current]").wait_for()


def _fill_reason_and_ticket(page: Any) -> None:
    page.get_by_label("Reason").fill("Caller has a new phone and must register again.")
    page.get_by_label("Ticket").fill("INC0012345")


def test_agent_verifies_by_code_and_requires_reregistration(chromium: Any, portal: str) -> None:
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.agent, "/users/")
    _open_person_by_keyboard(page, "Sam Standard", PERSONAS.standard_target.upn)
    page.locator("text=Authenticator app").first.wait_for()
    shot(page, "person")

    _verify_with_emailed_code(page, portal)
    page.get_by_role("link", name="Require MFA re-registration").click()
    _fill_reason_and_ticket(page)
    page.get_by_role("button", name="Require MFA re-registration").click()

    page.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    text = page.locator("#request-status").inner_text()
    assert "Removed" in text and "Microsoft Authenticator" in text, text
    assert "Still registered" in text and "Nothing that can be removed." in text, text


def test_privileged_action_is_approved_by_a_lead_in_another_browser(
    chromium: Any, portal: str
) -> None:
    agent = open_page(chromium)
    # Only an agent who holds PAA may act on a privileged person (Entra's tiering, mirrored).
    sign_in(agent, portal, PERSONAS.privileged_agent, f"/users/{PERSONAS.privileged_target.oid}/")
    agent.locator("text=Authentication Administrator").first.wait_for()
    _verify_manually(agent)
    agent.get_by_role("link", name="Revoke sign-in sessions").click()
    _fill_reason_and_ticket(agent)
    agent.get_by_role("button", name="Ask for approval").click()
    agent.locator('[data-status="awaiting_approval"]').wait_for()

    lead = open_page(chromium)
    sign_in(lead, portal, PERSONAS.lead, "/approvals/")
    lead.locator("text=Priya Privileged").first.wait_for()
    lead.get_by_label("Comment").first.fill("Confirmed with Priya's manager on Teams.")
    lead.get_by_role("button", name="Approve").first.click()
    lead.locator("text=Approved:").wait_for()

    # The agent's page was polling all along: it follows the request to its end.
    agent.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    agent.reload()
    assert "Approved by Leo Lead" in agent.locator("body").inner_text()


def test_temporary_access_pass_is_shown_once(chromium: Any, portal: str) -> None:
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.agent, f"/users/{PERSONAS.standard_target.oid}/")
    # A manual check alone would send a pass for approval (PORTAL_MANUAL_CHECK_NEEDS_APPROVAL).
    _verify_with_emailed_code(page, portal)
    page.get_by_role("link", name="Issue a Temporary Access Pass").click()
    page.get_by_label("Lifetime (minutes)").fill("60")
    _fill_reason_and_ticket(page)
    page.get_by_role("button", name="Issue a Temporary Access Pass").click()

    page.get_by_role("button", name="Reveal pass").click(timeout=FINAL_TIMEOUT_MS)
    value = page.locator("#tap-value").inner_text().strip()
    assert len(value) >= 8
    page.get_by_role("button", name="Copy pass").click()
    page.locator("[data-copy-status]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == value

    page.reload()
    page.locator("[data-tap-gone]").wait_for()
    assert value not in page.content()
    page.get_by_role("link", name="← The request").click()
    assert value not in page.content()
    assert page.get_by_role("button", name="Reveal pass").count() == 0
