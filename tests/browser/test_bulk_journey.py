"""Incident response in real browsers (issue 14): Rita Responder starts a bulk operation from
the phishing campaign's group, reads the dry run with its refusals and confirms it; Leo Lead
approves it (33 people are more than 25); Rita watches the progress, pauses and resumes it; two
people fail (Graph refuses their revocation, injected in the emulator) and she retries the
failed ones; she exports the results. A second, smaller operation is cancelled while it runs.
Browser -> Django -> Celery (the bulk queue) -> the Graph client -> the HTTPS emulator.

The emulator answers every Graph call LATENCY_MS late, so an operation lasts long enough to be
paused and cancelled by hand; the budget is the run's wide one (tests/plugin.py).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest

from bulk.models import BulkItem, BulkOperation, ItemState
from entra_emulator.seed import GROUP_IDS, PHISHING_GROUP
from mfa.models import ActionRequest
from tests.browser.support import FINAL_TIMEOUT_MS, check_accessibility, shot, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LATENCY_MS = 40
REASON = "Phishing campaign 2026-12: the people who clicked sign in again with new methods"


@pytest.fixture
def slow_graph(fresh_tenant: Any) -> Any:
    """Every Graph answer LATENCY_MS late (fresh_tenant restores the faults afterwards)."""
    fresh_tenant.faults.configure(latency_ms=LATENCY_MS)
    return fresh_tenant.faults


def _counter(page: Any, name: str) -> int:
    return int(page.locator(f"#bulk-live [data-{name}]").first.inner_text())


def _wait_for(
    page: Any, predicate: Any, what: str, timeout_s: float = FINAL_TIMEOUT_MS / 1000
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what} on {page.url}"
        page.wait_for_timeout(200)


def _start_from_the_group(page: Any, portal: str, problems: dict[str, Any]) -> None:
    # Rita holds only Helpdesk.Responder: home, then the navigation's "Bulk".
    sign_in(page, portal, PERSONAS.responder, "/")
    page.get_by_role("link", name="Bulk", exact=True).first.click()
    page.wait_for_url(f"{portal}/bulk/")
    check_accessibility(page, "bulk-list", problems)
    page.get_by_role("link", name="New bulk operation").click()
    page.get_by_label("Find a group").fill("Phishing")
    group = page.locator(f'#group-choices [data-group="{GROUP_IDS[PHISHING_GROUP]}"]')
    group.wait_for()
    check_accessibility(page, "bulk-new", problems)
    page.get_by_label("Group", exact=True).check()
    group.locator("input[type=radio]").check()
    page.get_by_label("Revoke sign-in sessions").check()
    page.get_by_label("Require MFA re-registration").check()
    page.get_by_label("Reason").fill(REASON)
    page.get_by_label("Ticket or incident").fill("INC0099200")
    page.get_by_role("button", name="Run the dry run").click()
    page.locator("[data-dry-run]").wait_for()


def test_a_responder_and_an_approver_walk_the_whole_bulk_flow(
    new_page: Any, portal: str, slow_graph: Any
) -> None:
    problems: dict[str, Any] = {}
    rita = new_page()
    _start_from_the_group(rita, portal, problems)

    # The dry run: 33 included, 3 refused with why (Priya privileged, Rita herself, disabled).
    expect(rita.locator("[data-source]")).to_have_text(f"Group: {PHISHING_GROUP}")
    expect(rita.locator("[data-included-count]")).to_have_text("33")
    expect(rita.locator("[data-refused-count]")).to_have_text("3")
    refused = rita.locator("[data-refused]")
    expect(refused.locator('[data-refusal="privileged_without_paa"]')).to_contain_text(
        PERSONAS.privileged_target.display_name
    )
    expect(refused.locator('[data-refusal="starter"]')).to_contain_text("Rita Responder")
    expect(refused.locator('[data-refusal="disabled"]')).to_have_count(1)
    expect(rita.locator("[data-estimate]")).to_contain_text("33 people")
    expect(rita.locator("[data-needs-approval]")).to_be_visible()
    check_accessibility(rita, "bulk-dry-run", problems)
    shot(rita, "bulk-dry-run")
    operation = BulkOperation.objects.get()
    assert not ActionRequest.objects.exists()  # a dry run acts on nobody

    # Two people Graph will refuse, late in the list (after the pause): their revocation fails.
    included = list(BulkItem.objects.filter(operation=operation, included=True))
    failing = [item.target_id for item in included[-2:]]
    for target_id in failing:
        slow_graph.add_fail_next(
            "POST",
            f"/users/{target_id}/revokeSignInSessions",
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )

    rita.get_by_role("button", name="Confirm and start").click()
    expect(rita.locator('#bulk-status-title [data-status="awaiting_approval"]')).to_be_visible()
    expect(rita.locator("[data-approve]")).to_have_count(0)  # never her own

    # Leo Lead approves it from his list.
    leo = new_page()
    sign_in(leo, portal, PERSONAS.lead, "/bulk/")
    leo.locator("[data-waiting]").get_by_role("link").click()
    expect(leo.locator("[data-decide]")).to_be_visible()
    check_accessibility(leo, "bulk-approve", problems)
    leo.get_by_label("Comment").fill("Confirmed with the SOC on the bridge call")
    leo.get_by_role("button", name="Approve").click()
    expect(leo.locator("[data-decision]")).to_contain_text("Approved by Leo Lead")

    # Rita watches it move (her page polls), then pauses it: the count stops.
    _wait_for(rita, lambda: _counter(rita, "done") >= 3, "three people done")
    check_accessibility(rita, "bulk-watch", problems)
    shot(rita, "bulk-watch")
    rita.get_by_role("button", name="Pause").click()
    rita.locator("#bulk-live [data-paused-by]").wait_for(timeout=FINAL_TIMEOUT_MS)
    # The person being worked on finishes and the runner lets go (the operation is queued
    # again, paused); after that nothing moves while paused.
    _wait_for(
        rita,
        lambda: BulkOperation.objects.get(pk=operation.pk).status != "running",
        "the runner to stop after the current person",
    )
    rita.reload()
    done_paused = _counter(rita, "done")
    rita.wait_for_timeout(2500)
    rita.reload()
    assert _counter(rita, "done") == done_paused
    assert _counter(rita, "left") == 33 - done_paused - _counter(rita, "failed")
    rita.get_by_role("button", name="Resume").click()
    _wait_for(rita, lambda: _counter(rita, "done") > done_paused, "the run to go on")

    # It ends partially: two failures, each with Graph's code and request id.
    final = rita.locator('#bulk-status-title [data-status="partially_succeeded"]')
    final.wait_for(timeout=FINAL_TIMEOUT_MS * 2)
    assert (_counter(rita, "done"), _counter(rita, "failed")) == (31, 2)
    for target_id in failing:
        row = rita.locator(f'[data-included] tr[data-item="{target_id}"]')
        expect(row).to_have_attribute("data-state", "failed")
        expect(row.locator("[data-error-code]")).to_have_text("Authorization_RequestDenied")
        expect(row.locator("[data-request-id]")).not_to_have_text("none")
    check_accessibility(rita, "bulk-final", problems)

    # Retry the failed ones: the injected refusals are used up, both succeed.
    rita.get_by_role("button", name="Retry the 2 failed").click()
    rita.locator('#bulk-status-title [data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    assert (_counter(rita, "done"), _counter(rita, "failed")) == (33, 0)
    states = set(
        BulkItem.objects.filter(operation=operation, included=True).values_list("state", flat=True)
    )
    assert states == {ItemState.SUCCEEDED}
    # Each person's part is a normal action request: both actions succeeded for all 33.
    parts = ActionRequest.objects.filter(bulk_part__item__operation=operation, status="succeeded")
    for kind in ("revoke_sessions", "reregister"):
        acted = set(parts.filter(kind=kind).values_list("target_id", flat=True))
        assert acted == {item.target_id for item in included}, kind

    # Export: every person, included or refused, with the outcome.
    with rita.expect_download() as download:
        rita.locator("[data-export]").click()
    path = download.value.path()
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    header = rows[0]
    assert len(rows) == 1 + 36
    states_in_file = [row[header.index("state")] for row in rows[1:]]
    assert states_in_file.count("succeeded") == 33
    assert {row[header.index("refusal")] for row in rows[1:]} >= {"starter", "disabled"}

    assert problems == {}


def test_a_running_bulk_operation_is_cancelled(new_page: Any, portal: str, slow_graph: Any) -> None:
    """A second operation, small enough to need no approval, cancelled while it runs: the
    people not reached yet are never acted on."""
    problems: dict[str, Any] = {}
    page = new_page()
    _start_from_the_group(page, portal, problems)
    # Only the nested group's three people and a few more: paste them instead.
    operation = BulkOperation.objects.get()
    upns = list(
        BulkItem.objects.filter(operation=operation, included=True).values_list("upn", flat=True)
    )[:12]
    page.goto(f"{portal}/bulk/new/")
    page.get_by_label("Pasted list").check()
    page.get_by_label("UPNs or object ids").fill("\n".join(upns))
    page.get_by_label("Revoke sign-in sessions").check()
    page.get_by_label("Require MFA re-registration").check()
    page.get_by_label("Reason").fill(REASON)
    page.get_by_label("Ticket or incident").fill("INC0099201")
    page.get_by_role("button", name="Run the dry run").click()
    expect(page.locator("[data-included-count]")).to_have_text("12")
    expect(page.locator("[data-needs-approval]")).to_have_count(0)
    page.get_by_role("button", name="Confirm and start").click()
    _wait_for(page, lambda: _counter(page, "done") >= 1, "the first person done")
    page.get_by_role("button", name="Cancel the people left").click()
    page.locator('#bulk-status-title [data-status="cancelled"]').wait_for(timeout=FINAL_TIMEOUT_MS)
    check_accessibility(page, "bulk-cancelled", problems)
    cancelled = BulkOperation.objects.exclude(pk=operation.pk).get()
    states = list(
        BulkItem.objects.filter(operation=cancelled, included=True).values_list("state", flat=True)
    )
    assert ItemState.CANCELLED in states and ItemState.SUCCEEDED in states
    assert ItemState.QUEUED not in states and ItemState.RUNNING not in states
    # Nobody cancelled was acted on: no action request of theirs ever ran.
    for item in BulkItem.objects.filter(operation=cancelled, state=ItemState.CANCELLED):
        assert not ActionRequest.objects.filter(
            bulk_part__item=item, status__in=("running", "succeeded", "failed")
        ).exists()
    assert problems == {}
