"""Point 4 of issue 12: a re-registration spends the minimum of the reports budget.

A person with n deletable methods costs exactly n + 2 reports-class calls (the list, n deletes,
the verifying re-list) plus one for the default method (beta signInPreferences, reports class:
it lives under ``/users/{id}/authentication``), read only when there is something to delete:
n + 3 for n >= 1, 2 for n = 0. Counted at the HTTP session, through the emulator and a real
Celery worker, with the emulator's propagation lag off (no re-list under lag may add a call).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from entra_emulator import seed_security
from graph.budget import IDENTITY, REPORTS
from mfa import person_cache
from mfa.models import ActionKind, Status
from tests.mfa.action_requests import action_request_make, target_profile, wait_final
from tests.mfa.graph_calls import counting_graph_calls
from tests.personas import PERSONAS

SAM = PERSONAS.standard_target


def expected_reports_calls(n: int) -> int:
    """The README's formula: list + n deletes + re-list, + 1 signInPreferences when n >= 1."""
    return n + 2 + (1 if n else 0)


def _give_sam_methods(tenant: Any, n: int) -> list[str]:
    """Sam's methods become the password and ``n`` deletable ones; the emulator's default is the
    strongest of them (so the default-last rule is exercised). Returns the deletable ids."""
    rng = random.Random(n)
    created = "2025-01-01T00:00:00Z"
    with tenant.tenant.lock:
        user = tenant.tenant.users[SAM.oid]
        password = [m for m in tenant.tenant.methods[SAM.oid] if "password" in m["@odata.type"]]
        makers: list[Callable[[], dict[str, Any]]] = [
            lambda: seed_security._authenticator(rng, created),
            lambda: seed_security._phone(rng, user, "mobile", created),
            lambda: seed_security._phone(rng, user, "alternateMobile", created),
            lambda: seed_security._email(user, created),
        ]
        extra = [make() for make in makers[:n]]
        methods = password + extra
        tenant.tenant.methods[SAM.oid] = methods
        default = seed_security.default_method_id(methods)
        if default is None:
            tenant.tenant.default_method.pop(SAM.oid, None)
        else:
            tenant.tenant.default_method[SAM.oid] = default
    return [str(m["id"]) for m in extra]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_reregistration_makes_exactly_n_plus_2_reports_calls_plus_the_default(
    n: int, tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant.set_propagation(method_deletion_seconds=0)
    ids = _give_sam_methods(tenant, n)
    profile = target_profile(SAM)
    with counting_graph_calls(monkeypatch) as calls:
        row = action_request_make(ActionKind.REREGISTER, profile=profile)
        row = wait_final(row.pk, timeout=60)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert {e["id"] for e in row.result["removed"]} == set(ids)
    reports = calls.of(REPORTS)
    gets = [p for m, p in reports if m == "GET" and p.endswith("/authentication/methods")]
    deletes = [p for m, p in reports if m == "DELETE"]
    preferences = [p for _, p in reports if p.endswith("/signInPreferences")]
    assert len(deletes) == n, reports
    assert len(gets) == 2, reports
    assert len(preferences) == (1 if n else 0), reports
    assert len(reports) == expected_reports_calls(n), reports
    # Nothing else: the worker's own checks are identity class (counted, not bounded here).
    assert set(calls.by_class()) <= {REPORTS, IDENTITY}

    # The verifying re-list refilled the person cache: the person page's methods panel (and
    # its default, none being left) costs nothing more after the reset.
    held = person_cache.cached(SAM.oid)
    assert held is not None and held.has(person_cache.METHODS, person_cache.PREFERENCES)
    assert held.methods is not None and not any(m.kind.deletable for m in held.methods)
    assert held.preferences is None and held.mfa_state is None


def test_the_runner_reads_fresh_even_with_a_cache_that_says_otherwise(
    tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Actions never trust the person cache: a cache claiming Sam has no methods does not stop
    the runner's own list, which finds and deletes them; its re-list then refills the cache."""
    ids = _give_sam_methods(tenant, 2)
    person_cache.refill_methods(SAM.oid, [])  # a (wrong) cache: nothing to delete
    with counting_graph_calls(monkeypatch) as calls:
        row = wait_final(action_request_make(ActionKind.REREGISTER).pk, timeout=60)
    assert row.status == Status.SUCCEEDED, row.steps
    assert {e["id"] for e in row.result["removed"]} == set(ids)
    assert len(calls.of(REPORTS)) == expected_reports_calls(2)
    held = person_cache.cached(SAM.oid)
    assert held is not None and held.methods is not None
    assert [m.id for m in held.methods if m.kind.deletable] == []
    assert datetime.now(UTC) >= (held.fetched_at or datetime.now(UTC))


def test_under_lag_each_wait_adds_exactly_one_re_list(
    tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """Entra still lists the deleted methods for a while: each wait costs one more list, and
    nothing else (no delete is sent again, no second default read)."""
    settings.PORTAL_RETRY_BACKOFF_SECONDS = 0.5
    n = 2
    ids = _give_sam_methods(tenant, n)
    tenant.set_propagation(method_deletion_seconds=2)
    try:
        with counting_graph_calls(monkeypatch) as calls:
            row = wait_final(action_request_make(ActionKind.REREGISTER).pk, timeout=90)
    finally:
        tenant.set_propagation(method_deletion_seconds=0)
    assert row.status == Status.SUCCEEDED, row.steps
    assert {e["id"] for e in row.result["removed"]} == set(ids)
    waits = [s for s in row.steps if str(s["text"]).startswith("Waiting for Entra")]
    assert waits, row.steps
    reports = calls.of(REPORTS)
    assert len([p for m, p in reports if m == "DELETE"]) == n
    assert len(reports) == expected_reports_calls(n) + len(waits), reports
