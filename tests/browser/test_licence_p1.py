"""A tenant with Entra ID P1 and no P2, in a real browser: the emulator's licence is set to P1
through its control API (``POST /_emulator/licence``), as ``EMULATOR_LICENCE=p1 make run`` does.
Person pages work and tier people by their active roles; the roles page says that eligible
assignments are unavailable and why, and its form offers only an active, permanent assignment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from accounts.capabilities import forget_capabilities
from tests.browser.support import open_page, sign_in
from tests.personas import PERSONAS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _set_licence(server: Any, licence: str) -> None:
    answer = requests.post(
        f"{server.base_url}/_emulator/licence",
        json={"licence": licence},
        verify=str(server.ca_path),
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json() == {"licence": licence}, answer.text


@pytest.fixture
def p1_portal(portal: str, fresh_tenant: Any) -> Iterator[str]:
    """The live portal against the emulator in P1; P2 again afterwards (the emulator is shared
    by the test worker), and the portal's cached capabilities forgotten both times."""
    _set_licence(fresh_tenant, "p1")
    forget_capabilities()
    try:
        yield portal
    finally:
        _set_licence(fresh_tenant, "p2")
        forget_capabilities()


def test_person_pages_and_roles_page_in_p1(chromium: Any, p1_portal: str) -> None:
    ada = open_page(chromium)
    priya, sam = PERSONAS.privileged_target, PERSONAS.standard_target
    sign_in(ada, p1_portal, PERSONAS.agent, f"/users/{priya.oid}/")
    head = ada.locator(".person-head")
    assert "Priya Privileged" in head.inner_text()
    assert head.locator(".badge--priv", has_text="Privileged").count() == 1
    ada.goto(f"{p1_portal}/users/{sam.oid}/")
    assert "Sam Standard" in ada.locator(".person-head").inner_text()
    assert ada.locator(".person-head .badge", has_text="Standard").count() == 1

    ana = open_page(chromium)
    sign_in(ana, p1_portal, PERSONAS.admin, "/roles/")
    ana.locator('[data-role="Privileged Authentication Administrator"]').wait_for()
    notice = ana.locator("[data-pim-unavailable]")
    text = notice.inner_text()
    assert "Eligible assignments are unavailable" in text
    assert "Microsoft Entra ID P2" in text and "AadPremiumLicenseRequired" in text
    assert ana.locator('[data-how="eligible"]').count() == 0
    assert "Aaron Agent" in (
        ana.locator('[data-role="Privileged Authentication Administrator"]').inner_text()
    )

    ana.get_by_role("link", name="Add a holder of Privileged Authentication Administrator").click()
    assert ana.get_by_label("Active and permanent").is_checked()
    assert ana.get_by_label("Eligible (PIM) until a date").count() == 0
    assert ana.get_by_label("Active until a date").count() == 0
    assert ana.get_by_label("Until (date)").count() == 0
    assert "AadPremiumLicenseRequired" in ana.locator("[data-pim-unavailable]").inner_text()
