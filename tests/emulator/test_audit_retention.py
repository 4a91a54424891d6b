"""Audit retention by licence: Graph lists (and finds) only the audit events the tenant's edition
keeps: seven days for Microsoft Entra ID Free, 30 days for P1 and P2.

Reference: https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention
("Activity reports": Audit logs | Seven days | 30 days | 30 days).

What would break if these failed: the emulator would hand the portal a month of history that a
Free tenant never keeps, so the portal's first sync, its backfill and its preflight would be
tested against an audit trail no such tenant has.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.emulator.graph_caller import GraphCaller, app_token

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer

PATH = "/auditLogs/directoryAudits"


def _set_licence(server: EmulatorServer, licence: str) -> None:
    answer = requests.post(
        f"{server.base_url.rstrip('/')}/_emulator/licence",
        json={"licence": licence},
        verify=str(server.ca_path),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"licence": licence}


@pytest.fixture
def server(fresh_tenant: EmulatorServer) -> Iterator[EmulatorServer]:
    """The shared emulator, put back to P2 (the run's licence) whatever the test did."""
    fresh_tenant.throttle.configure(enabled=False)
    try:
        yield fresh_tenant
    finally:
        _set_licence(fresh_tenant, "p2")


def _listed(graph: GraphCaller) -> list[dict[str, Any]]:
    body = graph.get(PATH, params={"$top": "1000"}).json()
    seen = list(body["value"])
    while "@odata.nextLink" in body:
        body = graph.follow(body["@odata.nextLink"]).json()
        seen.extend(body["value"])
    return seen


def _age_days(event: dict[str, Any]) -> float:
    moment = datetime.fromisoformat(event["activityDateTime"])
    return (datetime.now(UTC) - moment) / timedelta(days=1)


def _stored_between(server: EmulatorServer, low: float, high: float) -> dict[str, Any]:
    with server.tenant.lock:
        events = list(server.tenant.audit_events)
    found = next((e for e in events if low < _age_days(e) < high), None)
    assert found is not None, f"the seed holds no event {low}-{high} days old"
    return found


@pytest.mark.parametrize(("licence", "days"), [("free", 7), ("p1", 30), ("p2", 30)])
def test_directory_audits_keep_the_licences_retention(
    server: EmulatorServer, licence: str, days: int
) -> None:
    _set_licence(server, licence)
    graph = GraphCaller(server, app_token(server))
    listed = _listed(graph)
    assert listed, "recent events are always listed"
    assert max(_age_days(e) for e in listed) < days
    # Within the retention, everything stored is listed.
    with server.tenant.lock:
        kept = {e["id"] for e in server.tenant.audit_events if _age_days(e) < days - 0.01}
    assert kept <= {e["id"] for e in listed}
    # Past it, an event is neither listed nor found by id; the seed holds 60 days.
    past = _stored_between(server, days + 0.5, 59)
    assert past["id"] not in {e["id"] for e in listed}
    assert graph.get(f"{PATH}/{past['id']}").status_code == 404
    # A $filter reaching further back does not bring it back.
    since = (datetime.now(UTC) - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    filtered = graph.get(PATH, params={"$filter": f"activityDateTime ge {since}"}).json()
    assert all(_age_days(e) < days for e in filtered["value"])


def test_an_event_past_free_retention_comes_back_with_p2(server: EmulatorServer) -> None:
    """The emulator widens the window again on an upgrade (Entra would not show the Free
    tenant's older data: a known simplification, noted in DEVNOTES)."""
    graph = GraphCaller(server, app_token(server))
    middle = _stored_between(server, 8, 29)
    _set_licence(server, "free")
    assert graph.get(f"{PATH}/{middle['id']}").status_code == 404
    _set_licence(server, "p2")
    found = graph.get(f"{PATH}/{middle['id']}")
    assert found.status_code == 200 and found.json()["id"] == middle["id"]
