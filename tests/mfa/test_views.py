"""The helpdesk pages with Django's client, signed in as the personas, against the real emulator.

Tasks are not run here (no worker: ``transaction.on_commit`` never fires inside a test
transaction); the browser tests run the whole flow with a real worker.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from pytest_django.fixtures import Settings

from audit.models import PortalEvent
from mfa import tap_vault
from mfa.models import ActionKind, ActionRequest, CallerVerification, Status
from tests.personas import PERSONAS, portal_user, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
EVIDENCE = "Video call: face matched the HR photo, passport shown to camera."


@pytest.fixture(autouse=True)
def _emulator(emulator: Any) -> Any:
    return emulator


def _verify_manually(client: Client, target_oid: str) -> None:
    response = client.post(
        f"/users/{target_oid}/verify/manual/",
        {"check": settings.PORTAL_MANUAL_CHECKS[0], "evidence": EVIDENCE},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def _form_key(client: Client, url: str) -> str:
    html = client.get(url).content.decode()
    match = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert match, html[:3000]
    return match.group(1)


def _request(
    client: Client, target_oid: str, kind: str, extra: dict[str, Any] | None = None
) -> Any:
    url = f"/users/{target_oid}/actions/{kind}/"
    data = {
        "reason": "Caller lost their phone and needs to register again.",
        "ticket": "INC0012345",
        "idempotency_key": _form_key(client, url),
        **(extra or {}),
    }
    return client.post(url, data)


def _created(response: Any) -> ActionRequest:
    assert response.status_code == 302, response.content.decode()[:3000]
    public_id = response["Location"].rstrip("/").rsplit("/", 1)[1]
    return ActionRequest.objects.get(public_id=public_id)


# --- persona matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/users/",
        f"/users/{SAM.oid}/",
        f"/users/{SAM.oid}/actions/revoke_sessions/",
        "/requests/",
    ],
)
def test_agent_lead_admin_may_open_the_helpdesk_pages_and_outsider_may_not(url: str) -> None:
    for persona in (PERSONAS.agent, PERSONAS.lead, PERSONAS.admin):
        assert signed_in(persona).get(url).status_code == 200, (persona.key, url)
    refused = signed_in(PERSONAS.outsider).get(url)
    assert refused.status_code == 403
    assert Client().get(url).status_code == 302  # anonymous: to sign-in


@pytest.mark.parametrize("path", ["verify/send/", "verify/check/", "verify/manual/"])
def test_outsider_cannot_verify(path: str) -> None:
    assert signed_in(PERSONAS.outsider).post(f"/users/{SAM.oid}/{path}").status_code == 403
    assert not CallerVerification.objects.exists()


def test_approvals_are_for_leads_and_admins_only() -> None:
    assert signed_in(PERSONAS.agent).get("/approvals/").status_code == 403
    assert signed_in(PERSONAS.outsider).get("/approvals/").status_code == 403
    assert signed_in(PERSONAS.lead).get("/approvals/").status_code == 200
    assert signed_in(PERSONAS.admin).get("/approvals/").status_code == 200


def test_request_page_is_for_its_requester_and_leads() -> None:
    ada = signed_in(PERSONAS.agent)
    ar = _created(_request(ada, SAM.oid, ActionKind.REVOKE_SESSIONS))
    url = f"/requests/{ar.public_id}/"
    assert ada.get(url).status_code == 200
    assert signed_in(PERSONAS.privileged_agent).get(url).status_code == 404
    assert signed_in(PERSONAS.lead).get(url).status_code == 200
    assert signed_in(PERSONAS.admin).get(url).status_code == 200
    assert signed_in(PERSONAS.outsider).get(url).status_code == 403
    # Another agent's list does not show it; a lead's "all" list does.
    assert (
        str(ar.public_id)
        not in signed_in(PERSONAS.privileged_agent).get("/requests/").content.decode()
    )
    assert str(ar.public_id) in signed_in(PERSONAS.lead).get("/requests/?all=1").content.decode()


def test_mailbox_exists_only_with_the_demo_backend(settings: Settings) -> None:
    settings.EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"
    assert signed_in(PERSONAS.agent).get("/mailbox/").status_code == 200
    assert signed_in(PERSONAS.outsider).get("/mailbox/").status_code == 403
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert signed_in(PERSONAS.agent).get("/mailbox/").status_code == 404


# --- the person page --------------------------------------------------------------------------


def _with_panels(client: Client, oid: str) -> str:
    """The person page as a browser shows it once its Graph panels (fragments) have loaded."""
    html = client.get(f"/users/{oid}/").content.decode()
    for name in ("methods", "mfa"):
        html += client.get(f"/users/{oid}/panels/{name}/", HTTP_HX_REQUEST="true").content.decode()
    return html


def test_person_page_shows_profile_methods_state_roles_and_actions() -> None:
    html = _with_panels(signed_in(PERSONAS.agent), SAM.oid)
    assert SAM.display_name in html and SAM.upn in html
    assert "Authenticator app" in html and "Phone" in html
    assert "+44 **** **0123" in html and "+44 7700 900123" not in html  # masked
    assert "Per-user MFA" in html and "Disabled" in html
    assert "No directory role." in html and "Standard" in html
    for kind in ActionKind:
        assert f"/users/{SAM.oid}/actions/{kind.value}/" in html
    assert "Manager" in html

    priya = signed_in(PERSONAS.privileged_agent).get(f"/users/{PRIYA.oid}/").content.decode()
    assert "Authentication Administrator" in priya and "Privileged" in priya
    assert "waits for a Lead or an Admin" in priya
    # An agent without PAA is told to escalate, naming who can take it; the actions are offered.
    escalate = signed_in(PERSONAS.agent).get(f"/users/{PRIYA.oid}/").content.decode()
    assert "data-no-actions" not in escalate and "Escalate to Aaron Agent" in escalate


def test_nobody_is_offered_actions_on_themself() -> None:
    html = signed_in(PERSONAS.agent).get(f"/users/{PERSONAS.agent.oid}/").content.decode()
    assert "You may not take any action on this person." in html
    response = signed_in(PERSONAS.agent).get(
        f"/users/{PERSONAS.agent.oid}/actions/revoke_sessions/"
    )
    assert response.status_code == 403


def test_unknown_person_is_404() -> None:
    response = signed_in(PERSONAS.agent).get("/users/00000000-0000-4000-8000-000000000000/")
    assert response.status_code == 404


# --- actions ----------------------------------------------------------------------------------


def test_action_without_verification_is_refused_and_nothing_changes() -> None:
    ada = signed_in(PERSONAS.agent)
    form = ada.get(f"/users/{SAM.oid}/actions/reregister/").content.decode()
    assert 'data-verification="missing"' in form
    response = _request(ada, SAM.oid, ActionKind.REREGISTER)
    assert response.status_code == 409
    assert "Verify the caller first" in response.content.decode()
    assert not ActionRequest.objects.exists()


def test_bad_input_shows_form_errors_and_nothing_changes() -> None:
    ada = signed_in(PERSONAS.agent)
    url = f"/users/{SAM.oid}/actions/revoke_sessions/"
    key = _form_key(ada, url)
    response = ada.post(url, {"reason": "short", "ticket": "ticket 5", "idempotency_key": key})
    assert response.status_code == 400
    html = response.content.decode()
    assert "That is not a ticket reference" in html and settings.PORTAL_TICKET_HINT in html
    assert "at least 10 characters" in html
    assert not ActionRequest.objects.exists()


def test_verified_reregistration_is_recorded_with_its_verification() -> None:
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada, SAM.oid)
    form = ada.get(f"/users/{SAM.oid}/actions/reregister/").content.decode()
    assert 'data-verification="current"' in form
    ar = _created(_request(ada, SAM.oid, ActionKind.REREGISTER, {"revoke_sessions": "on"}))
    assert ar.status == Status.PENDING and ar.kind == ActionKind.REREGISTER
    assert ar.verification is not None and ar.verification.method == "manual"
    assert ar.params == {"revoke_sessions": True}
    assert PortalEvent.objects.filter(kind="action_requested", request=ar.pk).exists()
    page = ada.get(f"/requests/{ar.public_id}/").content.decode()
    assert EVIDENCE in page and "Queued" in page


def test_double_submit_makes_one_request() -> None:
    ada = signed_in(PERSONAS.agent)
    url = f"/users/{SAM.oid}/actions/revoke_sessions/"
    data = {
        "reason": "Caller reports a stolen laptop, sign out everywhere.",
        "ticket": "INC0099887",
        "idempotency_key": _form_key(ada, url),
    }
    first = ada.post(url, data)
    second = ada.post(url, data)  # the double click / the back-button resubmit
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert ActionRequest.objects.count() == 1


def test_policy_refusal_is_shown_plainly() -> None:
    ada = signed_in(PERSONAS.agent)
    _created(_request(ada, SAM.oid, ActionKind.REVOKE_SESSIONS))
    # A second open request of the same family on the same person: the lock refuses it.
    response = _request(ada, SAM.oid, ActionKind.REVOKE_SESSIONS)
    assert response.status_code == 409
    assert "data-policy-error" in response.content.decode()
    assert ActionRequest.objects.count() == 1


def test_tap_form_keeps_within_the_tenant_policy() -> None:
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada, SAM.oid)
    response = _request(
        ada, SAM.oid, ActionKind.ISSUE_TAP, {"lifetime_minutes": "5", "usable_once": "on"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    errors = html.split('id="id_lifetime_minutes_errors"', 1)[1].split("</ul>", 1)[0]
    assert "greater than or equal to 10" in errors or "Choose between" in errors
    assert not ActionRequest.objects.exists()


def test_delete_method_form_lists_deletable_methods_only() -> None:
    html = signed_in(PERSONAS.agent).get(f"/users/{SAM.oid}/actions/delete_method/")
    text = html.content.decode()
    assert "Authenticator app" in text and "Password" not in text


# --- approvals --------------------------------------------------------------------------------


def test_privileged_request_waits_for_another_lead() -> None:
    # Entra's tiering is mirrored: only an agent holding PAA may act on a privileged person.
    # Without PAA the form is open: a submission is escalated (tests/mfa/test_escalation.py).
    form = signed_in(PERSONAS.agent).get(f"/users/{PRIYA.oid}/actions/revoke_sessions/")
    assert form.status_code == 200
    ada = signed_in(PERSONAS.privileged_agent)
    ar = _created(_request(ada, PRIYA.oid, ActionKind.REVOKE_SESSIONS))
    assert ar.status == Status.AWAITING_APPROVAL

    leo = signed_in(PERSONAS.lead)
    page = leo.get("/approvals/").content.decode()
    assert PRIYA.display_name in page and "Authentication Administrator" in page
    assert "INC0012345" in page and "Approve" in page

    # The agent can neither see the queue nor post a decision.
    assert ada.post(f"/approvals/{ar.public_id}/", {"decision": "approve"}).status_code == 403

    response = leo.post(
        f"/approvals/{ar.public_id}/",
        {"decision": "approve", f"d{ar.pk}-comment": "Checked with the team, go ahead."},
    )
    assert response.status_code == 302
    ar.refresh_from_db()
    assert ar.status == Status.PENDING and ar.decided_by_name == "Leo Lead"
    detail = ada.get(f"/requests/{ar.public_id}/").content.decode()
    assert "Approved" in detail and "Checked with the team" in detail


def test_lead_cannot_approve_their_own_request_and_a_rejection_is_final(
    settings: Settings,
) -> None:
    # No lead holds PAA in the demo tenant: without the mirrored tiering a lead may request.
    settings.PORTAL_MIRROR_ENTRA_TIERING = False
    lena = signed_in(PERSONAS.other_lead)
    ar = _created(_request(lena, PRIYA.oid, ActionKind.REVOKE_SESSIONS))
    assert "another Lead or Admin must decide" in lena.get("/approvals/").content.decode()
    own = lena.post(
        f"/approvals/{ar.public_id}/", {"decision": "approve", f"d{ar.pk}-comment": "self"}
    )
    assert own.status_code == 403
    ana = signed_in(PERSONAS.admin)
    ana.post(
        f"/approvals/{ar.public_id}/",
        {"decision": "reject", f"d{ar.pk}-comment": "No ticket context, call back."},
    )
    ar.refresh_from_db()
    assert ar.status == Status.REJECTED


def test_rate_override_lets_the_agent_past_the_limit(
    settings: Settings, django_capture_on_commit_callbacks: Any
) -> None:
    ada = signed_in(PERSONAS.agent)
    _created(_request(ada, SAM.oid, ActionKind.REVOKE_SESSIONS))
    settings.PORTAL_AGENT_RATE_LIMIT = 1
    _verify_manually(ada, SAM.oid)
    limited = _request(ada, SAM.oid, ActionKind.SET_MFA_STATE, {"state": "enforced"})
    assert limited.status_code == 409 and "limit" in limited.content.decode()

    leo = signed_in(PERSONAS.lead)
    agent_pk = portal_user(PERSONAS.agent).pk
    assert f'value="{agent_pk}"' in leo.get("/approvals/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        granted = leo.post(
            "/approvals/rate-override/", {"agent": agent_pk, "comment": "Major incident"}
        )
    assert granted.status_code == 302
    ar = _created(_request(ada, SAM.oid, ActionKind.SET_MFA_STATE, {"state": "enforced"}))
    assert ar.rate_override_by is not None
    assert PortalEvent.objects.filter(kind="rate_override").count() == 2  # grant and use
    # An agent cannot grant overrides.
    assert ada.post("/approvals/rate-override/", {"agent": agent_pk}).status_code == 403


# --- request status and the pass --------------------------------------------------------------


def test_status_fragment_polls_until_final() -> None:
    ada = signed_in(PERSONAS.agent)
    ar = _created(_request(ada, SAM.oid, ActionKind.REVOKE_SESSIONS))
    url = f"/requests/{ar.public_id}/"
    live = ada.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in live and "<html" not in live
    ActionRequest.objects.filter(pk=ar.pk).update(status=Status.SUCCEEDED)
    final = ada.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in final and 'data-status="succeeded"' in final


def test_pass_is_shown_once_to_its_requester_only() -> None:
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada, SAM.oid)
    ar = _created(
        _request(
            ada, SAM.oid, ActionKind.ISSUE_TAP, {"lifetime_minutes": "60", "usable_once": "on"}
        )
    )
    # What the worker does on success: the pass goes to the vault, never to the row.
    ActionRequest.objects.filter(pk=ar.pk).update(status=Status.SUCCEEDED)
    tap_vault.tap_store(public_id=ar.public_id, requester_id=ar.requester_id, pass_value="Xy7!kP2q")

    assert signed_in(PERSONAS.lead).post(f"/requests/{ar.public_id}/tap/").status_code == 404
    page = ada.get(f"/requests/{ar.public_id}/").content.decode()
    assert "Reveal pass" in page and "Xy7!kP2q" not in page

    shown = ada.post(f"/requests/{ar.public_id}/tap/")
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    assert "Xy7!kP2q" in shown.content.decode() and "data-copy-target" in shown.content.decode()

    again = ada.post(f"/requests/{ar.public_id}/tap/")
    assert "Xy7!kP2q" not in again.content.decode() and "data-tap-gone" in again.content.decode()
    assert "Reveal pass" not in ada.get(f"/requests/{ar.public_id}/").content.decode()
