"""The order of ``GET /auditLogs/directoryAudits``, and the person page's audit panel that reads
its first page.

"List directoryAudits" documents ``$orderby``, and the directoryAudit resource documents it on
``activityDateTime``; neither documents a default order. The emulator answers oldest first when
no ``$orderby`` is given (https://learn.microsoft.com/graph/api/directoryaudit-list,
https://learn.microsoft.com/graph/api/resources/directoryaudit).

What would break if these failed: the person page's "recent Entra events" panel, which reads one
page of ``ENTRA_EVENTS_TOP`` events, would show whichever events Graph happened to list first
(on a real tenant possibly the oldest of the month) instead of the latest changes to the person.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from audit import sync
from audit.models import DirectoryAuditRecord
from entra_emulator.audit_api import build_audit_event
from entra_emulator.seed import CLIENT_ID
from graph.results import DirectoryAudit
from mfa import selectors
from mfa.selectors import ENTRA_EVENTS_TOP
from tests.emulator.graph_caller import GraphCaller, app_token
from tests.personas import PERSONAS, portal_user

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer

SAM = PERSONAS.standard_target
PATH = "/auditLogs/directoryAudits"


def _add_events(server: EmulatorServer, days_ago: list[float]) -> list[str]:
    """Events about Sam at the given ages, appended in the order given (not in time order)."""
    now = datetime.now(UTC)
    events = [
        build_audit_event(
            initiated_by={"app": {"appId": CLIENT_ID, "displayName": "Portal"}},
            category="UserManagement",
            activity="Update StsRefreshTokenValidFrom Timestamp",
            target_resources=[{"id": SAM.oid, "type": "User"}],
            activity_time=now - timedelta(days=age),
        )
        for age in days_ago
    ]
    with server.tenant.lock:
        server.tenant.audit_events.extend(events)
    return [e["id"] for e in events]


def _sams_events_newest_first(server: EmulatorServer) -> list[dict[str, Any]]:
    cutoff = datetime.now(UTC) - timedelta(days=30)  # P2 retention
    with server.tenant.lock:
        events = [
            e
            for e in server.tenant.audit_events
            if any(t["id"] == SAM.oid for t in e["targetResources"])
            and datetime.fromisoformat(e["activityDateTime"]) >= cutoff
        ]
    return sorted(events, key=lambda e: e["activityDateTime"], reverse=True)


def test_orderby_activity_time_either_way_and_oldest_first_without_it(
    fresh_tenant: EmulatorServer,
) -> None:
    fresh_tenant.throttle.configure(enabled=False)
    graph = GraphCaller(fresh_tenant, app_token(fresh_tenant))
    _add_events(fresh_tenant, [0.5, 20, 0.1, 12])
    condition = {"$filter": f"targetResources/any(t:t/id eq '{SAM.oid}')", "$top": "5"}
    expected = [e["id"] for e in _sams_events_newest_first(fresh_tenant)]

    def read(params: dict[str, str]) -> list[str]:
        body = graph.get(PATH, params={**condition, **params}).json()
        ids = [e["id"] for e in body["value"]]
        while "@odata.nextLink" in body:
            body = graph.follow(body["@odata.nextLink"]).json()
            ids.extend(e["id"] for e in body["value"])
        return ids

    assert read({"$orderby": "activityDateTime desc"}) == expected
    assert read({"$orderby": "activityDateTime asc"}) == expected[::-1]
    assert read({}) == expected[::-1]  # no documented default: the emulator's is oldest first
    refused = graph.get(PATH, params={"$orderby": "activityDisplayName"})
    assert refused.status_code == 400, refused.text


@pytest.mark.django_db
def test_person_page_panel_shows_the_newest_events(tenant: EmulatorServer) -> None:
    """ "Sync this person now" asks Graph for the newest first and the panel shows the newest of
    the local cache; relying on an order Graph does not document would fill it with Sam's
    oldest events."""
    # Appended oldest last: a sync that took the first page as Graph listed it unordered
    # would store the oldest of the month.
    newest = _add_events(tenant, [0.01, *range(1, 28, 2), 0.02])
    expected = _sams_events_newest_first(tenant)
    assert len(expected) > ENTRA_EVENTS_TOP, "the test needs more events than the panel shows"
    sync.entra_audit_sync_person(target_id=SAM.oid, top=ENTRA_EVENTS_TOP)
    rule = sync.KeepRule.from_settings()
    first_page = expected[:ENTRA_EVENTS_TOP]
    stored = set(DirectoryAuditRecord.objects.values_list("entra_id", flat=True))
    assert stored == {e["id"] for e in first_page if rule.keeps(DirectoryAudit.from_graph(e))}
    assert expected[0]["id"] == newest[0] and newest[0] in stored
    events = selectors.entra_events(viewer=portal_user(PERSONAS.agent), target_id=SAM.oid)
    shown = [row.at for row in events.rows]
    assert shown == sorted(shown, reverse=True) and shown
    assert shown[0] == datetime.fromisoformat(expected[0]["activityDateTime"])
