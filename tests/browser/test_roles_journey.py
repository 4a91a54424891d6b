"""Directory role administration in a real browser: headless Chromium (Debian's, never a
downloaded one) against a live portal, a real Celery worker, the real Redis and the HTTPS Entra
emulator. An Admin adds an eligible PAA holder (PIM, with an end date); a second Admin approves it
in another browser; the first Admin's page follows the change live. (The ``roles`` screenshot
is taken in tests/browser/test_shell_layout.py, with the Admin's header at 1280 px.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.support import FINAL_TIMEOUT_MS, open_page, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_adds_an_eligible_paa_holder_and_a_second_admin_approves(
    chromium: Any, portal: str
) -> None:
    sam = PERSONAS.standard_target
    ana = open_page(chromium)
    sign_in(ana, portal, PERSONAS.admin, "/roles/")
    # The first visit reads the holders from Entra; the page fills in by itself.
    ana.locator('[data-role="Privileged Authentication Administrator"]').wait_for()
    assert (
        "Aaron Agent"
        in ana.locator('[data-role="Privileged Authentication Administrator"]').inner_text()
    )
    ana.get_by_role("link", name="Add a holder of Privileged Authentication Administrator").click()

    ana.get_by_label("Find a person").fill("Sam")
    ana.locator(f'input[name="principal"][value="user:{sam.oid}"]').check()
    ana.get_by_label("Eligible (PIM) until a date").check()
    ends = (timezone.localdate() + timedelta(days=10)).isoformat()
    ana.get_by_label("Until (date)").fill(ends)
    ana.get_by_label("Justification").fill("Sam joins the tier-0 helpdesk rota for the audit.")
    ana.get_by_label("Ticket").fill("INC0012345")
    ana.get_by_role("button", name="Request the change").click()
    ana.locator('[data-status="awaiting_approval"]').wait_for()
    assert "You cannot approve it yourself" in ana.locator("#change-status").inner_text()
    assert ana.get_by_role("button", name="Approve").count() == 0

    abel = open_page(chromium)
    sign_in(abel, portal, PERSONAS.other_admin, "/roles/")
    abel.get_by_role("link", name="Review").click()
    abel.get_by_label("Comment").fill("Agreed: time-bound and eligible only.")
    abel.get_by_role("button", name="Approve").click()
    abel.locator("text=Approved:").wait_for()

    # Ana's page was polling all along: it follows the change to its end.
    ana.locator('[data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    ana.reload()
    assert "Approved by Abel Admin" in ana.locator("body").inner_text()

    ana.get_by_role("link", name="← Directory roles").click()
    paa = ana.locator('[data-role="Privileged Authentication Administrator"]')
    paa.locator(f'[data-holder="{sam.oid}"][data-how="eligible"]').wait_for(
        timeout=FINAL_TIMEOUT_MS
    )
    row = paa.locator(f'[data-holder="{sam.oid}"]').inner_text()
    assert "Eligible (PIM)" in row and "Sam Standard" in row
    assert ana.locator('[data-warning="expiring"]', has_text="Sam Standard").count() == 1
