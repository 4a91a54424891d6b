"""Escalation instead of a dead end (issue 13, bug 6), in real browsers: Ada Agent (no PAA) on
Priya Privileged verifies the caller, writes reason and ticket and escalates; Aaron Agent (PAA)
takes it from the queue, seeing the recorded verification; Leo Lead approves; it runs. And
revoking sessions records the verification the agent holds."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import FINAL_TIMEOUT_MS, check_accessibility, shot, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PRIYA = PERSONAS.privileged_target
SAM = PERSONAS.standard_target


def _verify_with_emailed_code(page: Any) -> None:
    page.get_by_role("button", name="Send code").click()
    page.locator("[data-verification=pending]").wait_for()
    from mfa.models import MailboxMessage

    mail = MailboxMessage.objects.order_by("-id").first()
    assert mail is not None
    code = re.search(r"\b(\d{3}) (\d{3})\b", mail.body)
    assert code, mail.body
    page.get_by_label("Code the caller reads back").fill(code.group(1) + code.group(2))
    page.get_by_role("button", name="Check code").click()
    page.locator("[data-verification=current]").wait_for()


def _fill_reason_and_ticket(page: Any, ticket: str = "INC0013013") -> None:
    page.get_by_label("Reason").fill("Caller has a new phone and must register again.")
    page.get_by_label("Ticket").fill(ticket)


def test_agent_without_paa_escalates_and_a_paa_holder_takes_it(new_page: Any, portal: str) -> None:
    problems: dict[str, Any] = {}
    ada = new_page()
    sign_in(ada, portal, PERSONAS.agent, f"/users/{PRIYA.oid}/")
    # No dead end: "Escalate to ..." names who can take it, and the actions are offered.
    notice = ada.locator("[data-escalation]")
    notice.wait_for()
    assert notice.inner_text().startswith("Escalate to Aaron Agent"), notice.inner_text()
    assert ada.locator("[data-no-actions]").count() == 0
    assert "you do not hold it now" not in ada.locator("body").inner_text()
    check_accessibility(ada, "person-escalation", problems)
    # "Send code" now leads somewhere.
    _verify_with_emailed_code(ada)
    ada.get_by_role("link", name="Require MFA re-registration").click()
    ada.locator("[data-escalation]", has_text="Escalate to Aaron Agent").wait_for()
    _fill_reason_and_ticket(ada)
    check_accessibility(ada, "action-form-escalation", problems)
    ada.locator("form.form--action [data-submit-once]").click()
    ada.locator('#request-status [data-status="escalated"]').wait_for()
    ada.locator("[data-escalated]", has_text="Escalated to Aaron Agent").wait_for()
    check_accessibility(ada, "request-escalated", problems)

    aaron = new_page()
    sign_in(aaron, portal, PERSONAS.privileged_agent, "/escalations/")
    card = aaron.locator("[data-escalation]", has_text="Priya Privileged")
    card.wait_for()
    recorded = card.locator("[data-recorded-verification]").inner_text()
    assert "Caller verification recorded by Ada Agent" in recorded, recorded
    assert "One-time code" in recorded and "Verified" in recorded, recorded
    assert "INC0013013" in card.inner_text()
    shot(aaron, "escalation")
    check_accessibility(aaron, "escalations", problems)
    # A refusal needs a reason: the message shows inside the card, nothing changes.
    card.get_by_role("button", name="Refuse").click()
    card = aaron.locator("[data-escalation]", has_text="Priya Privileged")
    card.locator("[data-escalation-problem]", has_text="Say why").wait_for()
    check_accessibility(aaron, "escalations-problem", problems)
    card.get_by_label("Comment").fill("Checked the ticket with Priya's manager.")
    card.get_by_role("button", name="Take it on").click()
    aaron.locator('[data-status="awaiting_approval"]').wait_for()

    leo = new_page()
    sign_in(leo, portal, PERSONAS.lead, "/approvals/")
    leo.locator("text=Priya Privileged").first.wait_for()
    leo.get_by_label("Comment").first.fill("Confirmed with Priya's manager on Teams.")
    leo.get_by_role("button", name="Approve").first.click()
    leo.locator("text=Approved:").wait_for()

    # Ada's page followed it all along: taken on, approved, run.
    ada.locator('#request-status [data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    assert "Aaron Agent" in ada.locator("body").inner_text()
    assert problems == {}


def test_revoke_sessions_records_the_verification_held(new_page: Any, portal: str) -> None:
    page = new_page()
    sign_in(page, portal, PERSONAS.agent, f"/users/{SAM.oid}/")
    _verify_with_emailed_code(page)
    page.get_by_role("link", name="Revoke sign-in sessions").click()
    _fill_reason_and_ticket(page, "INC0013014")
    page.locator("form.form--action [data-submit-once]").click()
    page.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    body = page.locator("body").inner_text()
    assert "None (not needed" not in body, body
    assert "Code sent to" in body, body
