"""Issue 10, point 6: the dashboard flags an agent who leans on manual caller checks.

The flag counts the portal's own ``verification_manual`` events (audit reads no mfa model for
it): at least ``DASHBOARD_MANUAL_CHECKS_MIN`` by one agent in the last 24 hours. Seen through the
real dashboard page as a Lead.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from audit.dashboard import dashboard_figures
from audit.models import PortalEvent
from audit.services import portal_event_record
from tests.personas import PERSONAS, portal_user, signed_in

pytestmark = pytest.mark.django_db

ADA = PERSONAS.agent
AARON = PERSONAS.privileged_agent
SAM = PERSONAS.standard_target


def _manual_checks(persona: Any, count: int) -> None:
    agent = portal_user(persona)
    for n in range(count):
        portal_event_record(
            kind=PortalEvent.Kind.VERIFICATION_MANUAL,
            actor=agent,
            target_id=SAM.oid,
            target_name=SAM.display_name,
            detail={"verification_id": n + 1, "check": "Video call", "evidence": "seen on camera"},
        )


def _group(figures: Any) -> Any:
    return next(g for g in figures.flags if g.key == "manual_checks")


def test_heavy_use_of_manual_checks_is_flagged_on_the_dashboard(settings: Settings) -> None:
    settings.DASHBOARD_MANUAL_CHECKS_MIN = 4
    _manual_checks(ADA, 5)
    _manual_checks(AARON, 3)

    group = _group(dashboard_figures())
    assert group.total == 1
    (flag,) = group.items
    assert flag.title == ADA.display_name and flag.detail == "5 manual checks in 24 hours"
    assert f"agent={ADA.oid}" in flag.url and "kind=verification_manual" in flag.url

    page = html.unescape(signed_in(PERSONAS.lead).get("/dashboard/").content.decode())
    section = page.split('data-flag-group="manual_checks"', 1)[1].split("data-flag-group=", 1)[0]
    assert "Many manual checks" in section and ADA.display_name in section
    assert AARON.display_name not in section

    # The threshold is the setting, and only the last 24 hours count.
    settings.DASHBOARD_MANUAL_CHECKS_MIN = 3
    assert _group(dashboard_figures()).total == 2
    later = timezone.now() + timedelta(hours=25)
    assert _group(dashboard_figures(now=later)).total == 0
