"""Defect 6 of issue 11 for re-registration: Entra's directory reads lag behind its writes, so a
method just deleted may still be listed. The re-list after the deletions waits and lists again
(a visible waiting step, the engine's backoff) instead of reporting "still registered" at once,
and never deletes a method twice.

The emulator's ``method_deletion_seconds`` is on for these tests only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from graph import methods as graph_methods
from mfa.models import ActionKind, Status
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import action_request_make, target_profile, wait_final
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target


@pytest.fixture
def lagging(tenant: Any, settings: SettingsWrapper) -> Iterator[Any]:
    settings.PORTAL_RETRY_BACKOFF_SECONDS = 0.5
    try:
        yield tenant
    finally:
        tenant.set_propagation(method_deletion_seconds=0)


def _deletions_of(server: Any, user_id: str, since: int) -> list[dict[str, Any]]:
    with server.tenant.lock:
        events = list(server.tenant.audit_events[since:])
    return [
        e
        for e in events
        if "deleted" in e["activityDisplayName"].lower()
        and any(t.get("id") == user_id for t in e.get("targetResources") or ())
    ]


def test_a_method_still_listed_after_its_delete_is_listed_again_not_deleted_twice(
    lagging: Any, celery_worker: Any
) -> None:
    deletable = [
        m for m in graph_methods.list_methods(get_graph_client(), SAM.oid) if m.kind.deletable
    ]
    assert len(deletable) >= 2
    lagging.set_propagation(method_deletion_seconds=2)
    start = len(lagging.tenant.audit_events)

    row = action_request_make(
        ActionKind.REREGISTER, agent=portal_user(PERSONAS.agent), profile=target_profile(SAM)
    )
    row = wait_final(row.pk, timeout=90)

    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert row.result["failed"] == [] and row.result["remaining"] == []
    assert {e["id"] for e in row.result["removed"]} == {m.id for m in deletable}
    texts = [str(s["text"]) for s in row.steps]
    assert any(t.startswith("Waiting for Entra to stop listing the removed methods") for t in texts)
    # Each method was deleted once: the re-run after the backoff only listed.
    assert len(_deletions_of(lagging, SAM.oid, start)) == len(deletable)


def test_past_the_limit_a_method_still_listed_is_reported(
    lagging: Any, celery_worker: Any, settings: SettingsWrapper
) -> None:
    settings.PORTAL_RELIST_TIMEOUT_SECONDS = 1
    lagging.set_propagation(method_deletion_seconds=60)
    row = action_request_make(
        ActionKind.REREGISTER, agent=portal_user(PERSONAS.agent), profile=target_profile(SAM)
    )
    row = wait_final(row.pk, timeout=60)
    # Nothing confirmed removed: the request fails, naming each method Graph still lists.
    assert row.status in (Status.FAILED, Status.PARTIALLY_SUCCEEDED), (row.status, row.steps)
    assert row.result["failed"] and row.result["removed"] == []
    assert all(f["code"] == "StillRegistered" for f in row.result["failed"])
    assert all("check Entra" in f["message"] for f in row.result["failed"])
