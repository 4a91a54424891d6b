"""The dashboard's wording (issue 13): the median in seconds under a minute, the days' axis
ending today as "3 Dec", and changes outside the portal that Entra says the portal's own app
made, told apart: before the portal's records begin, or its credentials used outside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from audit.dashboard import dashboard_figures, duration_text
from audit.models import DirectoryAuditRecord, PortalEvent
from tests.audit.history_fixtures import action_request, entra_record, event
from tests.personas import PERSONAS

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
SAM, ADA = PERSONAS.standard_target, PERSONAS.agent


def test_durations_read_in_seconds_under_a_minute() -> None:
    assert duration_text(None) == ""
    assert duration_text(0.4) == "0.4\u00a0s"
    assert duration_text(14.2) == "14\u00a0s"
    assert duration_text(150) == "2.5\u00a0min"


def test_median_in_seconds_and_the_axis_ends_today_without_a_leading_zero() -> None:
    action_request(
        ADA, SAM, created_at=NOW - timedelta(hours=1), finished_after=timedelta(seconds=12)
    )
    figures = dashboard_figures(now=NOW)
    assert figures.median_text == "12\u00a0s"
    assert figures.median_unit == "s"
    charts = figures.charts_json()
    assert charts["dayLabels"][-1] == "3 Dec"
    assert charts["medianPerDay"][-1] == 12.0
    assert charts["medianUnit"] == "s"


def _by_portal_app(moment: datetime) -> DirectoryAuditRecord:
    record = entra_record(moment, SAM, outside_portal=True)
    record.initiated_by_app_id = settings.ENTRA_CLIENT_ID
    record.initiated_by_name = "MFA Helpdesk Portal"
    record.save()
    return record


def test_outside_changes_by_the_portals_own_app_are_told_apart() -> None:
    _by_portal_app(NOW - timedelta(days=3))
    event(PortalEvent.Kind.SIGN_IN, NOW - timedelta(days=2), actor=ADA)
    _by_portal_app(NOW - timedelta(days=1))
    entra_record(NOW - timedelta(hours=5), SAM, outside_portal=True, initiated_by=PERSONAS.admin)
    group = next(g for g in dashboard_figures(now=NOW).flags if g.key == "outside_portal")
    assert group.total == 3
    first, *others = group.items
    # The one before the portal's records begin is summed up first, with why.
    assert first.title == "1 change by the portal's own app"
    assert "before its own records begin (1 Dec 2026, 15:00)" in first.detail
    assert "no portal request can explain them" in first.detail
    details = [flag.detail for flag in others]
    assert details[0].startswith("Admin deleted security info by ")
    assert details[0].endswith(", 3 Dec 2026, 10:00")
    assert "portal's own app" not in details[0]
    assert "credentials used outside the portal" in details[1]
