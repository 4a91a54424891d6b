"""The default sign-in method: the person page marks it, and a re-registration deletes it last.

Through the real emulator (whose delete rule refuses the default while others remain), the real
graph client and, for re-registration, a real Celery worker. The order of the deletes is read from
the emulator's own Entra audit log.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from entra_emulator.methods_api import PHONE_METHOD_IDS
from mfa.models import ActionKind, ActionRequest, Status
from tests.mfa.action_requests import action_request_make, emulator_audit, wait_final
from tests.personas import PERSONAS, signed_in

SAM = PERSONAS.standard_target
MOBILE = PHONE_METHOD_IDS["mobile"]
PREFERENCES_PATH = r"/beta/users/[^/]+/authentication/signInPreferences"


def _make_mobile_the_default(tenant: Any) -> None:
    """Sam's seeded default is the Authenticator, which the usual order removes last anyway;
    a mobile-phone default (sms) is one the usual order would try too early."""
    with tenant.tenant.lock:
        assert any(m["id"] == MOBILE for m in tenant.tenant.methods[SAM.oid])
        tenant.tenant.default_method[SAM.oid] = MOBILE


def _default_rows(html: str) -> list[str]:
    return re.findall(r"<tr data-default-method>(.*?)</tr>", html, flags=re.S)


# --- the person page --------------------------------------------------------------------------


def _methods_panel(agent: Any) -> str:
    """The person page's methods panel with the default method ("Show the default method")."""
    return str(
        agent.get(
            f"/users/{SAM.oid}/panels/methods/?default=1", HTTP_HX_REQUEST="true"
        ).content.decode()
    )


@pytest.mark.django_db
def test_person_page_marks_the_default_method(tenant: Any) -> None:
    agent = signed_in(PERSONAS.agent)
    html = _methods_panel(agent)
    rows = _default_rows(html)
    assert len(rows) == 1 and "Authenticator app" in rows[0] and "Default" in rows[0], rows
    assert "does not say which method is the default" not in html
    assert "System-preferred MFA is on" in html

    _make_mobile_the_default(tenant)
    # The panel answers from the per-person cache until Refresh forgets it.
    assert agent.post(f"/users/{SAM.oid}/panels/refresh/").status_code == 302
    rows = _default_rows(_methods_panel(agent))
    assert len(rows) == 1 and "Phone" in rows[0] and "Authenticator app" not in rows[0], rows


@pytest.mark.django_db
def test_person_page_says_when_the_default_cannot_be_read(tenant: Any) -> None:
    tenant.faults.add_fail_next(
        "GET", PREFERENCES_PATH, 403, "Authorization_RequestDenied", "Insufficient privileges."
    )
    html = _methods_panel(signed_in(PERSONAS.agent))
    assert _default_rows(html) == []
    assert "The default method could not be read (Authorization_RequestDenied" in html
    assert "Authenticator app" in html  # the methods themselves are still shown


# --- re-registration --------------------------------------------------------------------------


def _reregister() -> ActionRequest:
    return wait_final(action_request_make(ActionKind.REREGISTER).pk)


def _deletes(tenant: Any) -> list[str]:
    """Sam's "deleted security info" events in the emulator's audit log, oldest first (the seed
    writes some history too, so a test compares what was added)."""
    events = emulator_audit(tenant, target_id=SAM.oid, activity_contains="deleted security info")
    return [str(e["resultReason"]) for e in events]


def test_reregistration_deletes_the_known_default_last(tenant: Any, celery_worker: Any) -> None:
    _make_mobile_the_default(tenant)
    seeded = len(_deletes(tenant))
    row = _reregister()

    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert row.result["default_source"] == "signInPreferences"
    assert row.result["default_method_id"] == MOBILE
    assert row.result["plan"][-1]["id"] == MOBILE
    texts = [s["text"] for s in row.steps]
    assert "Reading the default method… done" in texts
    # Known up front, so Graph never had to refuse it.
    assert not any("refused for now" in t for t in texts), texts
    assert _deletes(tenant)[seeded:] == [
        "Admin deleted Authenticator App for user",
        "Admin deleted Mobile Phone for user",
    ]


def test_reregistration_falls_back_when_preferences_cannot_be_read(
    tenant: Any, celery_worker: Any
) -> None:
    _make_mobile_the_default(tenant)
    tenant.faults.add_fail_next(
        "GET", PREFERENCES_PATH, 403, "Authorization_RequestDenied", "Insufficient privileges."
    )
    seeded = len(_deletes(tenant))
    row = _reregister()

    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert row.result["default_source"] == "fallback"
    assert row.result["default_method_id"] is None
    texts = [s["text"] for s in row.steps]
    assert any(t.startswith("Reading the default method… not available") for t in texts), texts
    # The usual order tries the mobile phone first; Graph refuses it as the default, and the
    # retry after the others removes it.
    assert any("refused for now" in t for t in texts), texts
    assert _deletes(tenant)[seeded:] == [
        "Admin deleted Authenticator App for user",
        "Admin deleted Mobile Phone for user",
    ]
