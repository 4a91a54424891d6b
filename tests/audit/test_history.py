"""History (/audit/) and the per-person timeline: filters, sorting, keyset paging, bookmarkable
URLs, the joined portal/Entra rows and who sees what, against a real database.

The history reads only the database: no Graph call, no emulator needed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit import views as audit_views
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.selectors import (
    Cursor,
    FilterError,
    HistoryFilters,
    history_query,
    history_rows,
)
from mfa.models import ActionKind, ActionRequest, Status
from tests.audit.history_fixtures import action_request, entra_record, event, request_event
from tests.personas import PERSONAS, portal_user, signed_in

pytestmark = pytest.mark.django_db

ADA = PERSONAS.agent
AARON = PERSONAS.privileged_agent
LEO = PERSONAS.lead
ANA = PERSONAS.admin
SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
K = PortalEvent.Kind


@dataclass
class World:
    """A small history: Ada resets Sam (succeeded, two Entra records), Aaron resets Priya
    (approved by Leo, failed, one failed Entra record), Ana changes Sam directly in Entra
    (outside the portal), Leo signs in, and an unrelated Entra "Update user" on Sam."""

    r1: ActionRequest
    r2: ActionRequest
    r1_requested: PortalEvent
    r1_started: PortalEvent
    r1_succeeded: PortalEvent
    r1_entra_a: DirectoryAuditRecord
    r1_entra_b: DirectoryAuditRecord
    r2_requested: PortalEvent
    r2_approved: PortalEvent
    r2_failed: PortalEvent
    r2_entra: DirectoryAuditRecord
    outside: DirectoryAuditRecord
    leo_sign_in: PortalEvent
    ada_sign_in: PortalEvent
    update_user: DirectoryAuditRecord


def key(row: Any) -> str:
    """A row's identity in these tests: "portal-<id>" or "entra-<id>"."""
    if isinstance(row, PortalEvent):
        return f"portal-{row.pk}"
    if isinstance(row, DirectoryAuditRecord):
        return f"entra-{row.pk}"
    return f"{row.source}-{row.id}"


def keys(rows: Any) -> list[str]:
    return [key(row) for row in rows]


@pytest.fixture
def world() -> World:
    leo_sign_in = event(K.SIGN_IN, T0 - timedelta(hours=1), actor=LEO)
    ada_sign_in = event(K.SIGN_IN, T0 - timedelta(minutes=30), actor=ADA)
    r1 = action_request(ADA, SAM, created_at=T0, ticket="INC0001111")
    r1_requested = request_event(r1, K.ACTION_REQUESTED, T0, actor=ADA)
    r1_started = request_event(r1, K.ACTION_STARTED, T0 + timedelta(seconds=30))
    r1_entra_a = entra_record(T0 + timedelta(minutes=1), SAM, request=r1)
    r1_entra_b = entra_record(T0 + timedelta(minutes=1, seconds=10), SAM, request=r1)
    r1_succeeded = request_event(r1, K.ACTION_SUCCEEDED, T0 + timedelta(minutes=2))

    d1 = T0 + timedelta(days=1)
    r2 = action_request(
        AARON, PRIYA, created_at=d1, ticket="REQ-2222", status=Status.FAILED, decided_by=LEO
    )
    r2_requested = request_event(r2, K.ACTION_REQUESTED, d1, actor=AARON)
    r2_approved = request_event(r2, K.ACTION_APPROVED, d1 + timedelta(minutes=5), actor=LEO)
    r2_entra = entra_record(d1 + timedelta(minutes=6), PRIYA, request=r2, result="failure")
    r2_failed = request_event(r2, K.ACTION_FAILED, d1 + timedelta(minutes=7))

    outside = entra_record(
        T0 + timedelta(days=2),
        SAM,
        activity="Admin registered security info",
        outside_portal=True,
        initiated_by=ANA,
    )
    update_user = entra_record(
        T0 + timedelta(days=3), SAM, activity="Update user", category="UserManagement"
    )
    return World(
        r1=r1,
        r2=r2,
        r1_requested=r1_requested,
        r1_started=r1_started,
        r1_succeeded=r1_succeeded,
        r1_entra_a=r1_entra_a,
        r1_entra_b=r1_entra_b,
        r2_requested=r2_requested,
        r2_approved=r2_approved,
        r2_failed=r2_failed,
        r2_entra=r2_entra,
        outside=outside,
        leo_sign_in=leo_sign_in,
        ada_sign_in=ada_sign_in,
        update_user=update_user,
    )


def everything(w: World) -> list[Any]:
    """Every row of the world, newest first (the default order)."""
    return [
        w.update_user,
        w.outside,
        w.r2_failed,
        w.r2_entra,
        w.r2_approved,
        w.r2_requested,
        w.r1_succeeded,
        w.r1_entra_b,
        w.r1_entra_a,
        w.r1_started,
        w.r1_requested,
        w.ada_sign_in,
        w.leo_sign_in,
    ]


def lead_rows(**params: str) -> list[str]:
    filters = HistoryFilters.from_params(params)
    return keys(history_query(filters, portal_user(LEO), page_size=200).rows)


# --- filters ------------------------------------------------------------------------------------


def test_no_filter_shows_portal_and_entra_rows_newest_first(world: World) -> None:
    assert lead_rows() == keys(everything(world))


def test_sorting_oldest_first_is_the_exact_reverse(world: World) -> None:
    assert lead_rows(order="asc") == list(reversed(keys(everything(world))))


def test_date_range_is_inclusive_calendar_days(world: World) -> None:
    day1 = (T0 + timedelta(days=1)).date().isoformat()
    assert lead_rows(since=day1, until=day1) == keys(
        [world.r2_failed, world.r2_entra, world.r2_approved, world.r2_requested]
    )
    assert lead_rows(since=(T0 + timedelta(days=2)).date().isoformat()) == keys(
        [world.update_user, world.outside]
    )
    assert lead_rows(until=(T0 - timedelta(days=1)).date().isoformat()) == []


def test_agent_filter_takes_the_actor_the_requests_and_entra_initiator(world: World) -> None:
    # Ada's own events, her request's task events and the Entra records linked to it.
    assert lead_rows(agent=ADA.oid) == keys(
        [
            world.r1_succeeded,
            world.r1_entra_b,
            world.r1_entra_a,
            world.r1_started,
            world.r1_requested,
            world.ada_sign_in,
        ]
    )
    # Ana acted directly in Entra: Entra names her as the initiator.
    assert lead_rows(agent=ANA.oid) == keys([world.outside])


def test_target_filter(world: World) -> None:
    assert lead_rows(target=PRIYA.oid) == keys(
        [world.r2_failed, world.r2_entra, world.r2_approved, world.r2_requested]
    )


def test_kind_filter_takes_portal_kinds_and_entra_activities(world: World) -> None:
    assert lead_rows(kind=K.ACTION_REQUESTED) == keys([world.r2_requested, world.r1_requested])
    assert lead_rows(kind="Admin deleted security info") == keys(
        [world.r2_entra, world.r1_entra_b, world.r1_entra_a]
    )
    assert lead_rows(kind="Update user") == keys([world.update_user])


def test_outcome_filter(world: World) -> None:
    assert lead_rows(outcome="failure") == keys([world.r2_failed, world.r2_entra])
    assert lead_rows(outcome="success", source="portal") == keys(
        [world.r1_succeeded, world.ada_sign_in, world.leo_sign_in]
    )
    assert lead_rows(outcome="partial") == []


def test_source_filter(world: World) -> None:
    entra = [r for r in everything(world) if isinstance(r, DirectoryAuditRecord)]
    portal = [r for r in everything(world) if isinstance(r, PortalEvent)]
    assert lead_rows(source="entra") == keys(entra)
    assert lead_rows(source="portal") == keys(portal)


def test_free_text_matches_names_tickets_upns_and_activities(world: World) -> None:
    # A ticket finds the request's portal events and, through the request, Entra's record.
    assert lead_rows(q="req-2222") == keys(
        [world.r2_failed, world.r2_entra, world.r2_approved, world.r2_requested]
    )
    assert lead_rows(q="registered security") == keys([world.outside])
    # A UPN also finds the person's portal events, through the requests that recorded it.
    assert lead_rows(q=PRIYA.upn.upper()) == keys(
        [world.r2_failed, world.r2_entra, world.r2_approved, world.r2_requested]
    )
    assert lead_rows(q="leo lead") == keys([world.r2_approved, world.leo_sign_in])


def test_request_filter_gives_the_request_and_its_entra_records(world: World) -> None:
    assert lead_rows(request=str(world.r1.public_id)) == keys(
        [
            world.r1_succeeded,
            world.r1_entra_b,
            world.r1_entra_a,
            world.r1_started,
            world.r1_requested,
        ]
    )


def test_outside_filter_keeps_only_changes_made_outside_the_portal(world: World) -> None:
    assert lead_rows(outside="1") == keys([world.outside])


def test_filters_combine(world: World) -> None:
    assert lead_rows(target=SAM.oid, source="entra", kind="Admin deleted security info") == keys(
        [world.r1_entra_b, world.r1_entra_a]
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "until"),
        ({"agent": "ada"}, "agent"),
        ({"target": "not-a-guid"}, "target"),
        ({"outcome": "great"}, "outcome"),
        ({"source": "both"}, "source"),
        ({"order": "random"}, "order"),
        ({"q": "x" * 201}, "q"),
        ({"request": "42"}, "request"),
    ],
)
def test_malformed_filters_are_refused_by_name(params: dict[str, str], field: str) -> None:
    with pytest.raises(FilterError) as raised:
        HistoryFilters.from_params(params)
    assert field in raised.value.errors
    response = signed_in(LEO).get("/audit/", params)
    assert response.status_code == 400
    assert field in response.content.decode()


def test_malformed_cursor_is_refused() -> None:
    lead = signed_in(LEO)
    assert lead.get("/audit/", {"after": "12.x.3"}).status_code == 400
    assert lead.get("/audit/", {"after": "1.7.3"}).status_code == 400
    assert lead.get("/audit/", {"after": "1.0.3", "before": "1.0.4"}).status_code == 400


# --- keyset paging ------------------------------------------------------------------------------


@pytest.fixture
def ties() -> list[Any]:
    """Rows with shared instants across and within sources, newest first."""
    moment = T0 + timedelta(hours=5)
    r = action_request(ADA, SAM, created_at=T0)
    rows: list[Any] = []
    for n in range(3):
        rows.append(request_event(r, K.ACTION_STEP, moment - timedelta(minutes=n)))
        rows.append(entra_record(moment - timedelta(minutes=n), SAM, request=r))
        rows.append(entra_record(moment - timedelta(minutes=n), SAM, request=r))
    # The merged order at one instant: the portal event, then the Entra records, newest id first.
    expected = []
    for n in range(3):
        p, e1, e2 = rows[3 * n : 3 * n + 3]
        expected += [p, e2, e1]
    return expected


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("page_size", [1, 2, 4])
def test_keyset_pages_cover_every_row_once_in_order(
    ties: list[Any], order: str, page_size: int
) -> None:
    expected = keys(ties) if order == "desc" else list(reversed(keys(ties)))
    filters = HistoryFilters.from_params({"order": order})
    viewer = portal_user(LEO)
    seen: list[str] = []
    pages = []
    after = None
    while True:
        page = history_query(filters, viewer, after=after, page_size=page_size)
        pages.append(page)
        seen += keys(page.rows)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert seen == expected
    assert pages[0].prev_cursor is None
    # Walking back with the previous-page cursors gives the same pages.
    for newer, older in itertools.pairwise(pages):
        assert older.prev_cursor is not None
        back = history_query(filters, viewer, before=older.prev_cursor, page_size=page_size)
        assert keys(back.rows) == keys(newer.rows)
    # The export stream agrees with the pages.
    assert keys(history_rows(filters, viewer, batch=page_size)) == expected


def test_pages_never_use_offset(ties: list[Any]) -> None:
    viewer = portal_user(LEO)
    filters = HistoryFilters()
    first = history_query(filters, viewer, page_size=2)
    with CaptureQueriesContext(connection) as queries:
        history_query(filters, viewer, after=first.next_cursor, page_size=2)
    selects = [q["sql"] for q in queries.captured_queries if "audit_" in q["sql"]]
    assert selects
    assert not [sql for sql in selects if "OFFSET" in sql.upper()]


def test_cursor_encoding_round_trips() -> None:
    cursor = Cursor(datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=UTC), 1, 42)
    assert Cursor.decode(cursor.encode()) == cursor


def test_pages_through_the_view_with_bookmarkable_links(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_views, "HISTORY_PAGE_SIZE", 2)
    lead = signed_in(LEO)
    url = f"/audit/?view=events&target={SAM.oid}&source=entra"
    seen: list[str] = []
    links_seen = []
    while url:
        response = lead.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        seen += re.findall(r'data-row="([a-z]+-\d+)"', html)
        match = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = match.group(1).replace("&amp;", "&") if match else ""
        if url:
            links_seen.append(url)
            query = parse_qs(urlsplit(url).query)
            # The next link keeps every filter and adds only the cursor.
            assert query["target"] == [SAM.oid]
            assert query["source"] == ["entra"]
            assert "after" in query
    expected = [r for r in everything(world) if isinstance(r, DirectoryAuditRecord)]
    expected = [r for r in expected if r.target_id == SAM.oid]
    assert seen == keys(expected)
    assert links_seen
    # A bookmarked page gives the same rows again.
    again = lead.get(links_seen[0]).content.decode()
    assert re.findall(r'data-row="([a-z]+-\d+)"', again) == seen[2:4]


def test_filter_params_round_trip_as_a_bookmark() -> None:
    params = {
        "since": "2026-03-01",
        "until": "2026-03-31",
        "agent": ADA.oid,
        "target": SAM.oid,
        "kind": "Update user",
        "outcome": "success",
        "source": "entra",
        "q": "ann",
        "request": "7f0c7c6e-8a57-4a4e-9d61-0d1f7d4b1c11",
        "outside": "1",
        "order": "asc",
    }
    assert HistoryFilters.from_params(params).to_params() == params


# --- the rows -------------------------------------------------------------------------------------


def test_rows_show_agent_ticket_verification_approval_and_entra_side_by_side(
    world: World,
) -> None:
    html = signed_in(LEO).get("/audit/?view=events").content.decode()
    # Entra names the portal's app; history names the human behind it and the ticket.
    r1_entra = html.split(f'data-row="{key(world.r1_entra_a)}"')[1].split("</tr>")[0]
    assert ADA.display_name in r1_entra
    assert "INC0001111" in r1_entra
    assert "via app MFA helpdesk portal" in r1_entra
    assert "Video call: face matched the HR photo" in r1_entra
    # The portal event shows Entra's records of the same request.
    r1_done = html.split(f'data-row="{key(world.r1_succeeded)}"')[1].split("</tr>")[0]
    assert r1_done.count("Entra: Admin deleted security info") == 2
    # The approval of the privileged request.
    r2_row = html.split(f'data-row="{key(world.r2_failed)}"')[1].split("</tr>")[0]
    assert "Approved" in r2_row
    assert f"by {LEO.display_name}" in r2_row
    # The change made outside the portal is flagged.
    outside_row = html.split(f'data-row="{key(world.outside)}"')[0].rsplit("<tr", 1)[1]
    assert "history__row--outside" in outside_row
    assert (
        "Outside the portal" in html.split(f'data-row="{key(world.outside)}"')[1].split("</tr>")[0]
    )


def test_rows_carry_their_request(world: World) -> None:
    page = history_query(HistoryFilters(), portal_user(LEO), page_size=200)
    by_key = {key(row): row for row in page.rows}
    entra = by_key[key(world.r2_entra)]
    assert entra.request is not None and entra.request.public_id == world.r2.public_id
    assert entra.agent_name == AARON.display_name
    assert entra.ticket == "REQ-2222"
    assert entra.request.decided_by_name == LEO.display_name
    started = by_key[key(world.r1_started)]
    assert started.agent_name == ADA.display_name  # a task's event: the requester is the agent
    assert [r.id for r in started.linked] == [world.r1_entra_a.pk, world.r1_entra_b.pk]
    assert by_key[key(world.outside)].request is None


# --- who sees what ------------------------------------------------------------------------------


URLS = ["/audit/", f"/audit/person/{SAM.oid}/", "/audit/export.csv", "/audit/export.jsonl"]


@pytest.mark.parametrize("url", URLS)
def test_persona_matrix_on_history_urls(url: str) -> None:
    for persona in (ADA, AARON, LEO, ANA):
        assert signed_in(persona).get(url).status_code == 200, (persona.key, url)
    refused = signed_in(PERSONAS.outsider).get(url)
    assert refused.status_code == 403
    assert "no portal role" in refused.content.decode().lower()
    anonymous = Client().get(url)
    assert anonymous.status_code == 302
    assert "/oauth2/login" in anonymous["Location"]


def test_history_refuses_other_methods() -> None:
    assert signed_in(LEO).post("/audit/").status_code == 405


def test_agent_sees_only_their_own_requests(world: World) -> None:
    ada = keys(history_query(HistoryFilters(), portal_user(ADA), page_size=200).rows)
    assert ada == keys(
        [
            world.r1_succeeded,
            world.r1_entra_b,
            world.r1_entra_a,
            world.r1_started,
            world.r1_requested,
            world.ada_sign_in,
        ]
    )
    aaron = keys(history_query(HistoryFilters(), portal_user(AARON), page_size=200).rows)
    assert aaron == keys([world.r2_failed, world.r2_entra, world.r2_approved, world.r2_requested])
    # Not even by naming the other agent or the request.
    assert not history_query(
        HistoryFilters(request=world.r2.public_id), portal_user(ADA), page_size=200
    ).rows
    assert history_query(HistoryFilters(agent=AARON.oid), portal_user(ADA)).rows == []


def test_agent_sees_the_whole_history_of_a_person_they_open(world: World) -> None:
    ada = portal_user(ADA)
    priya = history_query(HistoryFilters(target=PRIYA.oid), ada, page_size=200)
    assert keys(priya.rows) == keys(
        [world.r2_failed, world.r2_entra, world.r2_approved, world.r2_requested]
    )
    fragment = signed_in(ADA).get(f"/audit/person/{PRIYA.oid}/").content.decode()
    assert re.findall(r'data-row="([a-z]+-\d+)"', fragment) == keys(priya.rows)
    assert "Aaron Agent" in fragment


def test_page_says_what_an_agent_sees() -> None:
    assert "Your own requests" in signed_in(ADA).get("/audit/").content.decode()
    assert "Your own requests" not in signed_in(LEO).get("/audit/").content.decode()


def test_person_timeline_pages_with_show_more(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_views, "PERSON_PAGE_SIZE", 3)
    lead = signed_in(LEO)
    html = lead.get(f"/audit/person/{SAM.oid}/").content.decode()
    assert 'data-timeline="' in html
    seen = re.findall(r'data-row="([a-z]+-\d+)"', html)
    while True:
        more = re.search(r'hx-get="([^"]+)"', html)
        if not more:
            break
        html = lead.get(
            more.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true"
        ).content.decode()
        assert "data-timeline" not in html  # the continuation is list items only
        seen += re.findall(r'data-row="([a-z]+-\d+)"', html)
    sam_rows = [r for r in everything(world) if getattr(r, "target_id", "") == SAM.oid]
    assert seen == keys(sam_rows)


def test_person_timeline_rejects_a_non_guid() -> None:
    assert signed_in(LEO).get("/audit/person/not-a-guid/").status_code == 404


def test_history_link_is_in_the_navigation() -> None:
    html = signed_in(ADA).get("/").content.decode()
    assert 'href="/audit/"' in html


def test_kinds_shown_for_request_events(world: World) -> None:
    page = history_query(HistoryFilters(kind=K.ACTION_REQUESTED), portal_user(LEO))
    assert {row.request.kind for row in page.rows if row.request} == {ActionKind.REREGISTER}
