"""The lead dashboard: figures and flags computed from fixture requests and Entra records, the
configurable thresholds, the links to the filtered history, and who may open it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from pytest_django.fixtures import Settings

from audit.dashboard import dashboard_figures, is_business_time
from mfa.models import ActionKind, Status
from tests.audit.history_fixtures import action_request, entra_record
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

ADA = PERSONAS.agent
AARON = PERSONAS.privileged_agent
LEO = PERSONAS.lead
ANA = PERSONAS.admin
SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
# Wednesday 11 March 2026, 12:00 UTC (the settings' time zone in the tests is UTC).
NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
WEEKDAY_10AM = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # Tuesday
SATURDAY_2AM = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _business_hours(settings: Settings) -> None:
    settings.DASHBOARD_TIMEZONE = "UTC"


def group(figures: Any, key: str) -> Any:
    return next(g for g in figures.flags if g.key == key)


def lead_get(url: str) -> str:
    response = signed_in(LEO).get(url)
    assert response.status_code == 200
    return response.content.decode()


def rows_in(html: str) -> list[str]:
    return re.findall(r'data-row="([a-z]+-\d+)"', html)


# --- figures ------------------------------------------------------------------------------------


def test_chart_figures() -> None:
    day = NOW - timedelta(days=1)  # Tuesday
    # Three finished re-registrations on Tuesday taking 2, 4 and 10 minutes; one failed TAP on
    # Priya on Tuesday (privileged) taking 30; a pending revoke today; one 40 days ago (outside).
    action_request(ADA, SAM, created_at=day, finished_after=timedelta(minutes=2))
    action_request(
        ADA, SAM, created_at=day + timedelta(hours=1), finished_after=timedelta(minutes=4)
    )
    action_request(
        AARON, SAM, created_at=day + timedelta(hours=2), finished_after=timedelta(minutes=10)
    )
    action_request(
        AARON,
        PRIYA,
        created_at=day + timedelta(hours=3),
        kind=ActionKind.ISSUE_TAP,
        status=Status.FAILED,
        finished_after=timedelta(minutes=30),
        decided_by=LEO,
    )
    action_request(
        ADA,
        SAM,
        created_at=NOW - timedelta(hours=1),
        kind=ActionKind.REVOKE_SESSIONS,
        status=Status.PENDING,
        finished_after=None,
    )
    action_request(ADA, SAM, created_at=NOW - timedelta(days=40))

    figures = dashboard_figures(now=NOW)
    assert len(figures.days) == settings.DASHBOARD_WINDOW_DAYS
    assert figures.days[-1] == NOW.date()
    assert figures.total_actions == 5
    tuesday, today = figures.days.index(day.date()), figures.days.index(NOW.date())
    assert figures.per_day_by_kind[ActionKind.REREGISTER][tuesday] == 3
    assert figures.per_day_by_kind[ActionKind.ISSUE_TAP][tuesday] == 1
    assert figures.per_day_by_kind[ActionKind.REVOKE_SESSIONS][today] == 1
    assert sum(sum(v) for v in figures.per_day_by_kind.values()) == 5
    assert {status: n for status, _label, n in figures.outcomes} == {
        Status.SUCCEEDED: 3,
        Status.FAILED: 1,
        Status.PENDING: 1,
    }
    assert figures.per_agent == [(ADA.display_name, 3), (AARON.display_name, 2)]
    assert figures.privileged_per_day[tuesday] == 1
    assert sum(figures.privileged_per_day) == 1
    # Median of 2, 4, 10 and 30 minutes; the pending request is not done yet.
    assert figures.median_minutes_per_day[tuesday] == 7.0
    assert figures.median_minutes_per_day[today] is None
    assert figures.median_minutes == 7.0
    charts = figures.charts_json()
    assert charts["perAgent"]["data"] == [3, 2]
    assert charts["medianMinutesPerDay"][tuesday] == 7.0


# --- flags --------------------------------------------------------------------------------------


def test_volume_flag_compares_each_agent_with_their_own_baseline() -> None:
    # Ada: 10 actions over the 30 days before (a third a day), then 6 in the last 24 hours.
    for n in range(10):
        action_request(ADA, SAM, created_at=NOW - timedelta(days=2 + 2 * n), kind="revoke_sessions")
    for n in range(6):
        action_request(ADA, SAM, created_at=NOW - timedelta(hours=1 + n), kind="revoke_sessions")
    # Aaron: 2 a day before (60), 5 in the last 24 hours: busy, but his usual.
    for n in range(60):
        action_request(
            AARON, SAM, created_at=NOW - timedelta(days=1, hours=12 * n + 1), kind="revoke_sessions"
        )
    for n in range(5):
        action_request(AARON, SAM, created_at=NOW - timedelta(hours=2 + n), kind="revoke_sessions")
    # Leo: 3 in the last 24 hours and none before: above his baseline, below the minimum.
    for n in range(3):
        action_request(LEO, SAM, created_at=NOW - timedelta(hours=3 + n), kind="revoke_sessions")

    volume = group(dashboard_figures(now=NOW), "volume")
    assert [f.title for f in volume.items] == [ADA.display_name]
    assert "6 actions in 24 hours" in volume.items[0].detail
    # The link opens the history of that agent since yesterday.
    assert volume.items[0].url == f"/audit/?agent={ADA.oid}&since=2026-03-10"
    assert "Ada Agent" in lead_get(volume.items[0].url)


def test_volume_thresholds_are_configurable(settings: Settings) -> None:
    for n in range(3):
        action_request(LEO, SAM, created_at=NOW - timedelta(hours=3 + n), kind="revoke_sessions")
    assert group(dashboard_figures(now=NOW), "volume").total == 0
    settings.DASHBOARD_VOLUME_MIN_ACTIONS = 3
    assert group(dashboard_figures(now=NOW), "volume").total == 1
    settings.DASHBOARD_VOLUME_MULTIPLE = 1000.0
    action_request(LEO, SAM, created_at=NOW - timedelta(days=5), kind="revoke_sessions")
    assert group(dashboard_figures(now=NOW), "volume").total == 0


def test_off_hours_flag_and_its_configuration(settings: Settings) -> None:
    weekend = action_request(ADA, SAM, created_at=SATURDAY_2AM)
    evening = action_request(ADA, SAM, created_at=WEEKDAY_10AM + timedelta(hours=9))  # 19:00
    action_request(ADA, SAM, created_at=WEEKDAY_10AM)
    off_hours = group(dashboard_figures(now=NOW), "off_hours")
    assert [f.url for f in off_hours.items] == [
        f"/audit/?request={evening.public_id}",
        f"/audit/?request={weekend.public_id}",
    ]
    assert "Sat 02:00" in off_hours.items[1].detail
    # Weekends worked from 00:00 to 20:00: nothing is out of hours any more.
    settings.DASHBOARD_BUSINESS_WEEKDAYS = frozenset(range(7))
    settings.DASHBOARD_BUSINESS_END = datetime.strptime("20:00", "%H:%M").time()
    settings.DASHBOARD_BUSINESS_START = datetime.strptime("00:00", "%H:%M").time()
    assert group(dashboard_figures(now=NOW), "off_hours").total == 0


def test_business_hours_follow_the_configured_time_zone(settings: Settings) -> None:
    # 07:30 UTC on a Tuesday is 08:30 in Paris (winter time).
    moment = datetime(2026, 3, 10, 7, 30, tzinfo=UTC)
    assert not is_business_time(moment)
    settings.DASHBOARD_TIMEZONE = "Europe/Paris"
    assert is_business_time(moment)


def test_repeat_reset_flag(settings: Settings) -> None:
    action_request(ADA, SAM, created_at=NOW - timedelta(days=1))
    action_request(AARON, SAM, created_at=NOW - timedelta(days=3))
    # Priya: one reset, one rejected request and a session revocation: not a repeat.
    action_request(AARON, PRIYA, created_at=NOW - timedelta(days=1))
    action_request(AARON, PRIYA, created_at=NOW - timedelta(days=2), status=Status.REJECTED)
    action_request(AARON, PRIYA, created_at=NOW - timedelta(days=2), kind="revoke_sessions")
    repeat = group(dashboard_figures(now=NOW), "repeat_reset")
    assert [f.title for f in repeat.items] == [SAM.display_name]
    assert "2 resets in 7 days" in repeat.items[0].detail
    assert f"target={SAM.oid}" in repeat.items[0].url
    # Three days apart is no longer "within" a two-day window.
    settings.DASHBOARD_REPEAT_RESET_DAYS = 2
    assert group(dashboard_figures(now=NOW), "repeat_reset").total == 0
    settings.DASHBOARD_REPEAT_RESET_DAYS = 7
    settings.DASHBOARD_RESET_KINDS = ["reregister", "revoke_sessions"]
    titles = [f.title for f in group(dashboard_figures(now=NOW), "repeat_reset").items]
    assert sorted(titles) == sorted([SAM.display_name, PRIYA.display_name])


def test_privileged_and_outside_portal_flags_link_to_their_history() -> None:
    priv = action_request(AARON, PRIYA, created_at=WEEKDAY_10AM, decided_by=LEO)
    action_request(ADA, SAM, created_at=WEEKDAY_10AM)
    recent = entra_record(
        WEEKDAY_10AM,
        SAM,
        activity="Admin registered security info",
        outside_portal=True,
        initiated_by=ANA,
    )
    entra_record(NOW - timedelta(days=10), SAM, outside_portal=True, initiated_by=ANA)
    entra_record(WEEKDAY_10AM, SAM, request=priv)

    figures = dashboard_figures(now=NOW)
    privileged = group(figures, "privileged")
    assert [f.title for f in privileged.items] == [PRIYA.display_name]
    html = lead_get(privileged.items[0].url)
    assert "Portal request" in html  # the linked Entra record of that request
    outside = group(figures, "outside_portal")
    assert outside.total == 1
    assert rows_in(lead_get(outside.items[0].url)) == [f"entra-{recent.pk}"]


def test_dashboard_page_shows_charts_and_flags() -> None:
    action_request(AARON, PRIYA, created_at=datetime.now(UTC) - timedelta(hours=1))
    response = signed_in(LEO).get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    for name in (
        "perDayByKind",
        "outcomes",
        "perAgent",
        "privilegedPerDay",
        "medianMinutesPerDay",
    ):
        assert f'data-chart="{name}"' in html
    data = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html)
    assert data
    charts = json.loads(data.group(1))
    assert charts["perAgent"]["labels"] == [AARON.display_name]
    assert 'src="/static/vendor/chart.umd.min.js"' in html
    assert 'src="/static/js/dashboard.js"' in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    assert 'data-flag-group="privileged"' in html
    static = Path(settings.BASE_DIR) / "static"
    assert (static / "vendor" / "chart.umd.min.js").stat().st_size > 100_000
    assert (static / "vendor" / "chart.js.LICENSE.md").exists()


def test_dashboard_is_for_leads_and_admins() -> None:
    assert signed_in(LEO).get("/dashboard/").status_code == 200
    assert signed_in(ANA).get("/dashboard/").status_code == 200
    assert signed_in(ADA).get("/dashboard/").status_code == 403
    refused = signed_in(PERSONAS.outsider).get("/dashboard/")
    assert refused.status_code == 403
    assert "no portal role" in refused.content.decode().lower()
    assert Client().get("/dashboard/").status_code == 302
