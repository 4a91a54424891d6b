"""``AUDIT_CORRELATION_WINDOW_MINUTES`` moves the one correlation rule everywhere it is asked.

"A portal change explains this Entra event" is asked by history (an action request's Entra
events), by the role services (a role change's link to its Entra event) and by the roles page
(the "added outside the portal" warning). Each test puts the Entra event 12 minutes outside a
change's run (after its end, or before its start): a 10-minute window leaves it unexplained, a
15-minute one explains it. If any of the three kept its own window, its case fails.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from audit.correlation import SESSIONS_REVOKED, correlate_records
from audit.models import DirectoryAuditRecord
from mfa.models import ActionKind, ActionRequest
from roles import catalog
from roles.holders import Holding, RoleHolders
from roles.linking import role_changes_correlate
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from roles.page import role_rows
from tests.audit.history_fixtures import action_request
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
RUN = timedelta(minutes=2)
OUTSIDE_BY = timedelta(minutes=12)
# (window in minutes, whether an event 12 minutes outside the run is explained)
WINDOWS = [(10, False), (15, True)]
SIDES = ["after the end", "before the start"]


def _started() -> datetime:
    # Recent: role links look back 30 days, the roles page ROLES_DRIFT_LOOKBACK_DAYS.
    return timezone.now() - timedelta(hours=2)


def _event_time(started: datetime, side: str) -> datetime:
    return started + RUN + OUTSIDE_BY if side == "after the end" else started - OUTSIDE_BY


def _by_the_portal(
    moment: datetime, *, activity: str, target_ids: list[str]
) -> DirectoryAuditRecord:
    """An Entra event made with the portal's app, on ``target_ids``."""
    entra_id = f"Directory_{uuid.uuid4()}"
    return DirectoryAuditRecord.objects.create(
        entra_id=entra_id,
        activity_at=moment,
        category="RoleManagement",
        activity=activity,
        result="success",
        initiated_by_kind=DirectoryAuditRecord.InitiatorKind.APP,
        initiated_by_id=str(uuid.uuid4()),
        initiated_by_name="MFA helpdesk portal",
        initiated_by_app_id=settings.ENTRA_CLIENT_ID,
        target_id=target_ids[0],
        target_ids=target_ids,
        raw={"id": entra_id, "activityDisplayName": activity},
        # What the sync leaves on a role event no change explained yet.
        outside_portal=activity.startswith("Add member to role"),
    )


def _role_add(started: datetime) -> RoleChangeRequest:
    """A finished portal change that gave Sam the PAA role."""
    return RoleChangeRequest.objects.create(
        change=RoleChange.ADD,
        status="succeeded",
        role_template_id=catalog.role_template(catalog.PAA),
        role_name=catalog.PAA,
        principal_id=SAM.oid,
        principal_type=PrincipalType.USER,
        principal_name=SAM.display_name,
        principal_upn=SAM.upn,
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="On call for the authentication team this month.",
        requester=portal_user(PERSONAS.admin),
        requester_name=PERSONAS.admin.display_name,
        idempotency_key=uuid.uuid4().hex,
        created_at=started,
        started_at=started,
        finished_at=started + RUN,
    )


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("minutes", "explained"), WINDOWS)
def test_window_moves_the_link_of_an_action_request(
    minutes: int, explained: bool, side: str
) -> None:
    started = _started()
    request = action_request(
        PERSONAS.agent,
        SAM,
        created_at=started,
        kind=ActionKind.REVOKE_SESSIONS,
        finished_after=RUN,
    )
    ActionRequest.objects.filter(pk=request.pk).update(started_at=started)
    record = _by_the_portal(
        _event_time(started, side), activity=SESSIONS_REVOKED, target_ids=[SAM.oid]
    )
    with override_settings(AUDIT_CORRELATION_WINDOW_MINUTES=minutes):
        correlate_records([record])
    record.refresh_from_db()
    assert (record.action_request_id == request.pk) is explained
    assert record.outside_portal is not explained


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("minutes", "explained"), WINDOWS)
def test_window_moves_the_link_of_a_role_change(minutes: int, explained: bool, side: str) -> None:
    started = _started()
    change = _role_add(started)
    record = _by_the_portal(
        _event_time(started, side),
        activity="Add member to role",
        target_ids=[SAM.oid, change.role_template_id],
    )
    with override_settings(AUDIT_CORRELATION_WINDOW_MINUTES=minutes):
        linked = role_changes_correlate()
    change.refresh_from_db()
    record.refresh_from_db()
    assert linked == (1 if explained else 0)
    assert change.entra_event_ids == ([record.entra_id] if explained else [])
    assert record.outside_portal is not explained


def test_two_like_role_changes_minutes_apart_each_get_their_own_event() -> None:
    """The window reaches back before a change's start, so the later change also accepts the
    earlier change's event; the nearest event wins, whichever change is linked first."""
    first_start = _started()
    second_start = first_start + timedelta(minutes=5)
    first, second = _role_add(first_start), _role_add(second_start)
    events = [
        _by_the_portal(
            start + timedelta(minutes=1),
            activity="Add member to role",
            target_ids=[SAM.oid, first.role_template_id],
        )
        for start in (first_start, second_start)
    ]
    assert role_changes_correlate() == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.entra_event_ids == [events[0].entra_id]
    assert second.entra_event_ids == [events[1].entra_id]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("minutes", "explained"), WINDOWS)
def test_window_moves_the_roles_page_added_outside_the_portal_warning(
    minutes: int, explained: bool, side: str
) -> None:
    started = _started()
    change = _role_add(started)
    # Entra's event, stored by the sync before the role services linked it to the change.
    _by_the_portal(
        _event_time(started, side),
        activity="Add member to role",
        target_ids=[SAM.oid, change.role_template_id],
    )
    holders = RoleHolders(
        taken_at=timezone.now(),
        roles={
            catalog.PAA: (
                Holding(
                    role_name=catalog.PAA,
                    principal_id=SAM.oid,
                    principal_type="user",
                    display_name=SAM.display_name,
                    upn=SAM.upn,
                    how="active",
                    assignment_id=str(uuid.uuid4()),
                ),
            )
        },
        portal_roles={},
    )
    with override_settings(AUDIT_CORRELATION_WINDOW_MINUTES=minutes):
        _rows, warnings = role_rows(holders)
    outside = [w for w in warnings if w.code == "outside_portal"]
    assert (outside == []) is explained, warnings
