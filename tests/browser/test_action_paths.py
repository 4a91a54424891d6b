"""Every path of the helpdesk actions in a real browser (issue 3, "Done when"): success of each
action, partial success, throttled-then-succeeding, permanent failure, a privileged request
rejected by a lead, and a caller verification that is missing, expired or mistyped.

Headless Debian Chromium (never a downloaded browser) against the live portal, a real Celery
worker, the real Redis and the HTTPS Entra emulator; every person signs in on the emulator's own
sign-in page. Graph failures come from the emulator's fault injection (``fail_next`` rules on
the exact Graph call), so the portal sees what real Graph would send: status, code, message,
``request-id`` and ``Retry-After``. Re-registration's success and the TAP's are in
test_helpdesk_flows.py; this file does not repeat them. Fixtures are in conftest.py.

Waits are Playwright's (``expect``, ``wait_for``) on what the page shows, never fixed sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from mfa.models import ActionRequest, CallerVerification, MailboxMessage, Status
from portal.graph_client import reset_graph_client
from tests.browser.support import sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A request ends within seconds against the emulator; the margin covers a slow CI machine.
FINAL_TIMEOUT_MS = 60_000
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
# Sam's seeded methods (entra_emulator/seed_security.py): Microsoft Authenticator, the default,
# and a mobile phone. The phone's id is fixed by Graph for every user.
SAM_METHODS = f"/v1.0/users/{SAM.oid}/authentication"
PHONE_DELETE = rf"^{SAM_METHODS}/phoneMethods/[^/]+$"
AUTHENTICATOR_DELETE = rf"^{SAM_METHODS}/microsoftAuthenticatorMethods/[^/]+$"


# --- fixtures ---------------------------------------------------------------------------------


# The run's wide Graph budget (tests/plugin.py) spares these walks the real 5-per-10-s reports
# budget; throttling has its own tests (injected 429s here, the budget in tests/graph).


@pytest.fixture
def faults(fresh_tenant: Any) -> Any:
    """The emulator's fault switches (``add_fail_next``); reset after the test."""
    return fresh_tenant.faults


@pytest.fixture
def one_inprocess_retry(settings: Settings) -> Iterator[None]:
    """The Graph client retries a throttled call once in-process (production: 4), so a test
    sees the next layer, the Celery task's own deferral, after two 429s instead of five.
    The process's client is rebuilt with this setting (and again after the test)."""
    settings.GRAPH_MAX_RETRIES = 1
    reset_graph_client()
    yield
    reset_graph_client()


# --- the steps a person takes -------------------------------------------------------------------


def _verify_manually(page: Any) -> None:
    page.get_by_label("Video call: face matched the HR photo, government ID shown").check()
    page.get_by_label("Evidence").fill("Video call, face matched HR photo, passport shown.")
    page.get_by_role("button", name="Record check").click()
    page.locator("[data-verification=current]").wait_for()


def _fill_reason_and_ticket(page: Any) -> None:
    page.get_by_label("Reason").fill("Caller lost the phone and must set up MFA again.")
    page.get_by_label("Ticket").fill("INC0012345")


def _open_action(page: Any, label: str) -> None:
    page.get_by_role("link", name=label).click()
    page.locator("h1", has_text=label).wait_for()


def _submit(page: Any, label: str) -> None:
    page.get_by_role("button", name=label).click()


def _wait_final(page: Any, status: str) -> str:
    """Wait until the live status panel (htmx polling) reaches ``status``; its text."""
    page.locator(f'#request-status [data-status="{status}"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    return str(page.locator("#request-status").inner_text())


def _only_request() -> ActionRequest:
    rows = list(ActionRequest.objects.all())
    assert len(rows) == 1, rows
    return rows[0]


def _method_cell(page: Any, name: str) -> Any:
    """The name cells of the person page's method table that start with ``name``."""
    return page.locator("#methods-title + table tbody td:first-child").filter(
        has_text=re.compile(rf"^\s*{re.escape(name)}\b")
    )


def _sam_page(new_page: Callable[[], Any], portal: str, *, verified: bool = True) -> Any:
    page = new_page()
    sign_in(page, portal, PERSONAS.agent, f"/users/{SAM.oid}/")
    page.locator("text=Authenticator app").first.wait_for()
    if verified:
        _verify_manually(page)
    return page


# --- (1) each action succeeds -----------------------------------------------------------------


def test_revoke_sessions_succeeds_without_a_verification(
    new_page: Callable[[], Any], portal: str
) -> None:
    page = _sam_page(new_page, portal, verified=False)
    # Revoking sessions is the one action that needs no caller verification.
    _open_action(page, "Revoke sign-in sessions")
    assert page.locator("[data-verification=missing]").count() == 0
    _fill_reason_and_ticket(page)
    _submit(page, "Revoke sign-in sessions")

    text = _wait_final(page, "succeeded")
    expect(page.locator("#request-status .step--done")).to_contain_text(
        ["Revoking sign-in sessions… done"]
    )
    assert "has been emailed a notice" in text, text
    assert _only_request().result.get("sessions_revoked")


def test_change_per_user_mfa_state_succeeds(new_page: Callable[[], Any], portal: str) -> None:
    page = _sam_page(new_page, portal)
    # Sam starts with per-user MFA disabled (the seed); the page reads it when asked.
    page.get_by_role("link", name="Show the per-user MFA state").click()
    expect(page.locator("#mfa-title + p .badge")).to_have_text("Disabled")
    _open_action(page, "Change per-user MFA state")
    page.get_by_label("Enforced: MFA required at every sign-in").check()
    _fill_reason_and_ticket(page)
    _submit(page, "Change per-user MFA state")

    text = _wait_final(page, "succeeded")
    assert "Reading the per-user MFA state… disabled" in text, text
    assert "Setting per-user MFA to enforced… done (enforced)" in text, text
    # The change forgot the cache: asked again, the person page reads Graph's new state.
    page.get_by_role("link", name="Sam Standard").first.click()
    page.get_by_role("link", name="Show the per-user MFA state").click()
    expect(page.locator("#mfa-title + p .badge")).to_have_text("Enforced")


def test_delete_one_method_succeeds(new_page: Callable[[], Any], portal: str) -> None:
    page = _sam_page(new_page, portal)
    _open_action(page, "Delete one method")
    page.get_by_role("radio", name=re.compile(r"^Phone")).check()
    _fill_reason_and_ticket(page)
    _submit(page, "Delete one method")

    text = _wait_final(page, "succeeded")
    assert re.search(r"Removing Phone[^\n]*… done", text), text
    expect(page.locator("#request-status")).to_contain_text("Removed")
    # Deleting one method says nothing about what else is registered (no "nothing remains").
    assert "Still registered" not in text and "Nothing that can be removed" not in text, text
    # Graph agrees: the person page lists the Authenticator but no phone any more.
    page.get_by_role("link", name="Sam Standard").first.click()
    expect(_method_cell(page, "Authenticator app")).to_have_count(1)
    expect(_method_cell(page, "Phone")).to_have_count(0)


# --- (2) partial success -------------------------------------------------------------------------


def test_reregistration_with_one_delete_refused_is_partial(
    new_page: Callable[[], Any], portal: str, faults: Any
) -> None:
    # Graph refuses to delete the Authenticator (the default, removed last); the phone goes.
    faults.add_fail_next(
        "DELETE",
        AUTHENTICATOR_DELETE,
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    page = _sam_page(new_page, portal)
    _open_action(page, "Require MFA re-registration")
    _fill_reason_and_ticket(page)
    _submit(page, "Require MFA re-registration")

    text = _wait_final(page, "partially_succeeded")
    expect(page.locator('#request-status [data-status="partially_succeeded"]')).to_have_text(
        "Partially succeeded"
    )
    status = page.locator("#request-status")
    removed = status.locator("h3:has-text('Removed') + ul")
    failed = status.locator("h3:has-text('Could not remove') + ul")
    remaining = status.locator("h3:has-text('Still registered') + ul")
    expect(removed).to_contain_text("Phone")
    expect(failed).to_contain_text("Microsoft Authenticator")
    expect(failed).to_contain_text("Authorization_RequestDenied")
    expect(failed).to_contain_text("Insufficient privileges to complete the operation.")
    expect(failed).to_contain_text(re.compile(rf"request-id {GUID}"))
    expect(remaining).to_contain_text("Microsoft Authenticator")
    assert "Done at" not in text, text  # never reported as a success
    row = _only_request()
    assert row.status == Status.PARTIALLY_SUCCEEDED
    # The request-id on the page is Graph's (the emulator's) for the refused DELETE.
    assert row.result["failed"][0]["request_id"] in text


# --- (3) throttled, then succeeding ----------------------------------------------------------


def test_throttled_delete_waits_then_succeeds(
    new_page: Callable[[], Any], portal: str, faults: Any, one_inprocess_retry: None
) -> None:
    page = _sam_page(new_page, portal)
    _open_action(page, "Delete one method")
    page.get_by_role("radio", name=re.compile(r"^Phone")).check()
    _fill_reason_and_ticket(page)
    # Two 429s with Retry-After: 1 s: the client's own retry takes the first, the second sends
    # the task back to the queue with a visible waiting step; its retry then succeeds.
    faults.add_fail_next(
        "DELETE", PHONE_DELETE, 429, "TooManyRequests", "Too many requests.", count=2
    )
    _submit(page, "Delete one method")

    waiting = page.locator("#request-status .step--waiting", has_text="Waiting for Graph")
    waiting.wait_for(timeout=FINAL_TIMEOUT_MS)
    expect(waiting).to_contain_text("Waiting for Graph (throttled), retrying in 1 s")
    expect(waiting).to_contain_text("TooManyRequests")

    _wait_final(page, "succeeded")
    steps = page.locator("#request-status .steps li").all_inner_texts()
    waited = next(i for i, s in enumerate(steps) if s.startswith("Waiting for Graph"))
    assert any(re.match(r"Removing Phone.*… done", s) for s in steps[waited + 1 :]), steps
    row = _only_request()
    assert row.status == Status.SUCCEEDED and row.attempts == 2, (row.status, row.attempts)
    assert faults.snapshot()["fail_next"] == []  # both 429s were really served


# --- (4) permanent failure --------------------------------------------------------------------


def test_refused_delete_fails_with_graphs_code_message_and_request_id(
    new_page: Callable[[], Any], portal: str, faults: Any
) -> None:
    faults.add_fail_next(
        "DELETE",
        PHONE_DELETE,
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    page = _sam_page(new_page, portal)
    _open_action(page, "Delete one method")
    page.get_by_role("radio", name=re.compile(r"^Phone")).check()
    _fill_reason_and_ticket(page)
    _submit(page, "Delete one method")

    _wait_final(page, "failed")
    expect(page.locator('#request-status [data-status="failed"]')).to_have_text("Failed")
    error = page.locator("#request-status .graph-error")
    expect(error).to_contain_text("Authorization_RequestDenied")
    expect(error).to_contain_text("Insufficient privileges to complete the operation.")
    expect(error).to_contain_text(re.compile(rf"Request-id {GUID}", re.IGNORECASE))
    row = _only_request()
    assert row.status == Status.FAILED and row.attempts == 1  # a 403 is never retried
    assert row.error_request_id and row.error_request_id in error.inner_text()
    # Nothing changed at Graph: the phone is still listed.
    page.get_by_role("link", name="Sam Standard").first.click()
    expect(_method_cell(page, "Phone")).to_have_count(1)


# --- (5) a privileged request rejected by a lead ----------------------------------------------


def test_privileged_request_rejected_by_a_lead_in_another_browser(
    new_page: Callable[[], Any], portal: str
) -> None:
    agent = new_page()
    sign_in(agent, portal, PERSONAS.privileged_agent, f"/users/{PRIYA.oid}/")
    agent.locator("text=Authentication Administrator").first.wait_for()
    _verify_manually(agent)
    _open_action(agent, "Require MFA re-registration")
    _fill_reason_and_ticket(agent)
    _submit(agent, "Ask for approval")
    agent.locator('[data-status="awaiting_approval"]').wait_for()

    lead = new_page()
    sign_in(lead, portal, PERSONAS.lead, "/approvals/")
    card = lead.locator("article.approval", has_text="Priya Privileged")
    card.get_by_label("Comment").fill("No ticket approval from Priya's manager: call back.")
    card.get_by_role("button", name="Reject").click()
    lead.locator(".messages", has_text="Rejected:").wait_for()
    expect(lead.locator("[data-approvals-empty]")).to_be_visible()

    # The agent's page was polling all along: it shows the decision and the lead's reason.
    status = agent.locator("#request-status")
    status.locator('[data-status="rejected"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    expect(status).to_contain_text("Rejected by Leo Lead")
    expect(status).to_contain_text("No ticket approval from Priya's manager: call back.")
    row = _only_request()
    assert row.status == Status.REJECTED and row.attempts == 0  # never ran against Graph


# --- (6) verification missing, expired, wrong code ----------------------------------------------


def test_missing_verification_is_asked_for_and_a_submit_is_refused(
    new_page: Callable[[], Any], portal: str
) -> None:
    page = _sam_page(new_page, portal, verified=False)
    action = page.locator(".action-list li", has_text="Delete one method")
    expect(action).to_contain_text("verify the caller first")
    _open_action(page, "Delete one method")
    expect(page.locator("[data-verification=missing]")).to_contain_text("Verify the caller first.")
    page.get_by_role("radio", name=re.compile(r"^Phone")).check()
    _fill_reason_and_ticket(page)
    _submit(page, "Delete one method")

    refusal = page.locator("[data-policy-error]")
    expect(refusal).to_contain_text("Verify the caller first")
    assert "/requests/" not in page.url
    assert ActionRequest.objects.count() == 0


def test_expired_verification_refuses_the_submit(
    new_page: Callable[[], Any], portal: str, settings: Settings
) -> None:
    page = _sam_page(new_page, portal)
    _open_action(page, "Require MFA re-registration")
    expect(page.locator("[data-verification=current]")).to_be_visible()
    _fill_reason_and_ticket(page)
    # While the agent types, the verification grows older than the limit.
    too_old = timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES, seconds=30)
    moved = CallerVerification.objects.filter(target_id=SAM.oid).update(
        verified_at=timezone.now() - too_old
    )
    assert moved == 1
    _submit(page, "Require MFA re-registration")

    refusal = page.locator("[data-policy-error]")
    expect(refusal).to_contain_text("verify the caller again")
    expect(refusal).to_contain_text(f"{settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES} minutes")
    expect(page.locator("[data-verification=missing]")).to_be_visible()
    assert ActionRequest.objects.count() == 0


def test_wrong_code_says_how_many_tries_are_left(
    new_page: Callable[[], Any], portal: str, settings: Settings
) -> None:
    page = _sam_page(new_page, portal, verified=False)
    page.get_by_role("button", name="Send code").click()
    page.locator("[data-verification=pending]").wait_for()
    # The code reaches the manager's inbox, which the agent cannot open (/mailbox/ shows each
    # person only their own mail): the caller reads it out, the test reads the stored message.
    mail = MailboxMessage.objects.order_by("-id").first()
    assert mail is not None
    body = mail.body
    found = re.search(r"\b(\d{3}) (\d{3})\b", body)
    assert found, body
    code = found.group(1) + found.group(2)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    page.get_by_label("Code the caller reads back").fill(wrong)
    page.get_by_role("button", name="Check code").click()
    tries_left = settings.PORTAL_VERIFICATION_MAX_ATTEMPTS - 1
    expect(page.locator(".messages")).to_contain_text(f"Wrong code. {tries_left} tries left.")
    assert page.locator("[data-verification=current]").count() == 0
    expect(page.locator(".action-list li", has_text="Delete one method")).to_contain_text(
        "verify the caller first"
    )

    # The right code still works after a wrong one.
    page.get_by_label("Code the caller reads back").fill(code)
    page.get_by_role("button", name="Check code").click()
    page.locator("[data-verification=current]").wait_for()
