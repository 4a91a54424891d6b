"""History and the dashboard as a lead reads them (issue 13), in headless Chromium (Debian's)
against a live portal, a real Celery worker and the HTTPS Entra emulator.

Everything goes through the real path: Ada's reset and Ana's role change are made by the real
services and carried out by the worker against the emulator; Entra's records of them come from
the real audit sync, and the role change is linked by ``roles.linking``. Then the lead reads:

- History opens on one row per request (agent, ticket, verification, approval, outcome and
  Entra's record on the row; a click shows its events), an Entra-only event stands alone, and
  the event-level view is one click away (screenshot ``history``);
- Bug 4: the text filter finds portal rows by UPN (``q=sam.standard``), and the CSV's portal
  rows carry ``target_upn``, ``agent_oid``, ``entra_id`` and ``entra_initiated_by``;
- Bug 5: Entra's record of a linked role change is not "no portal request", and "Role change
  succeeded" carries agent, approval and outcome;
- the dashboard: the median under a minute is in seconds, the x-axis labels today, dates read
  "3 Dec" (screenshot ``dashboard``).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.support import FINAL_TIMEOUT_MS, check_accessibility, open_page, shot, sign_in
from tests.personas import PERSONAS, portal_user

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAM, ADA, ANA, LEO = PERSONAS.standard_target, PERSONAS.agent, PERSONAS.admin, PERSONAS.lead
TICKET = "INC0131313"
ROLE_TICKET = "REQ-1313"
# "03 Dec": a day with a leading zero, which no audit page may write.
LEADING_ZERO_DAY = re.compile(r"\b0\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b")


def _reset_by_ada() -> Any:
    """Ada re-registers Sam (a manual caller check), through the service; the worker runs it."""
    from mfa.models import ActionKind, Status
    from tests.mfa.action_requests import action_request_make, wait_final

    row = action_request_make(ActionKind.REREGISTER, ticket=TICKET)
    row = wait_final(row.pk, timeout=FINAL_TIMEOUT_MS / 1000)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    return row


def _role_change_by_ana() -> Any:
    """Ana gives Sam Authentication Administrator (permanent: no approval needed)."""
    from roles import catalog
    from roles.models import HoldKind
    from tests.roles.role_changes import wait_final
    from tests.roles.test_role_services import add

    row = wait_final(
        add(
            portal_user(ANA),
            catalog.AUTH_ADMIN,
            SAM.oid,
            HoldKind.ACTIVE_PERMANENT,
            ticket=ROLE_TICKET,
        )
    )
    assert row.status == "succeeded", (row.error_code, row.steps)
    return row


def _sync_and_link(since: Any) -> None:
    from audit.sync import entra_audit_sync
    from roles.linking import role_changes_correlate

    entra_audit_sync(since=since - timedelta(hours=1))
    role_changes_correlate()


def test_a_upn_finds_portal_rows_and_their_export_carries_upn_agent_and_entra(
    chromium: Any, portal: str
) -> None:
    # Bug 4: q=sam.standard gave no portal rows; the CSV's portal rows had target_upn,
    # agent_oid, entra_id and entra_initiated_by empty.
    start = timezone.now()
    _reset_by_ada()
    _sync_and_link(start)
    page = open_page(chromium)
    page.context.set_default_timeout(20_000)
    problems: dict[str, Any] = {}
    sign_in(page, portal, LEO, "/audit/?view=events")
    page.get_by_label("Text").fill("sam.standard")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*q=sam\.standard.*"))
    page.locator("tr[data-row]").first.wait_for()
    portal_rows = page.locator('tr[data-source="portal"]')
    assert portal_rows.count() >= 3, page.locator("main").inner_text()[:2000]
    assert "Action succeeded" in page.locator("main").inner_text()
    check_accessibility(page, "history-events", problems)

    with page.expect_download() as download_info:
        page.locator('a[data-export="csv"]').click()
    exported = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    records = [r for r in csv.DictReader(io.StringIO(exported)) if r["source"] == "portal"]
    succeeded = next(r for r in records if r["kind"] == "action_succeeded")
    assert succeeded["target_upn"] == SAM.upn, succeeded
    assert succeeded["agent_oid"] == ADA.oid, succeeded
    assert succeeded["entra_id"], succeeded
    assert succeeded["entra_initiated_by"] == "MFA Helpdesk Portal", succeeded
    assert problems == {}
    page.context.close()


def test_history_opens_on_one_row_per_request_that_expands_to_its_events(
    chromium: Any, portal: str
) -> None:
    start = timezone.now()
    reset = _reset_by_ada()
    _sync_and_link(start)
    page = open_page(chromium)
    page.context.set_default_timeout(20_000)
    problems: dict[str, Any] = {}
    sign_in(page, portal, LEO, "/audit/")

    # One row per request: the reset's whole story on one line.
    row = page.locator(f'tbody[data-entry="mfa-{reset.pk}"] tr.history__row')
    row.wait_for()
    text = row.inner_text()
    for expected in (
        "Require MFA re-registration",
        "Sam Standard",
        "Ada Agent",
        TICKET,
        "Not needed",
        "Succeeded",
        "Admin deleted security info",
    ):
        assert expected in text, (expected, text)
    assert "Caller verified" not in text  # the verification is folded into the request
    assert page.locator("tr.history__row td.nowrap time").first.evaluate(
        "el => el.getBoundingClientRect().height < 2 * parseFloat(getComputedStyle(el).lineHeight)"
    ), "the date wraps"
    # A click shows the request's events, the caller check among them.
    button = row.get_by_role("button", name=re.compile(r"\d+ events"))
    assert button.get_attribute("aria-expanded") == "false"
    button.click()
    events = page.locator(f"#events-mfa-{reset.pk}")
    events.wait_for()
    assert button.get_attribute("aria-expanded") == "true"
    listed = events.inner_text()
    assert "Caller verified by a manual check" in listed
    assert "Action succeeded" in listed and "Admin deleted security info" in listed
    assert not LEADING_ZERO_DAY.search(page.locator("main").inner_text())
    check_accessibility(page, "history", problems)
    shot(page, "history")

    # The event-level view is one click away.
    page.get_by_role("link", name="Show every event").click()
    page.wait_for_url(re.compile(r".*view=events.*"))
    assert page.locator("tr[data-row]").count() > 3
    assert problems == {}
    page.context.close()


def test_a_linked_role_change_reads_as_one_request_with_agent_approval_and_outcome(
    chromium: Any, portal: str
) -> None:
    start = timezone.now()
    change = _role_change_by_ana()
    _sync_and_link(start)
    change.refresh_from_db()
    assert change.entra_event_ids, "the role change was not linked to Entra's event"
    page = open_page(chromium)
    problems: dict[str, Any] = {}
    # Bug 5, the event view: Entra's row names the change; "Role change succeeded" carries
    # agent, approval and outcome.
    sign_in(page, portal, LEO, f"/audit/?view=events&target={SAM.oid}")
    entra = page.locator('tr[data-source="entra"]', has_text="Add member to role")
    entra.wait_for()
    assert "no portal request" not in entra.inner_text()
    assert "Ana Admin" in entra.inner_text()
    assert "Authentication Administrator" in entra.inner_text()
    done = page.locator('tr[data-kind="role_change_succeeded"]')
    cells = done.locator("td").all_inner_texts()
    agent, approval, other_side, outcome = cells[3], cells[7], cells[8], cells[9]
    assert "Ana Admin" in agent, cells
    assert approval.strip() == "Not needed", cells
    assert "Success" in outcome, cells
    assert "Add member to role" in other_side, cells
    check_accessibility(page, "history-role-change-events", problems)

    # The request view: the role change is one row, with Entra's record on it.
    page.goto(f"{portal}/audit/?q={ROLE_TICKET}")
    row = page.locator(f'tbody[data-entry="roles-{change.pk}"] tr.history__row')
    row.wait_for()
    text = row.inner_text()
    for expected in ("Authentication Administrator", "Ana Admin", ROLE_TICKET, "Not needed"):
        assert expected in text, (expected, text)
    assert "Add member to role" in text and "no portal request" not in text
    check_accessibility(page, "history-role-change", problems)
    assert problems == {}
    page.context.close()


def test_dashboard_median_in_seconds_today_on_the_axis_and_days_without_zero(
    chromium: Any, portal: str
) -> None:
    from audit.sync import entra_audit_sync

    _reset_by_ada()
    # The emulator's tenant comes with weeks of Entra history, much of it by the portal's own
    # app (its client id) before the portal recorded anything: what the lead saw listed as
    # changes "by MFA Helpdesk Portal" outside the portal.
    entra_audit_sync(since=timezone.now() - timedelta(days=8))
    page = open_page(chromium)
    problems: dict[str, Any] = {}
    sign_in(page, portal, LEO, "/dashboard/")
    page.locator('canvas[data-chart="medianMinutesPerDay"][data-drawn="true"]').wait_for()
    today = timezone.localdate()
    # The last day on the axis is labelled, and it is today ("2 Dec"; eee6038 wrote "12-02").
    labels = (f"{today.day} {today:%b}", today.strftime("%m-%d"))
    for chart in ("perDayByKind", "privilegedPerDay", "medianMinutesPerDay"):
        ticks = page.evaluate(
            """name => {
                const canvas = document.querySelector(`canvas[data-chart="${name}"]`);
                const chart = Chart.getChart(canvas);
                return chart.scales.x.ticks.map(t => t.label).filter(Boolean);
            }""",
            chart,
        )
        assert ticks[-1] in labels, (chart, ticks)
    outside = page.locator('[data-flag-group="outside_portal"] [data-flag]')
    texts = outside.all_inner_texts()
    # Entra's changes by the portal's app from before the portal's records: one line, explained.
    assert re.match(r"\d+ changes? by the portal's own app", texts[0]), texts
    assert "no portal request can explain them" in texts[0], texts
    assert not [t for t in texts[1:] if "by MFA Helpdesk Portal" in t], texts
    median = page.locator("[data-figure=median]").inner_text()
    # A reset takes seconds: "0.4 s" (a no-break space before the unit), not "0.0 min".
    assert re.fullmatch(r"\d+(\.\d)?\u00a0s", median), median
    assert "Median seconds" in page.locator("main").inner_text()
    assert [t for t in ticks if t] and ticks[-1] == labels[0], ticks
    assert not LEADING_ZERO_DAY.search(page.locator("main").inner_text())
    check_accessibility(page, "dashboard", problems)
    shot(page, "dashboard")
    assert problems == {}
    page.context.close()
