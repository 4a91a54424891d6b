"""A lead in a real browser: signs in on the emulator's page, finds a given reset in the history,
exports it, and sees the dashboard's charts and flags.

Headless Debian Chromium (never a downloaded browser) against a live portal on the real
database; the history rows are those the services and the sync leave (tests/audit/
history_fixtures.py). Screenshot: docs/screenshots/history-events.png (the event view).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit.models import PortalEvent
from tests.audit.history_fixtures import action_request, entra_record, request_event
from tests.browser.support import shot, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

K = PortalEvent.Kind


def test_lead_finds_a_reset_exports_it_and_reads_the_dashboard(
    chromium: Any, live_server: Any, emulator: Any
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    sam, priya = PERSONAS.standard_target, PERSONAS.privileged_target
    # The reset to find: Ada re-registered Sam on INC0424242; Entra recorded it twice.
    wanted = action_request(
        PERSONAS.agent, sam, created_at=now - timedelta(days=2), ticket="INC0424242"
    )
    request_event(wanted, K.ACTION_REQUESTED, wanted.created_at, actor=PERSONAS.agent)
    entra_record(wanted.created_at + timedelta(minutes=1), sam, request=wanted)
    request_event(wanted, K.ACTION_SUCCEEDED, wanted.created_at + timedelta(minutes=2))
    # Other history, and what the dashboard flags: a privileged target, a repeat reset, a change
    # made directly in Entra.
    other = action_request(
        PERSONAS.privileged_agent,
        priya,
        created_at=now - timedelta(hours=5),
        decided_by=PERSONAS.lead,
    )
    request_event(other, K.ACTION_REQUESTED, other.created_at, actor=PERSONAS.privileged_agent)
    action_request(PERSONAS.agent, sam, created_at=now - timedelta(days=1), ticket="INC0424243")
    entra_record(
        now - timedelta(hours=3),
        sam,
        activity="Admin registered security info",
        outside_portal=True,
        initiated_by=PERSONAS.admin,
    )

    portal = live_server.url
    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 1400, "height": 900}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, portal, PERSONAS.lead, "/audit/?view=events")

    # Find the reset: text search on its ticket.
    page.get_by_label("Text").fill("INC0424242")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*q=INC0424242.*"))
    rows = page.locator("tr[data-row]")
    assert rows.count() == 3  # requested, Entra's record, succeeded
    entra_row = page.locator('tr[data-source="entra"]')
    assert "Ada Agent" in entra_row.inner_text()
    assert "INC0424242" in entra_row.inner_text()
    assert "Admin deleted security info" in page.locator("tr[data-row]").first.inner_text()
    shot(page, "history-events")

    # Export what is on screen.
    with page.expect_download() as download_info:
        page.locator('a[data-export="csv"]').click()
    exported = Path(download_info.value.path()).read_text()
    records = list(csv.DictReader(io.StringIO(exported)))
    assert {r["ticket"] for r in records} == {"INC0424242"}
    assert {r["source"] for r in records} == {"portal", "entra"}
    assert PortalEvent.objects.filter(kind=K.AUDIT_EXPORT, actor_oid=PERSONAS.lead.oid).exists()

    # The dashboard: charts drawn by the vendored library, flags linking to the history.
    page.goto(f"{portal}/dashboard/")
    page.locator('canvas[data-chart="perDayByKind"][data-drawn="true"]').wait_for()
    assert page.locator('canvas[data-drawn="true"]').count() == 5
    assert page.evaluate("typeof window.Chart") == "function"
    privileged = page.locator('[data-flag-group="privileged"] [data-flag]')
    assert privileged.count() == 1
    assert page.locator('[data-flag-group="repeat_reset"] [data-flag]').count() == 1
    assert page.locator('[data-flag-group="outside_portal"] [data-flag]').count() == 1
    page.locator('[data-flag-group="outside_portal"] [data-flag] a').click()
    page.wait_for_url(re.compile(r".*/audit/\?.*outside=1.*"))
    assert page.locator("tr.history__row--outside").count() == 1
    context.close()
