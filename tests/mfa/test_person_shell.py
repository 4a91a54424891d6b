"""Point 1 of issue 12: the person page never waits on the reports budget to draw itself.

The shell (/users/<oid>/) is drawn from identity-class data and the portal's own rows only; the
methods and per-user MFA panels are fragments (mfa.panels): from the per-person cache with their
age, read at once when the budget grants it, else a waiting panel with the estimate and the place
in the queue; Refresh forgets the cache; the Entra events come from the local audit cache, and
"sync this person now" tops it up. Graph calls are counted at the HTTP session, by class
(tests/mfa/graph_calls.py), against the real emulator.

What would break if these failed: a person page that spends (or waits for) the 5-per-10-s reports
budget before its first byte; a panel that sleeps in a web worker instead of saying how long it
waits; a repeat view that spends the budget again; a Refresh that shows the cache anyway; an
Entra events panel that calls Graph on every view.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit import sync as audit_sync
from audit.models import DirectoryAuditRecord
from graph.budget import IDENTITY, REPORTS
from mfa import person_cache
from portal.graph_client import get_graph_client
from tests.mfa.graph_calls import counting_graph_calls
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target


def _panel(client: Client, name: str, oid: str = SAM.oid) -> str:
    """The panel ``name`` ("methods", "mfa"; "methods?default=1": with the default method)."""
    path, _, query = name.partition("?")
    url = f"/users/{oid}/panels/{path}/" + (f"?{query}" if query else "")
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content.decode()[:2000]
    return str(response.content.decode())


def _state(html: str) -> str:
    match = re.search(r'data-panel-state="(\w+)"', html)
    assert match, html[:2000]
    return match.group(1)


def test_the_shell_makes_no_reports_call(tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = signed_in(PERSONAS.agent)
    DirectoryAuditRecord.objects.create(
        entra_id="local-only-event",
        activity_at=timezone.now() - timedelta(minutes=3),
        category="UserManagement",
        activity="Admin registered security info",
        result="success",
        target_id=SAM.oid,
        target_name=SAM.display_name,
        initiated_by_name="Someone Else",
        synced_at=timezone.now(),
    )
    with counting_graph_calls(monkeypatch) as calls:
        response = agent.get(f"/users/{SAM.oid}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert calls.of(REPORTS) == [], calls.seen
    assert set(calls.by_class()) <= {IDENTITY}
    # Identity-class data and the portal's own rows are all there at once ...
    assert SAM.display_name in html and SAM.upn in html and "Manager" in html
    assert "No directory role." in html and "Standard" in html
    assert f"/users/{SAM.oid}/actions/revoke_sessions/" in html
    assert "Recent portal requests" in html
    # ... the Entra events from the local cache ...
    assert "Admin registered security info" in html and "Someone Else" in html
    # ... and the Graph panels as fragments the page's script loads (a link without it): the
    # methods at once, the per-user MFA state (nothing cached) when the agent asks.
    for name in ("methods", "mfa"):
        assert f'data-panel-url="/users/{SAM.oid}/panels/{name}/"' in html
    assert html.count('data-panel-state="loading"') == 1
    assert html.count('data-panel-state="idle"') == 1
    assert "Show the per-user MFA state" in html
    assert "Authenticator app" not in html
    assert "js/panels.js" in html


def test_a_first_view_reads_only_the_methods_and_offers_the_rest(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: the page spends one reports call on a person nobody opened (the methods); the
    default method and the per-user MFA state cost one call each when the agent asks, and none
    once held: the page then shows them by itself."""
    agent = signed_in(PERSONAS.agent)
    with counting_graph_calls(monkeypatch) as calls:
        methods = _panel(agent, "methods")
    assert [p for _, p in calls.of(REPORTS)] == [f"/v1.0/users/{SAM.oid}/authentication/methods"]
    assert _state(methods) == "filled" and "Authenticator app" in methods
    assert "data-default-method" not in methods
    assert f'href="/users/{SAM.oid}/panels/methods/?default=1" data-panel-load' in methods

    with counting_graph_calls(monkeypatch) as calls:
        with_default = _panel(agent, "methods?default=1")
        mfa = _panel(agent, "mfa")
    assert [p for _, p in calls.of(REPORTS)] == [
        f"/beta/users/{SAM.oid}/authentication/signInPreferences",
        f"/beta/users/{SAM.oid}/authentication/requirements",
    ]
    assert "data-default-method" in with_default and "data-default-offer" not in with_default
    assert _state(mfa) == "filled" and "Disabled" in mfa

    # Held now: the page loads the MFA panel by itself, and the methods come marked, no call.
    with counting_graph_calls(monkeypatch) as calls:
        shell = agent.get(f"/users/{SAM.oid}/").content.decode()
        again = _panel(agent, "methods")
    assert calls.of(REPORTS) == []
    assert shell.count('data-panel-state="loading"') == 2 and "data-panel-idle" not in shell
    assert "data-default-method" in again and "data-default-offer" not in again


def test_a_panel_reads_graph_once_then_answers_from_the_cache(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = signed_in(PERSONAS.agent)
    with counting_graph_calls(monkeypatch) as calls:
        first = _panel(agent, "methods?default=1")
    assert _state(first) == "filled"
    assert "Authenticator app" in first and "+44 **** **0123" in first
    assert "Read from Graph, as of just now" in first
    paths = [path for _, path in calls.of(REPORTS)]
    assert len(paths) == 2 and paths[1].endswith("/signInPreferences"), paths

    with counting_graph_calls(monkeypatch) as calls:
        again = _panel(agent, "methods?default=1")
        mfa = _panel(agent, "mfa")
    assert "From the portal's cache, as of just now" in again
    assert "Authenticator app" in again and "data-default-method" in again
    # The MFA state was not cached yet: one call for it, none for the methods again.
    assert [p for _, p in calls.of(REPORTS)] == [
        f"/beta/users/{SAM.oid}/authentication/requirements"
    ]
    assert _state(mfa) == "filled" and "Disabled" in mfa


def test_a_panel_waits_for_the_budget_instead_of_the_page(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = signed_in(PERSONAS.agent)
    get_graph_client().budget.record_pause(REPORTS, 20)
    with counting_graph_calls(monkeypatch) as calls:
        shell = agent.get(f"/users/{SAM.oid}/")
        waiting = _panel(agent, "methods")
    assert shell.status_code == 200 and SAM.display_name in shell.content.decode()
    assert calls.of(REPORTS) == []
    assert _state(waiting) == "waiting"
    text = " ".join(waiting.split())
    found = re.search(
        r"waiting for Graph's budget, about (\d+) s \(place (\d+) in the queue\)", text
    )
    assert found, text
    assert 15 <= int(found.group(1)) <= 21 and int(found.group(2)) >= 1
    retry = re.search(r'data-retry-after="([\d.]+)"', waiting)
    # First in the queue: asked again just after the estimate (the pause's end), not before.
    assert retry and int(found.group(1)) - 1 <= float(retry.group(1)) <= int(found.group(1)) + 1
    # Without the page's script, a link reloads.
    assert f'href="/users/{SAM.oid}/"' in waiting


def test_refresh_forgets_the_cache_and_reloads_the_page(tenant: Any) -> None:
    agent = signed_in(PERSONAS.agent)
    _panel(agent, "methods")
    assert person_cache.cached(SAM.oid) is not None
    response = agent.post(f"/users/{SAM.oid}/panels/refresh/")
    assert response.status_code == 302
    assert response["Location"] == f"/users/{SAM.oid}/#panels"
    assert person_cache.cached(SAM.oid) is None
    assert "Read from Graph" in _panel(agent, "methods")


def test_a_failed_read_stays_in_its_panel(tenant: Any) -> None:
    tenant.faults.add_fail_next(
        "GET",
        rf"^/v1\.0/users/{SAM.oid}/authentication/methods$",
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges.",
    )
    agent = signed_in(PERSONAS.agent)
    html = _panel(agent, "methods")
    assert _state(html) == "error"
    assert "Authorization_RequestDenied" in html and "could not be read" in html
    assert _state(_panel(agent, "mfa")) == "filled"


def test_without_the_script_a_panel_is_a_page_of_its_own(tenant: Any) -> None:
    response = signed_in(PERSONAS.agent).get(f"/users/{SAM.oid}/panels/mfa/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Back to the person" in html and "Per-user MFA" in html and "<html" in html


def test_the_entra_events_panel_reads_the_local_cache_and_syncs_one_person(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entra_emulator.audit_api import build_audit_event, user_target

    # An event of the person's within the retention Graph lists (the seeded ones fall on days
    # drawn around the real date, so whether one is within 30 days depends on the day).
    event = build_audit_event(
        initiated_by={"user": {"id": PERSONAS.privileged_agent.oid, "displayName": "Aaron"}},
        category="UserManagement",
        activity="Admin deleted security info",
        target_resources=[user_target(tenant.tenant.users[SAM.oid], [])],
        activity_time=timezone.now() - timedelta(days=2),
    )
    with tenant.tenant.lock:
        tenant.tenant.audit_events.append(event)
    agent = signed_in(PERSONAS.agent)
    with counting_graph_calls(monkeypatch) as calls:
        before = agent.get(f"/users/{SAM.oid}/panels/entra-events/").content.decode()
    assert len(calls) == 0
    assert "No Entra events for this person" in before

    # "Sync this person now" (the task's body; the browser tests run it on the worker).
    response = agent.post(f"/users/{SAM.oid}/panels/entra-events/sync/")
    assert response.status_code == 302
    assert audit_sync.person_sync_pending(SAM.oid)
    pending = agent.get(f"/users/{SAM.oid}/panels/entra-events/").content.decode()
    assert _state(pending) == "waiting" and "Reading this person's events" in pending
    with counting_graph_calls(monkeypatch) as calls:
        result = audit_sync.entra_audit_sync_person(target_id=SAM.oid)
    assert [p for _, p in calls.of(REPORTS)] == ["/v1.0/auditLogs/directoryAudits"]
    assert result.inserted > 0
    assert not audit_sync.person_sync_pending(SAM.oid)
    after = agent.get(f"/users/{SAM.oid}/panels/entra-events/").content.decode()
    assert _state(after) == "filled" and "data-entra-events" in after
    stored = DirectoryAuditRecord.objects.filter(target_id=SAM.oid).count()
    assert stored == result.inserted
