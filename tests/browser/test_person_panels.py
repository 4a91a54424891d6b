"""The person page in a real browser while Graph's reports budget is short (issue 12, "Done
when"): the page drawn while the budget is exhausted; a waiting panel filling in by itself; a
stale panel refreshed by the button; the per-person cache forgotten after the portal's own reset
and after an outside change that the audit sync sees.

Headless Debian Chromium against the live portal, a real Celery worker, the real Redis (the
shared budget and the cache) and the HTTPS Entra emulator. The budget is exhausted the way a 429
exhausts it: a Retry-After pause recorded in the shared budget (``RequestBudget.record_pause``),
which every process then waits out. Waits are Playwright's, on what the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from audit import tasks as audit_tasks
from graph import methods as graph_methods
from graph.budget import REPORTS
from mfa import person_cache
from portal.graph_client import get_graph_client
from tests.browser.support import FINAL_TIMEOUT_MS, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAM = PERSONAS.standard_target
SAM_PAGE = f"/users/{SAM.oid}/"
METHODS = "#panel-methods"


def _exhaust_reports_budget(seconds: float) -> None:
    """Every process must wait ``seconds`` before its next reports-class call (as after a 429)."""
    get_graph_client().budget.record_pause(REPORTS, seconds)


def _agent_on(new_page: Callable[[], Any], portal: str, path: str = "/users/") -> Any:
    page = new_page()
    sign_in(page, portal, PERSONAS.agent, path)
    return page


def _methods_filled(page: Any) -> Any:
    panel = page.locator(f'{METHODS}[data-panel-state="filled"]')
    panel.wait_for(timeout=FINAL_TIMEOUT_MS)
    return panel


def _method_names(page: Any) -> list[str]:
    cells = _methods_filled(page).locator("tbody td:first-child")
    return [" ".join(text.split()) for text in cells.all_inner_texts()]


def test_the_person_page_is_drawn_while_the_budget_is_exhausted(
    new_page: Callable[[], Any], portal: str
) -> None:
    page = _agent_on(new_page, portal)
    _exhaust_reports_budget(60)
    page.goto(f"{portal}{SAM_PAGE}")
    # The shell: who, tier, manager, the actions, the portal's own requests, the Entra events.
    expect(page.locator("h1")).to_have_text(SAM.display_name)
    expect(page.locator(".person-head")).to_contain_text("Standard")
    expect(page.get_by_role("link", name="Revoke sign-in sessions")).to_be_visible()
    expect(page.locator("#profile-title + dl")).to_contain_text("Manager")
    expect(page.locator("#panel-entra")).to_be_visible()
    # The per-user MFA state is read when the agent asks (one more reports call).
    page.locator('#panel-mfa[data-panel-state="idle"]').get_by_role(
        "link", name="Show the per-user MFA state"
    ).click()
    # The Graph panels say that they wait, how long and their place.
    for panel in (METHODS, "#panel-mfa"):
        waiting = page.locator(f'{panel}[data-panel-state="waiting"]')
        expect(waiting).to_contain_text(
            re.compile(r"waiting for Graph's budget, about \d+ s \(place \d+ in the queue\)")
        )
    assert page.locator(f"{METHODS} table").count() == 0


def test_a_waiting_panel_fills_in_by_itself(new_page: Callable[[], Any], portal: str) -> None:
    page = _agent_on(new_page, portal)
    _exhaust_reports_budget(4)
    page.goto(f"{portal}{SAM_PAGE}")
    page.locator(f'{METHODS}[data-panel-state="waiting"]').wait_for()
    page.evaluate("() => { window.stillTheSamePage = true; }")
    # No reload: the panel asks again after the estimate and fills in.
    names = _method_names(page)
    assert any(name.startswith("Authenticator app") for name in names), names
    expect(page.locator(f"{METHODS} [data-panel-age]")).to_contain_text("Read from Graph")
    # What the page reads only on asking fills in the same way, in place.
    _exhaust_reports_budget(3)
    page.get_by_role("link", name="Show the default method").click()
    page.get_by_role("link", name="Show the per-user MFA state").click()
    expect(page.locator(f"{METHODS} [data-default-method]")).to_contain_text(
        "Default", timeout=FINAL_TIMEOUT_MS
    )
    expect(page.locator('#panel-mfa[data-panel-state="filled"]')).to_contain_text(
        "Disabled", timeout=FINAL_TIMEOUT_MS
    )
    assert page.evaluate("() => window.stillTheSamePage === true")


def test_a_stale_panel_is_refreshed_by_the_button(
    new_page: Callable[[], Any], portal: str, fresh_tenant: Any
) -> None:
    page = _agent_on(new_page, portal, SAM_PAGE)
    assert any(name.startswith("Phone") for name in _method_names(page))
    # Sam's phone goes, behind the portal's back and with no audit event: the cache is stale.
    with fresh_tenant.tenant.lock:
        methods = fresh_tenant.tenant.methods[SAM.oid]
        methods[:] = [m for m in methods if "phoneAuthenticationMethod" not in m["@odata.type"]]
    page.reload()
    assert any(name.startswith("Phone") for name in _method_names(page))
    expect(page.locator(f"{METHODS} [data-panel-age]")).to_contain_text("From the portal's cache")

    page.locator(METHODS).get_by_role("button", name="Refresh").click()
    page.wait_for_url(re.compile(re.escape(f"{portal}{SAM_PAGE}") + "#panels$"))
    names = _method_names(page)
    assert names and not any(name.startswith("Phone") for name in names), names
    expect(page.locator(f"{METHODS} [data-panel-age]")).to_contain_text("Read from Graph")


def test_the_cache_is_forgotten_after_the_portals_own_reset(
    new_page: Callable[[], Any], portal: str
) -> None:
    page = _agent_on(new_page, portal, SAM_PAGE)
    before = _method_names(page)
    assert any(name.startswith("Authenticator app") for name in before), before
    assert person_cache.cached(SAM.oid) is not None

    page.get_by_label("Video call: face matched the HR photo, government ID shown").check()
    page.get_by_label("Evidence").fill("Video call, face matched HR photo, passport shown.")
    page.get_by_role("button", name="Record check").click()
    page.locator("[data-verification=current]").wait_for()
    page.get_by_role("link", name="Require MFA re-registration").click()
    page.get_by_label("Reason").fill("Caller lost the phone and must set up MFA again.")
    page.get_by_label("Ticket").fill("INC0012345")
    page.get_by_role("button", name="Require MFA re-registration").click()
    page.locator('#request-status [data-status="succeeded"]').wait_for(timeout=FINAL_TIMEOUT_MS)

    page.goto(f"{portal}{SAM_PAGE}")
    panel = _methods_filled(page)
    expect(panel).not_to_contain_text("Authenticator app")
    expect(panel).not_to_contain_text("Phone")


@pytest.mark.parametrize("sync", ["this person, from the page", "the tenant-wide task"])
def test_the_cache_is_forgotten_after_an_outside_change_the_audit_sync_sees(
    sync: str, new_page: Callable[[], Any], portal: str
) -> None:
    page = _agent_on(new_page, portal, SAM_PAGE)
    assert any(name.startswith("Phone") for name in _method_names(page))
    # Outside the portal: the phone deleted straight through Graph (Entra logs "Admin deleted
    # security info"; no portal request explains it).
    client = get_graph_client()
    phone = next(
        m for m in graph_methods.list_methods(client, SAM.oid) if "phone" in m.odata_type.lower()
    )
    graph_methods.delete_method(client, SAM.oid, phone)
    page.reload()
    assert any(name.startswith("Phone") for name in _method_names(page))  # still the cache

    if sync == "the tenant-wide task":
        audit_tasks.entra_audit_sync()
    else:
        page.locator("#panel-entra").get_by_role("button", name="Sync this person now").click()
        # The events panel waits for the worker's sync and fills in by itself.
    events = page.locator('#panel-entra[data-panel-state="filled"]')
    if sync == "the tenant-wide task":
        page.reload()
    expect(events.locator("[data-entra-events]")).to_contain_text(
        "deleted security info", timeout=FINAL_TIMEOUT_MS
    )
    # Forgotten: a view since reads Graph. (Left alone, the cache would show the phone for
    # PORTAL_PERSON_CACHE_SECONDS; the page drawn after the sync may have refilled it, fresh.)
    page.reload()
    names = _method_names(page)
    assert names and not any(name.startswith("Phone") for name in names), names
