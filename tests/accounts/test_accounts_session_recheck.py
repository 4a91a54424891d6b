"""Issue 10, points 8 and 12: a session follows Entra while it lasts, and the sign-in callback
speaks Entra's words only for a sign-in this browser started.

Point 8 runs through the real views with Django's client against the emulator: a removed portal
role or a disabled account ends the session at the next request once the re-check is due (the
approve view included: a Lead whose role was removed decides nothing), a role through a group
still counts, and Graph failing keeps the session.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from accounts.middleware import RETRY_SECONDS, SESSION_KEY
from audit.models import PortalEvent
from entra_emulator.seed import GROUP_IDS, HELPDESK_LEADS_GROUP
from mfa.models import ActionKind, ActionRequest, Status
from tests.mfa.action_requests import action_request_make, target_profile
from tests.personas import PERSONAS, portal_user, signed_in

pytestmark = pytest.mark.django_db

ADA = PERSONAS.agent
LEO = PERSONAS.lead
PRIYA = PERSONAS.privileged_target
EVIL = "Your account is locked. Call +1 555 0100 and read out your code."


def _due_now(client: Client) -> None:
    """Make the next request re-check the person in Entra (as if the period had passed)."""
    assert client.get("/users/").status_code == 200  # the first request starts the clock
    session = client.session
    assert isinstance(session.get(SESSION_KEY), float)
    session[SESSION_KEY] = 0.0
    session.save()


def _sign_outs(persona: Any) -> list[PortalEvent]:
    return list(PortalEvent.objects.filter(kind=PortalEvent.Kind.SIGN_OUT, actor_oid=persona.oid))


# --- point 8 ------------------------------------------------------------------------------------


def test_a_lead_whose_role_was_removed_cannot_approve(tenant: Any) -> None:
    waiting = action_request_make(
        ActionKind.REVOKE_SESSIONS,
        agent=portal_user(PERSONAS.privileged_agent),
        profile=target_profile(PRIYA),
    )
    assert waiting.status == Status.AWAITING_APPROVAL
    leo = signed_in(LEO)
    _due_now(leo)
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments[LEO.oid].discard("Helpdesk.Lead")

    response = leo.post(
        f"/approvals/{waiting.public_id}/",
        {"decision": "approve", f"d{waiting.pk}-comment": "Checked with the team, go ahead."},
    )

    assert response.status_code == 403
    page = response.content.decode()
    assert "Your session has ended" in page and "Lead" in page
    assert ActionRequest.objects.get(pk=waiting.pk).status == Status.AWAITING_APPROVAL
    assert "_auth_user_id" not in leo.session
    (event,) = _sign_outs(LEO)
    assert "portal role was removed" in event.detail["reason"]
    # Signed out for good: the next page asks to sign in.
    assert leo.get("/approvals/").status_code == 302


def test_a_disabled_account_ends_the_session_at_the_next_request(tenant: Any) -> None:
    ada = signed_in(ADA)
    _due_now(ada)
    with tenant.tenant.lock:
        tenant.tenant.users[ADA.oid]["accountEnabled"] = False

    response = ada.get("/users/")

    assert response.status_code == 403
    assert "disabled" in response.content.decode()
    assert "_auth_user_id" not in ada.session
    (event,) = _sign_outs(ADA)
    assert "disabled" in event.detail["reason"]


def test_the_check_waits_for_its_period_and_a_role_through_a_group_counts(tenant: Any) -> None:
    leo = signed_in(LEO)
    assert leo.get("/approvals/").status_code == 200
    # Within the period nothing is read: a removal shows only once the check is due.
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments[LEO.oid].discard("Helpdesk.Lead")
    assert leo.get("/approvals/").status_code == 200
    # Now the role comes through the leads group Leo is a direct member of.
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments[GROUP_IDS[HELPDESK_LEADS_GROUP]] = {"Helpdesk.Lead"}
    _due_now(leo)

    assert leo.get("/approvals/").status_code == 200
    assert leo.session[SESSION_KEY] > 0 and _sign_outs(LEO) == []


def test_graph_failing_keeps_the_session_and_tries_again_soon(
    tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ada = signed_in(ADA)
    _due_now(ada)
    # The tenant has not granted Application.Read.All (an answer the client does not retry).
    tenant.faults.add_fail_next(
        "GET",
        r"/servicePrincipals",
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        count=5,
    )
    with caplog.at_level(logging.WARNING, logger="accounts.middleware"):
        response = ada.get("/requests/")

    assert response.status_code == 200
    assert "_auth_user_id" in ada.session and _sign_outs(ADA) == []
    assert any("could not re-check" in r.getMessage() for r in caplog.records)
    assert 0 < ada.session[SESSION_KEY] - time.time() <= RETRY_SECONDS


# --- point 12 -----------------------------------------------------------------------------------


def test_entra_error_text_is_not_shown_without_a_sign_in_of_this_browser(client: Client) -> None:
    response = client.get(
        "/oauth2/callback",
        {"error": "access_denied", "error_description": EVIL, "state": "forged"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "+1 555 0100" not in page and "locked" not in page
    assert "could not be verified" in page
    without_state = client.get("/oauth2/callback", {"error": "x", "error_description": EVIL})
    assert "+1 555 0100" not in without_state.content.decode()


def test_entra_error_text_is_shown_for_a_sign_in_this_browser_started(
    client: Client, emulator: Any
) -> None:
    started = client.get("/oauth2/login")
    assert started.status_code == 302
    state = parse_qs(urlsplit(started["Location"]).query)["state"][0]
    response = client.get(
        "/oauth2/callback",
        {
            "error": "access_denied",
            "error_description": "AADSTS50105: not assigned",
            "state": state,
        },
    )
    assert response.status_code == 400
    assert "AADSTS50105: not assigned" in response.content.decode()
