"""Issue 13, the role-change page in a real browser (Debian's headless Chromium against the live
portal, a real Celery worker, Redis and the HTTPS emulator).

* Bug 2: the requester's page follows the second Admin's approval to the end, and its approval
  line and buttons move with it without a reload: no "Cancel this change" after success.
* The decider's comment survives the page's polling (the poll answers 204 when nothing moved).
* "Cancel this change" stands apart from "Approve" and "Reject".
* Wording: no "until a date until", no "Approval / Approval", no "(button)" after the holders'
  read time.

Every page shown here is checked with axe-core (0 violations).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.support import FINAL_TIMEOUT_MS, sign_in
from tests.browser.support import check_accessibility as axe_check
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A word, a stray space, then a full stop or comma ("Agent ."): text glued wrongly.
STRAY_SPACE = re.compile(r"\w \.(?:\s|$)|\w ,")


def _check_page(page: Any, name: str, problems: dict[str, Any]) -> None:
    """axe-core (0 violations, any impact), and no stray space before a full stop or comma."""
    axe_check(page, name, problems)
    text = page.locator("main").inner_text()
    stray = [text[max(m.start() - 40, 0) : m.end()] for m in STRAY_SPACE.finditer(text)]
    if stray:
        problems.setdefault(name, {})["stray space"] = stray


PAA = "Privileged Authentication Administrator"


def _ask_for_sam_as_eligible_paa(ana: Any, portal: str) -> date:
    """Ana asks for Sam to become an eligible PAA holder until a date; her change waits for a
    second Admin. Returns the end date."""
    sam = PERSONAS.standard_target
    sign_in(ana, portal, PERSONAS.admin, "/roles/")
    ana.locator(f'[data-role="{PAA}"]').wait_for()
    ana.get_by_role("link", name=f"Add a holder of {PAA}").click()
    ana.get_by_label("Find a person").fill("Sam")
    ana.locator(f'input[name="principal"][value="user:{sam.oid}"]').check()
    ana.get_by_label("Eligible (PIM) until a date").check()
    ends = timezone.localdate() + timedelta(days=10)
    ana.get_by_label("Until (date)").fill(ends.isoformat())
    ana.get_by_label("Justification").fill("Sam joins the tier-0 helpdesk rota for the audit.")
    ana.get_by_label("Ticket").fill("INC0012345")
    ana.get_by_role("button", name="Request the change").click()
    ana.locator('[data-status="awaiting_approval"]').wait_for()
    return ends


def test_role_change_page_follows_the_approval_live(
    new_page: Callable[[], Any], portal: str
) -> None:
    problems: dict[str, Any] = {}
    ana = new_page()
    _ask_for_sam_as_eligible_paa(ana, portal)
    body = ana.locator("body")
    expect(body).to_contain_text("Waiting for a second Admin; expires")
    expect(ana.get_by_role("button", name="Cancel this change")).to_be_visible()
    _check_page(ana, "role change, awaiting approval", problems)

    abel = new_page()
    sign_in(abel, portal, PERSONAS.other_admin, "/roles/")
    abel.get_by_role("link", name="Review").click()
    abel.get_by_label("Comment").fill("Agreed: time-bound and eligible only.")
    abel.get_by_role("button", name="Approve").click()
    abel.locator("text=Approved:").wait_for()

    # Bug 2: Ana's page follows the change to its end; its approval line and buttons move too,
    # without a reload: no "Cancel this change" once it has succeeded.
    ana.locator('#change-status [data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    expect(body).to_contain_text("Approved by Abel Admin")
    expect(body).not_to_contain_text("Waiting for a second Admin")
    expect(ana.get_by_role("button", name="Cancel this change")).to_have_count(0)
    _check_page(ana, "role change, succeeded", problems)
    assert problems == {}, json.dumps(problems, indent=1)


def test_role_change_wording_spacing_and_a_comment_kept_while_polling(
    new_page: Callable[[], Any], portal: str
) -> None:
    problems: dict[str, Any] = {}
    ana = new_page()
    ends = _ask_for_sam_as_eligible_paa(ana, portal)
    # Wording: the kind and its end in one phrase; one "Approval", not a heading and a label.
    text = ana.locator("main").inner_text()
    assert "until a date until" not in text, text
    assert f"Eligible (PIM) until {ends:%-d %b %Y}" in text, text
    assert ana.get_by_text("Approval", exact=True).count() == 1, text

    abel = new_page()
    sign_in(abel, portal, PERSONAS.other_admin, "/roles/")
    # Wording: the holders' read time says why they were read, not "(button)".
    read = abel.locator("[data-snapshot-at]")
    expect(read).to_contain_text("when an Admin asked for it")
    expect(read).not_to_contain_text("(button)")
    abel.get_by_role("link", name="Review").click()
    comment = abel.get_by_label("Comment")
    comment.fill("Agreed: time-bound and eligible only.")
    # The page polls while the change waits; a poll that finds nothing new answers 204 and
    # swaps nothing, so the comment being written stays.
    with abel.expect_response(lambda r: "seen=" in r.url and r.status == 204):
        pass
    expect(comment).to_have_value("Agreed: time-bound and eligible only.")
    # "Cancel this change" stands apart from "Approve".
    approve = abel.get_by_role("button", name="Approve").bounding_box()
    cancel = abel.get_by_role("button", name="Cancel this change").bounding_box()
    assert approve is not None and cancel is not None
    assert cancel["y"] - (approve["y"] + approve["height"]) >= 16, (approve, cancel)
    _check_page(abel, "role change, deciding", problems)
    assert problems == {}, json.dumps(problems, indent=1)
