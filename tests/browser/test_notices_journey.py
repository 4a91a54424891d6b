"""Approvals that people notice, and the manager's own email (issue 13, helper C), in Chromium
against the live portal, a real worker and the HTTPS emulator.

- Bug 3: the manager of the person acted on reads about that person by name, not "you".
- The header counts what waits for the signed-in person; the home page lists it; role grants
  waiting for a second Admin sit on /approvals/ with their Approve button; every approval card
  says when it expires; the verification line up with the facts above it; the approvers were
  mailed.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from mfa.models import ActionKind, ActionRequest, MailboxMessage
from tests.browser.support import (
    FINAL_TIMEOUT_MS,
    check_accessibility,
    open_page,
    shot,
    sign_in,
)
from tests.mfa.action_requests import action_request_make, manual_verification, target_profile
from tests.personas import PAA, PERSONAS, portal_user

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target


def _verify_with_emailed_code(page: Any) -> None:
    page.get_by_role("button", name="Send code").click()
    page.locator("[data-verification=pending]").wait_for()
    mail = (
        MailboxMessage.objects.filter(subject__startswith="Helpdesk verification code")
        .order_by("-id")
        .first()
    )
    assert mail is not None
    code = re.search(r"\b(\d{3}) (\d{3})\b", mail.body)
    assert code, mail.body
    page.get_by_label("Code the caller reads back").fill(code.group(1) + code.group(2))
    page.get_by_role("button", name="Check code").click()
    page.locator("[data-verification=current]").wait_for()


def test_the_manager_reads_about_the_person_not_about_themself(chromium: Any, portal: str) -> None:
    agent = open_page(chromium)
    sign_in(agent, portal, PERSONAS.agent, f"/users/{SAM.oid}/")
    _verify_with_emailed_code(agent)
    agent.get_by_role("link", name="Require MFA re-registration").click()
    agent.get_by_label("Reason").fill("Caller has a new phone and must register again.")
    agent.get_by_label("Ticket").fill("INC0012345")
    agent.get_by_role("button", name="Require MFA re-registration").click()
    agent.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)

    row = ActionRequest.objects.filter(kind=ActionKind.REREGISTER).latest("created_at")
    manager = next(r for r in row.notify_to if r.get("kind") == "manager")

    # Sam's manager has no portal role: an Admin reads the whole demo mailbox.
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.admin, "/mailbox/")
    mail = page.locator(
        "[data-mail]", has_text="Sign-in settings of Sam Standard were changed"
    ).filter(has_text=manager["address"])
    mail.first.wait_for()
    text = mail.first.inner_text()
    assert "Sam Standard will be asked to register their sign-in methods again" in text, text
    assert "Removed sign-in method: Microsoft Authenticator" in text, text
    assert "You will be asked" not in text and "You were signed out" not in text, text
    assert "your account" not in text.lower(), text
    shot(page, "email-manager")
    problems: dict[str, Any] = {}
    check_accessibility(page, "mailbox (manager)", problems)
    assert problems == {}

    # The person themself still reads it in the second person.
    own = MailboxMessage.objects.filter(subject__startswith="Your sign-in settings").latest("id")
    assert "You will be asked to register your sign-in methods again" in own.body


def _role_grant_for_sam() -> Any:
    from roles import services as role_services
    from roles.models import HoldKind, PrincipalType

    return role_services.role_change_create(
        requester=portal_user(PERSONAS.admin),
        change="add",
        role_name=PAA,
        principal_id=SAM.oid,
        principal_type=PrincipalType.USER,
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Sam covers the night shift's privileged resets this month.",
        ticket="REQ-4567",
        idempotency_key=uuid.uuid4().hex,
    )


def _action_waiting_for_approval() -> ActionRequest:
    """Aaron Agent (who holds PAA) asks to revoke Priya Privileged's sessions: it waits for a
    Lead or an Admin. The approvers are portal users who signed in before."""
    for persona in (PERSONAS.lead, PERSONAS.other_lead, PERSONAS.admin, PERSONAS.other_admin):
        portal_user(persona)
    aaron = portal_user(PERSONAS.privileged_agent)
    profile = target_profile(PRIYA)
    action = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=aaron,
        profile=profile,
        verification=manual_verification(aaron, profile),
    )
    assert action.status == "awaiting_approval"
    return action


def _nav_count(page: Any, label: str) -> str:
    return str(page.locator(".site-nav a", has_text=label).locator(".nav-count").inner_text())


def test_an_approval_is_counted_listed_mailed_and_shows_its_expiry(
    chromium: Any, portal: str
) -> None:
    action = _action_waiting_for_approval()
    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.lead, "/")
    problems: dict[str, Any] = {}
    # The header counts it behind Approvals; the home page lists it with its expiry.
    assert _nav_count(page, "Approvals").strip().startswith("1")
    waiting = page.locator("[data-waiting]")
    assert "Waiting for you (1)" in waiting.inner_text()
    item = waiting.locator("[data-waiting-item=approval]").inner_text()
    assert "Revoke sign-in sessions for Priya Privileged" in item, item
    assert re.search(r"Asked by Aaron Agent, \d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}", item), item
    check_accessibility(page, "home (one approval)", problems)

    page.locator("[data-waiting-item=approval] a").click()
    page.wait_for_url(re.compile(rf".*/approvals/#appr-{action.pk}$"))
    card = page.locator(f"#appr-{action.pk}")
    expires = card.locator("[data-expires]").inner_text().replace("\xa0", " ").strip()
    assert re.fullmatch(
        r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} \(in \d+ hours?(, \d+ minutes?)?; "
        r"unapproved, it then ends by itself\)",
        expires,
    ), expires
    # The caller verification lines up with the facts above it (one first column).
    facts = card.locator("dl.facts")
    assert facts.count() >= 2
    top = facts.nth(0).locator("dd").first.bounding_box()
    verification = facts.nth(1).locator("dd").first.bounding_box()
    assert top and verification and abs(top["x"] - verification["x"]) < 1, (top, verification)
    check_accessibility(page, "approvals (one action)", problems)

    # Each approver was told by email, with a link to the card; no reason or secret in it.
    page.goto(f"{portal}/mailbox/")
    notice = page.locator("[data-mail]", has_text="Approval waiting: Revoke sign-in sessions")
    notice.first.wait_for()
    text = notice.first.inner_text()
    assert f"/approvals/#appr-{action.pk}" in text, text
    assert "Priya Privileged" in text and "Aaron Agent" in text, text
    assert action.reason not in text, text
    check_accessibility(page, "mailbox (approver)", problems)
    assert problems == {}


def test_a_role_grant_waits_on_approvals_for_a_second_admin(chromium: Any, portal: str) -> None:
    action = _action_waiting_for_approval()
    grant = _role_grant_for_sam()
    assert grant.status == "awaiting_approval"

    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.other_admin, "/")
    problems: dict[str, Any] = {}
    # Both are counted behind Approvals and listed on the home page, soonest expiry first.
    assert _nav_count(page, "Approvals").strip().startswith("2")
    waiting = page.locator("[data-waiting]")
    assert "Waiting for you (2)" in waiting.inner_text()
    texts = " | ".join(waiting.locator("[data-waiting-item]").all_inner_texts())
    assert "Revoke sign-in sessions for Priya Privileged" in texts, texts
    assert f"{PAA} for Sam Standard" in texts and "Asked by Ana Admin" in texts, texts
    shot(page, "home")
    check_accessibility(page, "home (action and role grant)", problems)

    page.locator("[data-waiting-item=role_grant] a").click()
    page.wait_for_url(re.compile(rf".*/approvals/#grant-{grant.pk}$"))
    grant_card = page.locator(f"#grant-{grant.pk}")
    text = grant_card.inner_text()
    assert "Active, permanent" in text and "REQ-4567" in text and "Ana Admin" in text, text
    assert grant_card.locator("[data-expires]").count() == 1
    assert page.locator(f"#appr-{action.pk} [data-expires]").count() == 1
    shot(page, "approvals")
    check_accessibility(page, "approvals (action and role grant)", problems)

    grant_card.get_by_label("Comment").fill("Agreed with the IT head on Teams.")
    grant_card.get_by_role("button", name="Approve").click()
    page.locator("text=Approved:").wait_for()
    page.goto(f"{portal}/approvals/")
    assert page.locator(f"#grant-{grant.pk}").count() == 0
    assert _nav_count(page, "Approvals").strip().startswith("1")

    # The second Admin was mailed about the grant.
    page.goto(f"{portal}/mailbox/")
    mail = page.locator("[data-mail]", has_text="Role grant waiting for a second Admin")
    mail.first.wait_for()
    assert f"/approvals/#grant-{grant.pk}" in mail.first.inner_text()
    assert problems == {}


def test_an_escalation_is_counted_listed_and_mailed_to_who_can_take_it(
    chromium: Any, portal: str
) -> None:
    # Ada Agent does not hold PAA: her request on Priya Privileged is escalated; Aaron Agent
    # holds PAA, so it waits for him.
    portal_user(PERSONAS.privileged_agent)
    ada = portal_user(PERSONAS.agent)
    profile = target_profile(PRIYA)
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=ada,
        profile=profile,
        verification=manual_verification(ada, profile),
    )
    assert row.status == "escalated"

    page = open_page(chromium)
    sign_in(page, portal, PERSONAS.privileged_agent, "/")
    problems: dict[str, Any] = {}
    assert _nav_count(page, "Escalations").strip().startswith("1")
    item = page.locator("[data-waiting-item=escalation]")
    text = item.inner_text()
    assert "Revoke sign-in sessions for Priya Privileged" in text and "Ada Agent" in text, text
    assert "Take or refuse" in text, text
    check_accessibility(page, "home (one escalation)", problems)
    item.locator("a").click()
    page.wait_for_url(re.compile(rf".*/escalations/#esc-{row.pk}$"))
    page.locator(f"#esc-{row.pk}").wait_for()

    page.goto(f"{portal}/mailbox/")
    mail = page.locator("[data-mail]", has_text="Escalation waiting: Revoke sign-in sessions")
    mail.first.wait_for()
    assert f"/escalations/#esc-{row.pk}" in mail.first.inner_text()
    assert problems == {}
