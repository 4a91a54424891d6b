"""Issue 10, points 6 (caps) and 9: caller verification cannot be repeated without limit.

Through the real views with Django's client, against the emulator: an agent records at most
``PORTAL_MANUAL_CHECKS_PER_DAY`` manual checks in 24 hours, and codes go out at most
``PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET`` times per agent and person and
``PORTAL_VERIFICATION_SENDS_PER_TARGET`` times per person in an hour; a refusal says so and
records nothing (no row, no event, no email).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from audit.models import PortalEvent
from mfa.models import CallerVerification, VerificationMethod
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
EVIDENCE = "Video call: face matched the HR photo, passport shown to camera."


@pytest.fixture(autouse=True)
def _emulator(emulator: Any) -> Any:
    return emulator


def _manual(client: Client) -> str:
    response = client.post(
        f"/users/{SAM.oid}/verify/manual/",
        {"check": settings.PORTAL_MANUAL_CHECKS[0], "evidence": EVIDENCE},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def _send(client: Client) -> str:
    response = client.post(
        f"/users/{SAM.oid}/verify/send/", {"destination": "manager"}, follow=True
    )
    assert response.status_code == 200
    return response.content.decode()


def _rows(method: str) -> Any:
    return CallerVerification.objects.filter(target_id=SAM.oid, method=method)


def test_manual_checks_are_capped_per_agent_per_day(settings: Settings) -> None:
    settings.PORTAL_MANUAL_CHECKS_PER_DAY = 3
    ada = signed_in(PERSONAS.agent)
    for _ in range(3):
        assert "Manual check recorded" in _manual(ada)
    events = PortalEvent.objects.filter(kind=PortalEvent.Kind.VERIFICATION_MANUAL).count()

    refused = _manual(ada)

    assert "3 manual checks in the last 24 hours, the most allowed" in refused
    assert "Manual check recorded" not in refused
    assert _rows(VerificationMethod.MANUAL).count() == 3
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.VERIFICATION_MANUAL).count() == events
    # Another agent has their own allowance; and the window slides: a day later Ada may again.
    assert "Manual check recorded" in _manual(signed_in(PERSONAS.privileged_agent))
    _rows(VerificationMethod.MANUAL).update(created_at=timezone.now() - timedelta(hours=25))
    assert "Manual check recorded" in _manual(ada)


def test_codes_are_capped_per_agent_and_person(settings: Settings) -> None:
    settings.PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET = 3
    ada = signed_in(PERSONAS.agent)
    for _ in range(3):
        assert "Code sent to" in _send(ada)
    mails = len(mail.outbox)

    refused = _send(ada)

    assert "You have sent 3 verification codes for Sam Standard in the last hour" in refused
    assert "Code sent to" not in refused
    assert _rows(VerificationMethod.EMAIL_CODE).count() == 3
    assert len(mail.outbox) == mails, "a refused send must not mail the manager"
    # The newest code still works: the refusal did not supersede it.
    assert _rows(VerificationMethod.EMAIL_CODE).filter(failed_at__isnull=True).count() == 1


def test_codes_are_capped_per_person_across_agents(settings: Settings) -> None:
    settings.PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET = 3
    settings.PORTAL_VERIFICATION_SENDS_PER_TARGET = 4
    ada, aaron = signed_in(PERSONAS.agent), signed_in(PERSONAS.privileged_agent)
    for _ in range(3):
        assert "Code sent to" in _send(ada)
    assert "Code sent to" in _send(aaron)

    refused = _send(signed_in(PERSONAS.lead))

    assert "Agents have sent 4 verification codes for Sam Standard in the last hour" in refused
    assert _rows(VerificationMethod.EMAIL_CODE).count() == 4
    # An hour later the person may be sent codes again.
    _rows(VerificationMethod.EMAIL_CODE).update(created_at=timezone.now() - timedelta(hours=2))
    assert "Code sent to" in _send(aaron)
