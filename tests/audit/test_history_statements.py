"""How many statements a history page runs (issue 12's history benchmark: each page within 2x
its bare SQL).

The counts are fixed whatever the number of requests on the page: each table's branch, then
the page's requests with their Entra records in one query (the event view) or with their
events (the request view). An Agent who opens a person reads that person's rows without the
branches of their own scope (every row about the person is in scope).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import PortalEvent
from audit.selectors import (
    HistoryFilters,
    history_query,
    request_history_query,
)
from mfa.models import ActionRequest
from tests.audit.history_fixtures import action_request, entra_record, event, request_event
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db

K = PortalEvent.Kind
ADA, LEO, SAM, PRIYA = (
    PERSONAS.agent,
    PERSONAS.lead,
    PERSONAS.standard_target,
    PERSONAS.privileged_target,
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _requests(count: int) -> list[ActionRequest]:
    """``count`` requests by Ada, alternately on Sam and Priya, each with its portal events and
    two Entra records; and a sign-in and an Entra event of no request."""
    made = []
    for n in range(count):
        at = T0 + timedelta(hours=n)
        target = SAM if n % 2 == 0 else PRIYA
        row = action_request(ADA, target, created_at=at, ticket=f"INC{n:07d}")
        request_event(row, K.ACTION_REQUESTED, at, actor=ADA)
        request_event(row, K.ACTION_STARTED, at + timedelta(seconds=20))
        entra_record(at + timedelta(seconds=40), target, request=row)
        entra_record(at + timedelta(seconds=50), target, request=row)
        request_event(row, K.ACTION_SUCCEEDED, at + timedelta(minutes=1))
        made.append(row)
    event(K.SIGN_IN, T0 - timedelta(hours=1), actor=ADA)
    entra_record(T0 - timedelta(hours=2), SAM, activity="User registered security info")
    return made


def _statements(read: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        read()
    return len(captured.captured_queries)


@pytest.mark.parametrize("count", [1, 6])
def test_event_view_page_is_three_statements(count: int) -> None:
    """The portal branch, the Entra branch, and the requests with their Entra records."""
    _requests(count)
    lead = portal_user(LEO)
    page = history_query(HistoryFilters(), lead, page_size=50)
    assert any(row.linked for row in page.rows)
    assert _statements(lambda: history_query(HistoryFilters(), lead, page_size=50)) == 3


def test_an_agent_on_a_person_reads_the_person_only() -> None:
    """An Agent's scope adds nothing to the person they opened: three statements, not the
    scope's branches (three for the portal, two for Entra, and a user look-up)."""
    _requests(4)
    ada = portal_user(ADA)
    filters = HistoryFilters.from_params({"target": SAM.oid})
    rows = history_query(filters, ada, page_size=50).rows
    assert rows and all(row.target_id == SAM.oid for row in rows)
    assert _statements(lambda: history_query(filters, ada, page_size=50)) == 3


@pytest.mark.parametrize("count", [1, 6])
def test_request_view_page_is_five_statements(count: int) -> None:
    """The two branches, the requests with their Entra records, their portal events, and the
    events of the verifications they used."""
    made = _requests(count)
    lead = portal_user(LEO)
    page = request_history_query(HistoryFilters(), lead, page_size=50)
    assert {e.request.id for e in page.entries if e.request} == {r.pk for r in made}
    assert all(len(e.entra) == 2 for e in page.entries if e.request)
    assert _statements(lambda: request_history_query(HistoryFilters(), lead, page_size=50)) == 5


def test_the_request_filter_looks_the_request_up_inside_the_page_query() -> None:
    """``?request=<public id>``: the branches compare to the request's id as a subquery, so
    the page is three statements, as unfiltered; an unknown id matches nothing."""
    made = _requests(3)
    lead = portal_user(LEO)
    filters = HistoryFilters.from_params({"request": str(made[1].public_id)})
    rows = history_query(filters, lead, page_size=50).rows
    assert len(rows) == 5 and {row.request_id for row in rows} == {made[1].pk}
    assert _statements(lambda: history_query(filters, lead, page_size=50)) == 3
    unknown = HistoryFilters.from_params({"request": "00000000-0000-4000-8000-000000000000"})
    assert history_query(unknown, lead, page_size=50).rows == []
