"""Which role change made an Entra record (``roles.audit_sources``): the answer from what the
page already read (``role_change_of_candidates``) is the answer from the record ids
(``role_change_of_records``), and both are the rule's (``audit.correlation.explains``): the
change that linked the record wins, else the nearest change that explains it; records that no
change explains, or that are linked to an action request, belong to none."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.correlation import correlation_window, distance_from_run, explains
from audit.models import DirectoryAuditRecord
from audit.sources import CandidateRecord, change_histories
from mfa.models import ActionRequest
from outbox.states import Status
from roles.audit_sources import (
    _CHANGE_ORDER,
    portal_change,
    role_change_of_candidates,
    role_change_of_records,
)
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from tests.audit.history_fixtures import action_request
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db

SAM, PRIYA, ADA, ANA = (
    PERSONAS.standard_target,
    PERSONAS.privileged_target,
    PERSONAS.agent,
    PERSONAS.admin,
)
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
AUTH_ADMIN = "c4e39bd9-1100-46d3-8c65-fb160da0071f"
HELPDESK_ADMIN = "729827e3-9c14-49f7-bb1b-9608f156bbb8"


def _record(
    moment: datetime,
    principal: str,
    template: str,
    *,
    activity: str = "Add member to role",
    by_portal: bool = True,
    request: ActionRequest | None = None,
) -> DirectoryAuditRecord:
    entra_id = f"Directory_{uuid.uuid4()}"
    raw = {
        "id": entra_id,
        "activityDisplayName": activity,
        "targetResources": [
            {"id": principal, "type": "User"},
            {
                "id": str(uuid.uuid4()),
                "type": "Role",
                "modifiedProperties": [
                    {"displayName": "Role.TemplateId", "newValue": f'"{template}"'}
                ],
            },
        ],
    }
    return DirectoryAuditRecord.objects.create(
        entra_id=entra_id,
        activity_at=moment,
        category="RoleManagement",
        activity=activity,
        result="success",
        initiated_by_kind="app",
        initiated_by_id=str(uuid.uuid4()),
        initiated_by_name="Portal",
        initiated_by_app_id=settings.ENTRA_CLIENT_ID if by_portal else str(uuid.uuid4()),
        target_id=principal,
        target_ids=[principal],
        raw=raw,
        synced_at=timezone.now(),
        action_request=request,
    )


def _change(
    started: datetime,
    principal: str,
    template: str,
    *,
    change: str = RoleChange.ADD,
    seconds: int = 10,
    linked: tuple[str, ...] = (),
) -> RoleChangeRequest:
    return RoleChangeRequest.objects.create(
        change=change,
        role_template_id=template,
        role_name="A role",
        principal_id=principal,
        principal_type=PrincipalType.USER,
        principal_name="Someone",
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Rota.",
        requester=portal_user(ANA),
        requester_name=ANA.display_name,
        idempotency_key=uuid.uuid4().hex,
        status=Status.SUCCEEDED,
        created_at=started,
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
        entra_event_ids=list(linked),
    )


def _by_the_rule(records: list[DirectoryAuditRecord]) -> dict[int, int]:
    """The answer as the rule gives it, record by record, from model instances."""
    slack = correlation_window()
    changes = [portal_change(c) for c in RoleChangeRequest.objects.filter(started_at__isnull=False)]
    found: dict[int, int] = {}
    for record in records:
        if record.action_request_id:
            continue
        linked = [c for c in changes if record.entra_id in c.linked_entra_ids]
        explaining = linked or [c for c in changes if explains(c, record, slack=slack)]
        if explaining:
            nearest = min(explaining, key=lambda c: distance_from_run(c, record.activity_at))
            found[record.pk] = nearest.pk
    return found


def _candidates(records: list[DirectoryAuditRecord]) -> list[CandidateRecord]:
    return [
        CandidateRecord(r.pk, r.entra_id, r.activity, r.activity_at)
        for r in records
        if not r.action_request_id
    ]


def test_from_what_the_page_read_the_answer_is_the_rules() -> None:
    explained = _record(T0 + timedelta(seconds=3), SAM.oid, AUTH_ADMIN)
    linked_elsewhere = _record(T0 + timedelta(hours=2), SAM.oid, AUTH_ADMIN)
    other_role = _record(T0 + timedelta(seconds=4), SAM.oid, HELPDESK_ADMIN)
    not_the_portal = _record(T0 + timedelta(seconds=5), SAM.oid, AUTH_ADMIN, by_portal=False)
    removal = _record(
        T0 + timedelta(seconds=6), SAM.oid, AUTH_ADMIN, activity="Remove member from role"
    )
    too_late = _record(T0 + timedelta(hours=5), PRIYA.oid, AUTH_ADMIN)
    of_a_request = _record(
        T0 + timedelta(seconds=7),
        SAM.oid,
        AUTH_ADMIN,
        request=action_request(ADA, SAM, created_at=T0),
    )
    # Two changes explain ``near``: the nearer run wins.
    near = _record(T0 + timedelta(minutes=1, seconds=30), PRIYA.oid, AUTH_ADMIN)
    first = _change(T0, SAM.oid, AUTH_ADMIN)
    _change(T0 + timedelta(minutes=1), PRIYA.oid, AUTH_ADMIN, seconds=5)
    nearer = _change(T0 + timedelta(minutes=1, seconds=20), PRIYA.oid, AUTH_ADMIN, seconds=5)
    # A later change linked a record its run is far from: the link wins over the rule.
    linker = _change(
        T0 + timedelta(hours=1), SAM.oid, AUTH_ADMIN, linked=(linked_elsewhere.entra_id,)
    )
    records = [
        explained, linked_elsewhere, other_role, not_the_portal, removal, too_late,
        of_a_request, near,
    ]  # fmt: skip

    expected = _by_the_rule(records)
    assert expected == {explained.pk: first.pk, linked_elsewhere.pk: linker.pk, near.pk: nearer.pk}
    assert role_change_of_records([r.pk for r in records]) == expected
    assert role_change_of_candidates(_candidates(records)) == expected
    history = next(h for h in change_histories() if h.flow == "roles")
    assert history.owners(_candidates(records)) == expected


def test_the_change_order_is_the_models() -> None:
    assert tuple(RoleChangeRequest._meta.ordering or ()) == _CHANGE_ORDER


def test_no_role_change_near_the_records_is_one_query() -> None:
    records = [_record(T0 + timedelta(minutes=m), SAM.oid, AUTH_ADMIN) for m in range(3)]
    _change(T0 + timedelta(days=3), SAM.oid, AUTH_ADMIN)
    with CaptureQueriesContext(connection) as captured:
        assert role_change_of_candidates(_candidates(records)) == {}
    assert len(captured.captured_queries) == 1
    assert _by_the_rule(records) == {}


def test_a_change_only_linked_reads_no_record() -> None:
    record = _record(T0 + timedelta(days=1), SAM.oid, AUTH_ADMIN)
    change = _change(
        T0 + timedelta(days=1, seconds=-2), SAM.oid, AUTH_ADMIN, linked=(record.entra_id,)
    )
    with CaptureQueriesContext(connection) as captured:
        assert role_change_of_candidates(_candidates([record])) == {record.pk: change.pk}
    assert len(captured.captured_queries) == 1
