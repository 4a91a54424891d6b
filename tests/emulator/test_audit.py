"""The directory audit log: event shape, filters, ordered paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entra_emulator.audit_api import (
    build_audit_event,
    decode_audit_skiptoken,
    encode_audit_skiptoken,
    select_page,
)
from entra_emulator.graph_core import GraphHttpError
from entra_emulator.seed import CLIENT_ID, PERSONAS
from tests.emulator.graph_caller import GraphCaller, app_token

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SAM = PERSONAS["sam.standard"]["id"]
PATH = "/auditLogs/directoryAudits"


def _event(index: int, category: str = "UserManagement") -> dict[str, Any]:
    return build_audit_event(
        initiated_by={
            "app": {"appId": CLIENT_ID, "displayName": "Portal", "servicePrincipalId": "sp"}
        },
        category=category,
        activity="Admin deleted security info",
        target_resources=[{"id": f"user-{index}", "type": "User"}],
        activity_time=NOW + timedelta(minutes=index),
    )


def test_events_have_graphs_shape() -> None:
    event = _event(1)
    assert set(event) == {
        "id",
        "category",
        "correlationId",
        "result",
        "resultReason",
        "activityDisplayName",
        "activityDateTime",
        "loggedByService",
        "operationType",
        "initiatedBy",
        "targetResources",
        "additionalDetails",
    }
    assert event["initiatedBy"]["user"] is None and event["initiatedBy"]["app"]["appId"]
    assert event["operationType"] == "Delete"
    assert event["targetResources"][0]["modifiedProperties"] == []
    assert event["activityDateTime"].endswith("Z")
    with pytest.raises(ValueError):
        build_audit_event(
            initiated_by={}, category="x", activity="y", target_resources=[], activity_time=NOW
        )


def test_pages_run_either_way_without_gaps_even_while_events_arrive() -> None:
    events = [_event(i, "RoleManagement" if i % 3 == 0 else "UserManagement") for i in range(10)]
    events.insert(3, _event(-5))  # stored out of time order: the order is by activityDateTime
    ids = [f"user-{i}" for i in (9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -5)]

    def read(newest_first: bool, arriving: dict[str, Any] | None = None) -> list[str]:
        seen: list[str] = []
        page, after = select_page(
            events, matches=None, top=4, after=None, newest_first=newest_first
        )
        while True:
            seen.extend(e["targetResources"][0]["id"] for e in page)
            if arriving is not None:
                events.append(arriving)  # a new event must not shift the next page
                arriving = None
            if after is None:
                return seen
            page, after = select_page(
                events, matches=None, top=4, after=after, newest_first=newest_first
            )

    assert read(True, _event(99)) == ids
    assert read(False, _event(100)) == [*reversed(ids), "user-99", "user-100"]
    roles, _ = select_page(
        events,
        matches=lambda e: e["category"] == "RoleManagement",
        top=10,
        after=None,
        newest_first=True,
    )
    assert len(roles) == 4
    assert decode_audit_skiptoken(encode_audit_skiptoken(17)) == 17
    with pytest.raises(GraphHttpError):
        decode_audit_skiptoken("not-a-token")
    with pytest.raises(GraphHttpError):
        select_page(events, matches=None, top=4, after=len(events), newest_first=True)


@pytest.fixture
def server(fresh_tenant: Any) -> Any:
    fresh_tenant.throttle.configure(enabled=False)
    return fresh_tenant


@pytest.fixture
def graph(server: Any) -> GraphCaller:
    return GraphCaller(server, app_token(server))


def _read_all(graph: GraphCaller, params: dict[str, str]) -> list[dict[str, Any]]:
    answer = graph.get(PATH, params=params)
    assert answer.status_code == 200, answer.text
    seen: list[dict[str, Any]] = []
    body = answer.json()
    while True:
        seen.extend(body["value"])
        if "@odata.nextLink" not in body:
            return seen
        body = graph.follow(body["@odata.nextLink"]).json()


def test_list_pages_by_next_link_in_the_order_asked(server: Any, graph: GraphCaller) -> None:
    """``$orderby=activityDateTime desc`` pages newest first; with no ``$orderby`` (Graph
    documents no default order) the emulator answers oldest first."""
    retained = [
        e
        for e in server.tenant.audit_events
        if datetime.fromisoformat(e["activityDateTime"]) >= datetime.now(UTC) - timedelta(days=30)
    ]
    assert len(retained) > 100  # 30 of the 60 seeded days (P2 retention)
    newest = _read_all(graph, {"$top": "100", "$orderby": "activityDateTime desc"})
    assert len(newest) == len(retained)
    assert len({e["id"] for e in newest}) == len(retained)
    stamps = [e["activityDateTime"] for e in newest]
    assert stamps == sorted(stamps, reverse=True)
    unordered = _read_all(graph, {"$top": "100"})
    assert [e["id"] for e in unordered] == [e["id"] for e in reversed(newest)]
    oldest = _read_all(graph, {"$top": "100", "$orderby": "activityDateTime asc"})
    assert [e["id"] for e in oldest] == [e["id"] for e in unordered]
    assert graph.get(PATH, params={"$orderby": "category"}).status_code == 400
    assert graph.get(PATH, params={"$top": "1001"}).status_code == 400
    one = graph.get(f"{PATH}/{newest[0]['id']}")
    assert one.status_code == 200 and one.json()["id"] == newest[0]["id"]
    assert graph.get(f"{PATH}/no-such-event").status_code == 404


def test_filters_combine_like_graphs(server: Any, graph: GraphCaller) -> None:
    assert graph.post(f"/users/{SAM}/revokeSignInSessions").status_code == 200
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = graph.get(PATH, params={"$filter": f"activityDateTime ge {since}"}).json()["value"]
    assert [e["activityDisplayName"] for e in recent] == [
        "Update StsRefreshTokenValidFrom Timestamp"
    ]
    combined = graph.get(
        PATH,
        params={
            "$filter": (
                f"targetResources/any(t:t/id eq '{SAM}') "
                f"and initiatedBy/app/appId eq '{CLIENT_ID}' "
                f"and category eq 'UserManagement' and activityDateTime ge {since}"
            )
        },
    ).json()["value"]
    assert [e["id"] for e in combined] == [recent[0]["id"]]
    by_name = graph.get(
        PATH, params={"$filter": "activityDisplayName eq 'Admin deleted security info'"}
    ).json()["value"]
    assert by_name and {e["activityDisplayName"] for e in by_name} == {
        "Admin deleted security info"
    }
    ana = PERSONAS["ana.admin"]["id"]
    by_user = graph.get(PATH, params={"$filter": f"initiatedBy/user/id eq '{ana}'"}).json()
    assert all(e["initiatedBy"]["user"]["id"] == ana for e in by_user["value"])
    old = graph.get(PATH, params={"$filter": "activityDateTime le 2000-01-01T00:00:00Z"})
    assert old.json()["value"] == []
    assert graph.get(PATH, params={"$filter": "category eq"}).status_code == 400


def test_audit_log_needs_its_permission(server: Any) -> None:
    from entra_emulator.seed import READER_CLIENT_ID, READER_CLIENT_SECRET

    reader = GraphCaller(
        server, app_token(server, client_id=READER_CLIENT_ID, client_secret=READER_CLIENT_SECRET)
    )
    refused = reader.get(PATH)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Authorization_RequestDenied"
