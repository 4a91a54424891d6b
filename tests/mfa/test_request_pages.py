"""The request pages' logic with Django's client, signed in as the personas, against the real
emulator (issue 13): the live fragment answers 204 while nothing moved and the whole state once
something did; the call carries its ticket and reason to the next action; a Lead's requests page
opens on everyone's. Tasks do not run here (no worker); the browser tests run the whole flow.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from mfa.models import ActionKind, ActionRequest, Status
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
EVIDENCE = "Video call: face matched the HR photo, passport shown to camera."
REASON = "Caller lost their phone and needs to register again."


@pytest.fixture(autouse=True)
def _emulator(emulator: Any) -> Any:
    return emulator


def _verify_manually(client: Client) -> None:
    response = client.post(
        f"/users/{SAM.oid}/verify/manual/",
        {"check": settings.PORTAL_MANUAL_CHECKS[0], "evidence": EVIDENCE},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def _revoke(client: Client) -> ActionRequest:
    url = f"/users/{SAM.oid}/actions/{ActionKind.REVOKE_SESSIONS}/"
    key = re.search(r'name="idempotency_key" value="([^"]+)"', client.get(url).content.decode())
    assert key
    response = client.post(
        url, {"reason": REASON, "ticket": "inc0012345", "idempotency_key": key.group(1)}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return ActionRequest.objects.get()


def test_the_live_fragment_answers_204_until_the_request_moves() -> None:
    """If this failed, the 1 s poll would swap the fragment every second (a comment being typed
    lost, a screen reader re-reading), or worse, miss the move and leave the page stale."""
    ada = signed_in(PERSONAS.agent)
    row = _revoke(ada)
    url = f"/requests/{row.public_id}/"
    live = ada.get(url, HTTP_HX_REQUEST="true").content.decode()
    seen = re.search(r"\?seen=([0-9a-f]+)", live)
    assert seen, live
    assert ada.get(f"{url}?seen={seen.group(1)}", HTTP_HX_REQUEST="true").status_code == 204
    ActionRequest.objects.filter(pk=row.pk).update(status=Status.SUCCEEDED)
    moved = ada.get(f"{url}?seen={seen.group(1)}", HTTP_HX_REQUEST="true")
    assert moved.status_code == 200
    text = moved.content.decode()
    # The whole state travels: the approval line and the facts, and no more Cancel button.
    assert 'data-status="succeeded"' in text and "data-approval" in text
    assert "Cancel this request" not in text and "hx-trigger" not in text


def test_the_next_action_in_the_call_carries_the_ticket_and_reason() -> None:
    """If this failed, an agent would type the ticket and reason again for every action of one
    call (and mistype them)."""
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada)
    before = ada.get(f"/users/{SAM.oid}/actions/{ActionKind.REREGISTER}/").content.decode()
    assert "data-carried" not in before
    _revoke(ada)
    after = ada.get(f"/users/{SAM.oid}/actions/{ActionKind.REREGISTER}/").content.decode()
    assert "data-carried" in after and 'value="INC0012345"' in after and REASON in after
    # Another agent's call carries nothing over.
    aaron = signed_in(PERSONAS.privileged_agent)
    _verify_manually(aaron)
    theirs = aaron.get(f"/users/{SAM.oid}/actions/{ActionKind.REREGISTER}/").content.decode()
    assert "data-carried" not in theirs and REASON not in theirs


def test_a_lead_opens_on_everyones_requests_an_agent_on_their_own() -> None:
    """If this failed, a Lead would open /requests/ on an empty "My requests"."""
    _revoke(signed_in(PERSONAS.agent))
    lead = signed_in(PERSONAS.lead)
    everyone = lead.get("/requests/").content.decode()
    assert "All requests" in everyone and SAM.display_name in everyone
    mine = lead.get("/requests/?all=0").content.decode()
    assert "My requests" in mine and SAM.display_name not in mine
    assert "My requests" in signed_in(PERSONAS.agent).get("/requests/").content.decode()
