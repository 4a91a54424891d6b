"""Point 2 of issue 12: the per-person cache of methods, sign-in preferences and per-user MFA
state (mfa.person_cache), in Redis through the Django cache (JSON, never pickle).

Forgotten when the portal's own write finishes (the re-registration's re-list refills it), when
the audit sync sees an outside security-info / method / MFA-state event about the person, and on
Refresh (``forget``); a read under way when it is forgotten does not store what it read. Actions
never read it (tests/mfa/test_reset_budget.py shows the runner reading fresh).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from audit import sync
from audit.models import DirectoryAuditRecord
from audit.signals import security_changes, security_events_seen
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph.budget import REPORTS
from mfa import person_cache
from mfa.models import ActionKind, Status
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import action_request_make, wait_final
from tests.mfa.graph_calls import counting_graph_calls
from tests.personas import PERSONAS
from tests.test_settings import last_line, start

SAM = PERSONAS.standard_target


@pytest.mark.django_db
def test_load_keeps_json_rows_and_cached_rebuilds_the_same_results(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = get_graph_client()
    with counting_graph_calls(monkeypatch) as calls:
        loaded = person_cache.load(client, SAM.oid)
    # Three reports-class reads: methods, signInPreferences (Sam has methods), requirements.
    assert [p.rsplit("/", 1)[1] for _, p in calls.of(REPORTS)] == [
        "methods",
        "signInPreferences",
        "requirements",
    ]
    assert loaded.has(*person_cache.PARTS) and loaded.fetched_at is not None
    assert loaded.methods == tuple(graph_methods.list_methods(client, SAM.oid))
    assert loaded.preferences == graph_requirements.get_sign_in_preferences(client, SAM.oid)
    assert loaded.mfa_state == graph_requirements.get_per_user_mfa_state(client, SAM.oid)
    assert loaded.default_method_id is not None

    with counting_graph_calls(monkeypatch) as calls:
        held = person_cache.cached(SAM.oid)
    assert len(calls) == 0
    assert held == loaded
    assert held is not None and 0 <= (held.age_seconds() or 0) < 60
    # Plain JSON rows in the cache (no class paths for the serializer to import).
    raw = cache.get(f"mfa:person:{SAM.oid}:methods")
    assert isinstance(raw, dict) and isinstance(raw["value"], list)
    assert all(isinstance(row, dict) and isinstance(row["kind"], str) for row in raw["value"])


@pytest.mark.django_db
def test_parts_are_read_only_when_asked_and_preferences_need_methods(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = get_graph_client()
    with counting_graph_calls(monkeypatch) as calls:
        state = person_cache.load(client, SAM.oid, parts=(person_cache.MFA_STATE,))
    assert [p.rsplit("/", 1)[1] for _, p in calls.of(REPORTS)] == ["requirements"]
    assert state.parts == {person_cache.MFA_STATE} and state.methods is None

    # The preferences without the methods held: the methods are read first.
    with counting_graph_calls(monkeypatch) as calls:
        both = person_cache.load(client, SAM.oid, parts=(person_cache.PREFERENCES,))
    assert [p.rsplit("/", 1)[1] for _, p in calls.of(REPORTS)] == ["methods", "signInPreferences"]
    assert both.parts == set(person_cache.PARTS)  # merged with the MFA state held

    # A person with only the password: no signInPreferences call, and the default is known absent.
    with tenant.tenant.lock:
        tenant.tenant.methods[SAM.oid] = [
            m for m in tenant.tenant.methods[SAM.oid] if "password" in m["@odata.type"]
        ]
    person_cache.forget(SAM.oid)
    with counting_graph_calls(monkeypatch) as calls:
        bare = person_cache.load(client, SAM.oid, parts=person_cache.PARTS[:2])
    assert [p.rsplit("/", 1)[1] for _, p in calls.of(REPORTS)] == ["methods"]
    assert bare.has(person_cache.PREFERENCES) and bare.preferences is None


@pytest.mark.django_db
def test_the_lifetime_is_the_setting(tenant: Any, settings: SettingsWrapper) -> None:
    settings.PORTAL_PERSON_CACHE_SECONDS = 1
    person_cache.load(get_graph_client(), SAM.oid, parts=(person_cache.MFA_STATE,))
    assert person_cache.cached(SAM.oid) is not None
    time.sleep(1.5)
    assert person_cache.cached(SAM.oid) is None


@pytest.mark.parametrize("value", ["0", "86401", "soon"])
def test_a_bad_lifetime_stops_the_start(value: str) -> None:
    result = start({"PORTAL_PERSON_CACHE_SECONDS": value})
    assert result.returncode != 0
    assert last_line(result).startswith("portal.config.ConfigError: PORTAL_PERSON_CACHE_SECONDS")


@pytest.mark.django_db
def test_forget_drops_everything_and_stops_a_read_under_way(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = get_graph_client()
    person_cache.load(client, SAM.oid)
    person_cache.forget(SAM.oid)
    assert person_cache.cached(SAM.oid) is None

    # Refresh pressed (or the runner finished) while a panel's read was at Graph: that read
    # may predate the change, so it is shown once but not kept.
    real = graph_methods.list_methods

    def read_then_forgotten(c: Any, user_id: str) -> Any:
        found = real(c, user_id)
        person_cache.forget(user_id)
        return found

    monkeypatch.setattr(graph_methods, "list_methods", read_then_forgotten)
    answered = person_cache.load(client, SAM.oid, parts=(person_cache.METHODS,))
    assert answered.methods
    assert person_cache.cached(SAM.oid) is None


def _outside_delete(tenant: Any) -> str:
    """Someone deletes Sam's email or phone method straight in Entra (not through a request)."""
    client = get_graph_client()
    method = next(
        m
        for m in graph_methods.list_methods(client, SAM.oid)
        if m.kind.deletable and m.kind.name != "MICROSOFT_AUTHENTICATOR"
    )
    graph_methods.delete_method(client, SAM.oid, method)
    return method.id


@pytest.mark.django_db(transaction=True)
def test_the_audit_sync_forgets_a_person_changed_outside_the_portal(tenant: Any) -> None:
    seen: list[dict[str, Any]] = []

    def listen(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    security_events_seen.connect(listen, dispatch_uid="test-listen")
    try:
        client = get_graph_client()
        person_cache.load(client, SAM.oid)
        _outside_delete(tenant)
        assert person_cache.cached(SAM.oid) is not None  # nothing told the cache yet
        sync.entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    finally:
        security_events_seen.disconnect(dispatch_uid="test-listen")
    assert person_cache.cached(SAM.oid) is None
    assert any(SAM.oid.lower() in s["principal_ids"] for s in seen), seen
    assert any("Admin deleted security info" in s["changes"].get(SAM.oid.lower(), ()) for s in seen)

    # The same events read again (the next run's overlap) are not new: nothing is forgotten.
    person_cache.load(client, SAM.oid)
    sync.entra_audit_sync(since=timezone.now() - timedelta(hours=1))
    assert person_cache.cached(SAM.oid) is not None


@pytest.mark.django_db(transaction=True)
def test_the_on_demand_sync_of_one_person_forgets_them_too(tenant: Any) -> None:
    client = get_graph_client()
    person_cache.load(client, SAM.oid)
    _outside_delete(tenant)
    sync.entra_audit_sync_person(target_id=SAM.oid)
    assert person_cache.cached(SAM.oid) is None


def test_events_of_the_portals_own_requests_and_other_activities_are_not_security_changes() -> None:
    def record(activity: str, *, request: int | None = None) -> DirectoryAuditRecord:
        return DirectoryAuditRecord(
            activity=activity, target_id=SAM.oid.upper(), action_request_id=request, raw={}
        )

    changes = security_changes(
        [
            record("Admin deleted security info"),
            record("Update per-user multifactor authentication state"),
            record("Admin registered security info", request=7),  # the portal's own write
            record("Update user"),  # no MFA property modified
            record("Add member to role"),
        ]
    )
    assert changes == {
        SAM.oid.lower(): (
            "Admin deleted security info",
            "Update per-user multifactor authentication state",
        )
    }


def test_the_portals_own_mfa_state_change_forgets_the_person(
    tenant: Any, celery_worker: Any
) -> None:
    person_cache.load(get_graph_client(), SAM.oid)
    row = action_request_make(ActionKind.SET_MFA_STATE, params={"state": "enforced"})
    row = wait_final(row.pk, timeout=60)
    assert row.status == Status.SUCCEEDED, row.steps
    assert person_cache.cached(SAM.oid) is None


def test_without_redis_the_cache_is_empty_and_forget_does_not_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runner forgets after its writes: Redis being down must not turn a done write into a
    failed run. Nothing is held then, so the page reads Graph."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    class Down:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise RedisConnectionError("down")

            return fail

    monkeypatch.setattr(person_cache, "cache", Down())
    person_cache.forget(SAM.oid)
    person_cache.refill_methods(SAM.oid, [])
    assert person_cache.cached(SAM.oid) is None
