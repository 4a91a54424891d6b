"""History as a lead reads it (issue 13): one row per request, a UPN finds portal rows, the
export's portal rows carry the person's UPN, the agent's object id and Entra's linked events,
and a role change's events and Entra's record of it read as one linked request.

The rows are those the services and the sync leave (tests/audit/history_fixtures.py); a role
change is written as ``roles.services`` leaves it, with its events recorded through
``audit.services.portal_event_record``.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.selectors import HistoryFilters, history_query, request_history_query
from mfa.models import ActionRequest
from outbox.states import Status
from roles.events import event_detail, event_fields
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from tests.audit.history_fixtures import action_request, at, entra_record, event, request_event
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db

K = PortalEvent.Kind
SAM, ADA, LEO, ANA = (
    PERSONAS.standard_target,
    PERSONAS.agent,
    PERSONAS.lead,
    PERSONAS.admin,
)
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
AUTH_ADMIN_TEMPLATE = "c4e39bd9-1100-46d3-8c65-fb160da0071f"


def _reset() -> tuple[ActionRequest, DirectoryAuditRecord]:
    """Ada re-registers Sam: verification, requested, step, succeeded, notified, and Entra's
    record of it."""
    row = action_request(ADA, SAM, created_at=NOW, ticket="INC0777001")
    assert row.verification is not None
    event(
        K.VERIFICATION_MANUAL,
        NOW - timedelta(minutes=2),
        actor=ADA,
        target_id=SAM.oid,
        target_name=SAM.display_name,
        detail={"verification_id": row.verification.pk, "check": "video"},
    )
    request_event(row, K.ACTION_REQUESTED, NOW, actor=ADA)
    request_event(row, K.ACTION_STEP, NOW + timedelta(seconds=20))
    record = entra_record(NOW + timedelta(seconds=30), SAM, request=row)
    request_event(row, K.ACTION_SUCCEEDED, NOW + timedelta(seconds=40))
    request_event(row, K.ACTION_NOTIFIED, NOW + timedelta(seconds=50))
    return row, record


def _role_change() -> tuple[RoleChangeRequest, DirectoryAuditRecord]:
    """Ana gives Sam Authentication Administrator; the linking found Entra's event."""
    started = NOW + timedelta(hours=1)
    record = entra_record(started + timedelta(seconds=5), SAM, activity="Add member to role")
    row = RoleChangeRequest.objects.create(
        change=RoleChange.ADD,
        role_template_id=AUTH_ADMIN_TEMPLATE,
        role_name="Authentication Administrator",
        principal_id=SAM.oid,
        principal_type=PrincipalType.USER,
        principal_name=SAM.display_name,
        principal_upn=SAM.upn,
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Joins the identity operations rota.",
        ticket="CHG0042",
        requester=portal_user(ANA),
        requester_name=ANA.display_name,
        idempotency_key=uuid.uuid4().hex,
        status=Status.SUCCEEDED,
        created_at=started,
        started_at=started,
        finished_at=started + timedelta(seconds=10),
        entra_event_ids=[record.entra_id],
    )
    from audit.services import portal_event_record

    for kind, moment, actor in (
        (K.ROLE_CHANGE_REQUESTED, started, ANA),
        (K.ROLE_CHANGE_STARTED, started + timedelta(seconds=1), None),
        (K.ROLE_CHANGE_SUCCEEDED, started + timedelta(seconds=10), None),
    ):
        with at(moment):
            portal_event_record(
                kind=kind,
                actor=portal_user(actor) if actor else None,
                detail=event_detail(row),
                **event_fields(row),
            )
    return row, record


def test_a_upn_finds_the_portal_rows_of_the_person() -> None:
    # Bug 4: q=sam.standard gave 0 portal rows.
    _reset()
    page = history_query(HistoryFilters.from_params({"q": "sam.standard"}), portal_user(LEO))
    portal = [r for r in page.rows if r.source == "portal"]
    assert {r.kind for r in portal} >= {K.ACTION_REQUESTED, K.ACTION_SUCCEEDED}
    assert all(r.target_id == SAM.oid for r in page.rows)


def test_export_portal_rows_carry_upn_agent_and_linked_entra_events() -> None:
    # Bug 4: target_upn, agent_oid, entra_id and entra_initiated_by were empty on portal rows.
    _row, record = _reset()
    client = Client()
    client.force_login(portal_user(LEO))
    response = client.get("/audit/export.csv?q=INC0777001")
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(cast(Iterator[bytes], response.streaming_content)).decode()
    rows = [r for r in csv.DictReader(io.StringIO(body)) if r["source"] == "portal"]
    succeeded = next(r for r in rows if r["kind"] == K.ACTION_SUCCEEDED)
    assert succeeded["target_upn"] == SAM.upn
    assert succeeded["agent_oid"] == ADA.oid
    assert succeeded["entra_id"] == record.entra_id
    assert succeeded["entra_initiated_by"] == record.initiated_by_name


def test_one_row_per_request_with_its_events_and_entra_alone() -> None:
    row, record = _reset()
    outside = entra_record(
        NOW - timedelta(hours=3),
        SAM,
        activity="Admin registered security info",
        outside_portal=True,
        initiated_by=ANA,
    )
    lead = portal_user(LEO)
    with CaptureQueriesContext(connection) as queries:
        page = request_history_query(HistoryFilters(), lead)
    # A page stays a handful of queries however many events a request has: the viewer's scope,
    # the two tables' stream, the verification owners, the requests, their events, Entra
    # records and verification events.
    assert len(queries) <= 8, [q["sql"] for q in queries]
    keys = [e.key for e in page.entries]
    assert keys == [f"mfa-{row.pk}", f"entra-{outside.pk}"]
    entry = page.entries[0]
    assert entry.request is not None
    assert entry.agent_name == ADA.display_name
    assert entry.ticket == "INC0777001"
    assert entry.outcome == "success"
    assert entry.request.approval == "Not needed"
    assert [e.id for e in entry.entra] == [record.pk]
    # The verification's event belongs to the request, first of its events.
    assert [e.kind for e in entry.events][:2] == [K.VERIFICATION_MANUAL, K.ACTION_REQUESTED]
    assert len(entry.events) == 6
    assert page.entries[1].outside_portal


def test_request_view_pages_forward_without_splitting_a_request() -> None:
    rows = [
        action_request(ADA, SAM, created_at=NOW + timedelta(minutes=10 * i), ticket=f"INC{i}")
        for i in range(5)
    ]
    for row in rows:
        request_event(row, K.ACTION_REQUESTED, row.created_at, actor=ADA)
        request_event(row, K.ACTION_SUCCEEDED, row.created_at + timedelta(seconds=30))
    seen: list[str] = []
    after = None
    for _ in range(5):
        page = request_history_query(HistoryFilters(), portal_user(LEO), after=after, page_size=2)
        seen += [e.key for e in page.entries]
        assert all(len(e.events) == 2 for e in page.entries)
        after = page.next_cursor
        if after is None:
            break
    assert seen == [f"mfa-{r.pk}" for r in reversed(rows)]


def test_a_role_change_reads_as_a_linked_request() -> None:
    # Bug 5: Entra's row of a linked role change said "no portal request"; "Role change
    # succeeded" had no agent, approval or outcome.
    change, record = _role_change()
    page = history_query(HistoryFilters(), portal_user(LEO))
    entra = next(r for r in page.rows if r.source == "entra" and r.id == record.pk)
    assert entra.request is not None
    assert entra.request.public_id == change.public_id
    assert entra.agent_name == ANA.display_name
    succeeded = next(r for r in page.rows if r.kind == K.ROLE_CHANGE_SUCCEEDED)
    assert succeeded.agent_name == ANA.display_name
    assert succeeded.outcome == "success"
    assert succeeded.request is not None and succeeded.request.approval == "Not needed"
    assert [linked.entra_id for linked in succeeded.linked] == [record.entra_id]

    entries = request_history_query(HistoryFilters(), portal_user(LEO)).entries
    assert [e.key for e in entries] == [f"roles-{change.pk}"]
    assert len(entries[0].events) == 4
    assert entries[0].entra[0].id == record.pk

    client = Client()
    client.force_login(portal_user(LEO))
    body = client.get("/audit/?view=events").content.decode()
    assert "no portal request" not in body
    assert "Authentication Administrator" in body


def test_the_history_page_opens_on_one_row_per_request() -> None:
    row, _record = _reset()
    client = Client()
    client.force_login(portal_user(LEO))
    body = client.get("/audit/").content.decode()
    assert body.count("data-toggle-events") == 1
    assert f'data-entry="mfa-{row.pk}"' in body
    assert "6 events" in body
    assert "2 Dec 2026, 10:00" in body  # one line, no leading zero (the portal's time zone: UTC)
    events = client.get("/audit/?view=events").content.decode()
    assert events.count('<tr class="history__row') == 6
    assert 'name="view" value="events"' in events


def test_an_agent_reads_only_their_own_requests_in_the_request_view() -> None:
    mine, _record = _reset()
    theirs = action_request(PERSONAS.privileged_agent, SAM, created_at=NOW + timedelta(hours=2))
    request_event(theirs, K.ACTION_REQUESTED, theirs.created_at, actor=PERSONAS.privileged_agent)
    page = request_history_query(HistoryFilters(), portal_user(ADA))
    assert [e.key for e in page.entries] == [f"mfa-{mine.pk}"]
    # Opening the person shows the person's whole history, the colleague's request included.
    opened = request_history_query(HistoryFilters(target=SAM.oid), portal_user(ADA))
    assert [e.key for e in opened.entries] == [f"mfa-{theirs.pk}", f"mfa-{mine.pk}"]
