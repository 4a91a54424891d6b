"""Two tabs, or a second click on a fresh form, must not do the same thing twice to one person.

Issue 10, point 10: two tabs with different submission tokens issued 4 TAPs for one person in
0.7 s. The same kind on the same person by the same agent within PORTAL_REPEAT_WINDOW_MINUTES of
a success needs the agent's confirmation with a reason (recorded as an event of the new
request); and a submission that meets another one being recorded is told "busy" at once instead
of waiting behind the lock. Through the pages, signed in as the personas; no worker runs (the
first request's success is what the worker would have recorded).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from audit.models import PortalEvent
from mfa import policy
from mfa.locks import target_lock
from mfa.models import ActionKind, ActionRequest, Status
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
TAP_URL = f"/users/{SAM.oid}/actions/{ActionKind.ISSUE_TAP}/"
EVIDENCE = "Video call: face matched the HR photo, passport shown to camera."


@pytest.fixture(autouse=True)
def _emulator(emulator: Any) -> Any:
    return emulator


def _verify_manually(client: Client) -> None:
    response = client.post(
        f"/users/{SAM.oid}/verify/manual/",
        {"check": settings.PORTAL_MANUAL_CHECKS[0], "evidence": EVIDENCE},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def _post_tap(client: Client, **extra: Any) -> Any:
    """The TAP form as a fresh tab posts it: its own submission token."""
    return client.post(
        TAP_URL,
        {
            "reason": "Caller lost their phone and needs to register again.",
            "ticket": "INC0012345",
            "idempotency_key": uuid.uuid4().hex,
            "lifetime_minutes": 60,
            "usable_once": "on",
            **extra,
        },
    )


def _succeeded(response: Any) -> ActionRequest:
    """The request the response redirected to, finished as the worker finishes a success."""
    assert response.status_code == 302, response.content.decode()[:3000]
    public_id = response["Location"].rstrip("/").rsplit("/", 1)[1]
    ActionRequest.objects.filter(public_id=public_id).update(
        status=Status.SUCCEEDED, finished_at=timezone.now(), open_slot=None
    )
    return ActionRequest.objects.get(public_id=public_id)


def test_a_second_pass_moments_after_the_first_needs_a_confirmed_reason() -> None:
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada)
    first = _succeeded(_post_tap(ada))

    # The second tab: refused, nothing recorded, and the form asks for a confirmation.
    again = _post_tap(ada)
    html = again.content.decode()
    assert again.status_code == 409, html[:3000]
    assert "You already did this" in html and "data-repeat" in html
    assert 'name="confirm_repeat"' in html and 'name="repeat_reason"' in html
    assert ActionRequest.objects.count() == 1
    # A fresh form says so before anyone submits.
    assert "data-repeat" in ada.get(TAP_URL).content.decode()

    # Ticked without a reason: the form says why, nothing recorded.
    short = _post_tap(ada, confirm_repeat="on", repeat_reason="again")
    assert short.status_code == 400 and "at least" in short.content.decode()
    assert ActionRequest.objects.count() == 1

    why = "The caller mistyped the first pass three times and it is now locked."
    second = _succeeded(_post_tap(ada, confirm_repeat="on", repeat_reason=why))
    confirmed = PortalEvent.objects.get(kind=PortalEvent.Kind.ACTION_REPEAT_CONFIRMED)
    assert confirmed.request == second.pk and confirmed.actor_id == second.requester_id
    assert confirmed.detail["reason"] == why
    assert confirmed.detail["repeat_of"] == str(first.public_id)


def test_the_repeat_rule_is_per_agent_kind_and_window() -> None:
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada)
    first = _succeeded(_post_tap(ada))
    # Another agent may (their own call), and so may the same agent with another kind.
    aaron = signed_in(PERSONAS.privileged_agent)
    _verify_manually(aaron)
    _succeeded(_post_tap(aaron))
    revoke = ada.post(
        f"/users/{SAM.oid}/actions/{ActionKind.REVOKE_SESSIONS}/",
        {
            "reason": "Caller lost their phone and needs to register again.",
            "ticket": "INC0012345",
            "idempotency_key": uuid.uuid4().hex,
        },
    )
    assert revoke.status_code == 302, revoke.content.decode()[:3000]
    # Past the window the same pass is an ordinary request again.
    window = timedelta(minutes=settings.PORTAL_REPEAT_WINDOW_MINUTES, seconds=1)
    ActionRequest.objects.filter(pk=first.pk).update(finished_at=timezone.now() - window)
    ActionRequest.objects.filter(kind=ActionKind.ISSUE_TAP).exclude(pk=first.pk).update(
        status=Status.CANCELLED
    )
    assert _post_tap(ada).status_code == 302


def test_a_submission_meeting_another_being_recorded_is_told_busy_at_once() -> None:
    ada = signed_in(PERSONAS.agent)
    _verify_manually(ada)
    family = policy.kind_family(ActionKind.ISSUE_TAP)
    # The other tab's submission is being recorded right now (it holds the person's lock).
    with target_lock(SAM.oid, family):
        started = time.monotonic()
        busy = _post_tap(ada)
        waited = time.monotonic() - started
    assert busy.status_code == 409
    assert "being recorded right now" in busy.content.decode()
    assert waited < 3, f"waited {waited:.1f} s behind the lock"
    assert ActionRequest.objects.count() == 0
