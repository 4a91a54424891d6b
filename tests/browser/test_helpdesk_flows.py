"""The helpdesk in a real browser: headless Chromium (Debian's, never a downloaded one) against a
live portal, a real Celery worker, the real Redis and the HTTPS Entra emulator.

Each test signs in on the emulator's own sign-in page, as a person would. Screenshots of the main
pages are written to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from tests.personas import PERSONAS, Persona

# Playwright's sync API keeps an event loop in this thread; Django would take every ORM call
# made by the test itself for one from async code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FINAL_TIMEOUT_MS = 90_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def portal(
    live_server: Any, fresh_tenant: Any, celery_worker: Any, settings: Settings
) -> Iterator[str]:
    """The live portal's URL, with the demo mailbox, a worker, and a freshly seeded tenant
    (re-seeded after the test too: these flows change people that other tests read)."""
    settings.EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"
    yield live_server.url
    fresh_tenant.reset()


def _new_page(chromium: Any) -> Any:
    # The emulator's certificate comes from the run's own CA (loopback only).
    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 1280, "height": 900}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _sign_in(page: Any, portal: str, persona: Persona, path: str) -> None:
    """Open ``path``, get sent to the emulator's sign-in page, pick the persona there."""
    page.goto(f"{portal}{path}")
    page.locator(f'button[name="emulator_username"][value="{persona.upn}"]').click()
    page.wait_for_url(re.compile(re.escape(portal) + ".*"))
    if page.locator("button", has_text="Continue").count():
        page.locator("button", has_text="Continue").click()
    page.wait_for_url(f"{portal}{path}")


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _open_person_by_keyboard(page: Any, text: str, upn: str, *, shot: str = "") -> None:
    page.locator("#q").fill(text)
    page.locator("[data-result-list] [data-result]", has_text=upn).wait_for()
    if shot:
        _shot(page, shot)
    page.locator("#q").press("ArrowDown")
    focused = page.evaluate("document.activeElement.textContent")
    assert upn in focused
    page.keyboard.press("Enter")
    page.locator("h1", has_text=text).wait_for()


def _verify_with_emailed_code(page: Any, portal: str) -> None:
    page.get_by_role("button", name="Send code").click()
    page.locator("[data-verification=pending]").wait_for()
    mailbox = page.context.new_page()
    mailbox.goto(f"{portal}/mailbox/")
    body = mailbox.locator(".mail__body").first.inner_text()
    mailbox.close()
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
    page = _new_page(chromium)
    _sign_in(page, portal, PERSONAS.agent, "/users/")
    _open_person_by_keyboard(page, "Sam Standard", PERSONAS.standard_target.upn, shot="search")
    page.locator("text=Authenticator app").first.wait_for()
    _shot(page, "person")

    _verify_with_emailed_code(page, portal)
    page.get_by_role("link", name="Require MFA re-registration").click()
    _fill_reason_and_ticket(page)
    _shot(page, "action-form")
    page.get_by_role("button", name="Require MFA re-registration").click()

    page.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    text = page.locator("#request-status").inner_text()
    assert "Removed" in text and "Microsoft Authenticator" in text, text
    assert "Still registered" in text and "Nothing that can be removed." in text, text
    _shot(page, "request")


def test_privileged_action_is_approved_by_a_lead_in_another_browser(
    chromium: Any, portal: str
) -> None:
    agent = _new_page(chromium)
    # Only an agent who holds PAA may act on a privileged person (Entra's tiering, mirrored).
    _sign_in(agent, portal, PERSONAS.privileged_agent, f"/users/{PERSONAS.privileged_target.oid}/")
    agent.locator("text=Authentication Administrator").first.wait_for()
    _verify_manually(agent)
    agent.get_by_role("link", name="Revoke sign-in sessions").click()
    _fill_reason_and_ticket(agent)
    agent.get_by_role("button", name="Ask for approval").click()
    agent.locator('[data-status="awaiting_approval"]').wait_for()

    lead = _new_page(chromium)
    _sign_in(lead, portal, PERSONAS.lead, "/approvals/")
    lead.locator("text=Priya Privileged").first.wait_for()
    _shot(lead, "approvals")
    lead.get_by_label("Comment").first.fill("Confirmed with Priya's manager on Teams.")
    lead.get_by_role("button", name="Approve").first.click()
    lead.locator("text=Approved:").wait_for()

    # The agent's page was polling all along: it follows the request to its end.
    agent.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    agent.reload()
    assert "Approved by Leo Lead" in agent.locator("body").inner_text()


def test_temporary_access_pass_is_shown_once(chromium: Any, portal: str) -> None:
    page = _new_page(chromium)
    _sign_in(page, portal, PERSONAS.agent, f"/users/{PERSONAS.standard_target.oid}/")
    _verify_manually(page)
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
