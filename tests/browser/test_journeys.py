"""The journey of issue 6 that the other browser tests do not walk: a lead finds a reset in the
history, exports it, and opens the dashboard. Headless Chromium against a live portal, a real
worker and the HTTPS emulator (fixtures in conftest.py).
(The README's history and dashboard pictures are taken by test_history_requests.py.)
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from tests.browser.support import FINAL_TIMEOUT_MS, open_page, sign_in
from tests.personas import PERSONAS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The browser and the live portal of the helpdesk flows, shared (used by name).

SAM = PERSONAS.standard_target


def _reset_done_by_the_agent() -> str:
    """Ada requires Sam to register MFA again (manual caller check), through the services; the
    worker carries it out. Returns the request's public id once it succeeded."""
    from mfa.models import ActionKind, Status
    from tests.mfa.action_requests import action_request_make, wait_final

    row = action_request_make(
        ActionKind.REREGISTER, reason="Caller has a new phone and must register again."
    )
    row = wait_final(row.pk, timeout=FINAL_TIMEOUT_MS / 1000)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    return str(row.public_id)


def test_lead_finds_the_reset_in_history_exports_it_and_opens_the_dashboard(
    chromium: Any, portal: str
) -> None:
    public_id = _reset_done_by_the_agent()
    lead = open_page(chromium)
    sign_in(lead, portal, PERSONAS.lead, "/audit/")

    lead.get_by_label("Person (object id)").fill(SAM.oid)
    lead.get_by_role("button", name="Filter").click()
    lead.wait_for_url(f"**/audit/?*target={SAM.oid}*")
    rows = lead.locator("main table tbody tr", has_text="Ada Agent")
    rows.first.wait_for()
    body = lead.locator("main").inner_text()
    assert "Sam Standard" in body and "INC0012345" in body, body[:2000]

    with lead.expect_download() as download_info:
        lead.locator("[data-export=csv]").click()
    exported = download_info.value.path().read_text(encoding="utf-8-sig")
    records = list(csv.DictReader(io.StringIO(exported)))
    assert records, exported[:500]
    assert any(public_id in " ".join(r.values()) for r in records), exported[:2000]
    assert all(SAM.oid in " ".join(r.values()) for r in records)

    lead.get_by_role("link", name="Dashboard").first.click()
    lead.wait_for_url(f"{portal}/dashboard/")
    lead.locator("canvas[data-chart=perDayByKind]").wait_for()
    assert re.search(r"\d+(\.\d)?\s(s|min)$", lead.locator("[data-figure=median]").inner_text())
