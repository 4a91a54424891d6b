"""Graph misbehaving while the real worker runs a request against the real emulator: a 429 storm
longer than the retry budget and a shorter one (both flows, tests/outbox/flows.py), 503s,
timeouts, the token endpoint down (action requests).

Every test ends with no Graph write lost or made twice (the emulator's Entra audit log counts
them) and the request in a final state its page shows (tests/faults/support.py).

The retry budget is made small so a storm outlasts it in seconds: the Graph client tries each
call twice (``GRAPH_MAX_RETRIES=1``), the portal claims a request at most three times
(``PORTAL_ACTION_MAX_ATTEMPTS=3``), and the emulator's injected 429/503 say ``Retry-After: 1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from graph import methods as graph_methods
from mfa.models import ActionKind, ActionRequest, Status
from portal.graph_client import get_graph_client
from tests.faults.support import (
    SAM,
    assert_visible_final,
    entra_writes,
    graph_settings,
    submit,
    target_profile,
)
from tests.mfa.action_requests import wait_final
from tests.outbox.flows import ACTION_REQUEST, FLOWS, ROLE_CHANGE, Flow
from tests.plugin import quiet_emulator_throttle
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

MAX_ATTEMPTS = 3
METHODS_PATH = rf"^/v1\.0/users/{SAM.oid}/authentication/"
REVOKE_PATH = rf"^/v1\.0/users/{SAM.oid}/revokeSignInSessions$"


@pytest.fixture
def tenant(fresh_tenant: Any) -> Iterator[Any]:
    """A re-seeded emulator without its own throttling (faults are injected explicitly) and a
    small retry budget; faults, throttle and the Graph client are restored afterwards."""
    quiet_emulator_throttle(fresh_tenant)
    with (
        override_settings(PORTAL_ACTION_MAX_ATTEMPTS=MAX_ATTEMPTS),
        graph_settings(GRAPH_MAX_RETRIES=1, GRAPH_TIMEOUT_SECONDS=2.0),
    ):
        yield fresh_tenant


def _deletable_ids() -> set[str]:
    return {
        m.id for m in graph_methods.list_methods(get_graph_client(), SAM.oid) if m.kind.deletable
    }


def _waiting_steps(row: Any) -> list[dict[str, Any]]:
    return [s for s in row.steps if s["text"].startswith("Waiting for Graph")]


# A 429 storm on both flows; a 503 storm on action requests only (the same engine code defers
# both; the 503 waits out the engine's backoff, about 15 s, which one flow pays for both).
STORMS = [
    pytest.param(ACTION_REQUEST, 429, "TooManyRequests", id="429-action_request"),
    pytest.param(ROLE_CHANGE, 429, "TooManyRequests", id="429-role_change"),
    pytest.param(ACTION_REQUEST, 503, "serviceNotAvailable", id="503-action_request"),
]


@pytest.mark.parametrize(("flow", "status", "code"), STORMS)
def test_storm_longer_than_the_retry_budget_fails_visibly(
    flow: Flow, tenant: Any, celery_worker: Any, status: int, code: str
) -> None:
    """Every write of the request (each delete of a re-registration, the role assignment)
    answers 429 (or 503) for longer than the budget: the request waits visibly, then fails with
    Graph's code and request-id; nothing was written."""
    before = flow.writes(tenant)
    tenant.faults.add_fail_next(
        flow.write_method, flow.write_path, status, code, "Injected storm.", count=10_000
    )

    row = flow.wait_final(flow.create().pk, timeout=120)

    html = assert_visible_final(row, status=Status.FAILED, flow=flow)
    assert row.error_code == code
    assert row.attempts == MAX_ATTEMPTS
    # Each claim but the last was put back to pending with a visible "waiting" step.
    retries = len(flow.events(row, flow.retry_kind))
    assert len(_waiting_steps(row)) == MAX_ATTEMPTS - 1 == retries
    assert "Waiting for Graph" in html
    # Nothing was written, nothing is left half-done.
    assert flow.writes(tenant) == before


@pytest.mark.parametrize("flow", FLOWS)
def test_429_storm_shorter_than_the_budget_is_retried_after_retry_after(
    flow: Flow, tenant: Any, celery_worker: Any
) -> None:
    """Three 429s (``Retry-After: 1``) on the request's write: the client's two tries meet two,
    the request waits the second Graph asked for, and the next attempt meets the last one, retries
    and succeeds; Entra records each write once."""
    planned = flow.planned_writes()
    before = flow.writes(tenant)
    tenant.faults.add_fail_next(
        flow.write_method, flow.write_path, 429, "TooManyRequests", "Injected storm.", count=3
    )

    row = flow.wait_final(flow.create().pk, timeout=120)

    assert_visible_final(row, status=Status.SUCCEEDED, flow=flow)
    assert tenant.faults.snapshot()["fail_next"] == []  # every injected 429 was met
    assert row.attempts == 2
    flow.check_done(row, tenant)
    assert flow.writes(tenant) == before + planned
    [retry] = flow.events(row, flow.retry_kind)
    assert retry.detail["countdown_seconds"] == 1  # Graph's Retry-After, not a backoff
    [_, again] = flow.events(row, flow.started_kind)
    assert (again.created_at - retry.created_at).total_seconds() >= 0.9
    assert len(_waiting_steps(row)) == 1


def test_503s_are_retried_and_each_method_deleted_once(tenant: Any, celery_worker: Any) -> None:
    """Two 503s on every delete path and one on the list: the client retries them (Graph did not
    process a 503), the request succeeds, and Entra records one delete per method."""
    before_ids = _deletable_ids()
    assert len(before_ids) >= 2
    before = entra_writes(tenant)
    tenant.faults.add_fail_next("GET", METHODS_PATH + "methods$", 503, "serviceNotAvailable")
    for method_id in before_ids:
        tenant.faults.add_fail_next(
            "DELETE", METHODS_PATH + rf".*/{method_id}$", 503, "serviceNotAvailable", count=2
        )

    row = wait_final(submit(ActionKind.REREGISTER).pk, timeout=120)

    assert_visible_final(row, status=Status.SUCCEEDED)
    assert {e["id"] for e in row.result["removed"]} == before_ids
    assert entra_writes(tenant)["deleted"] == before["deleted"] + len(before_ids)
    assert _deletable_ids() == set()
    assert tenant.faults.snapshot()["fail_next"] == []  # every injected 503 was met


def test_timeouts_wait_visibly_then_succeed_with_one_write(tenant: Any, celery_worker: Any) -> None:
    """Graph holds every call past the client's timeout. The revoke (a POST, never repeated
    blindly) ends "outcome unknown"; the request waits visibly, and once Graph answers again the
    re-run checks Graph before writing: one revoke in Entra's log, request succeeded."""
    before = entra_writes(tenant)
    profile = target_profile()  # the form read the person before Graph slowed down
    tenant.faults.configure(timeout_rate=1.0, timeout_seconds=4.0)
    with override_settings(PORTAL_ACTION_MAX_ATTEMPTS=10):
        row = submit(ActionKind.REVOKE_SESSIONS, profile=profile)

        def waiting() -> bool:
            return bool(_waiting_steps(ActionRequest.objects.get(pk=row.pk)))

        wait_for(waiting, timeout=60, what="the request to wait for Graph")
        stuck = ActionRequest.objects.get(pk=row.pk)
        assert stuck.status in (Status.PENDING, Status.RUNNING)
        assert "Timeout" in _waiting_steps(stuck)[0]["detail"]
        tenant.faults.configure(timeout_rate=0.0)
        row = wait_final(row.pk, timeout=120)

    assert_visible_final(row, status=Status.SUCCEEDED)
    assert row.attempts >= 2
    assert entra_writes(tenant)["revoked"] == before["revoked"] + 1


@pytest.mark.parametrize("recovers", [True, False], ids=["comes-back", "stays-down"])
def test_token_endpoint_down(tenant: Any, celery_worker: Any, recovers: bool) -> None:
    """No app token can be had (the login host answers 503): the request waits visibly, then
    succeeds once tokens are issued again, or fails with the token error after the budget."""
    before = entra_writes(tenant)
    profile = target_profile()  # the form reads the person while tokens are still issued
    tenant.faults.configure(token_endpoint_down=True)
    # A new client has an empty MSAL cache: the worker must ask the token endpoint.
    with graph_settings(GRAPH_MAX_RETRIES=1, GRAPH_TIMEOUT_SECONDS=2.0):
        row = submit(ActionKind.REVOKE_SESSIONS, profile=profile)
        if recovers:

            def waiting() -> bool:
                return bool(_waiting_steps(ActionRequest.objects.get(pk=row.pk)))

            wait_for(waiting, timeout=60, what="the request to wait for a token")
            tenant.faults.configure(token_endpoint_down=False)
        row = wait_final(row.pk, timeout=120)

    if recovers:
        assert_visible_final(row, status=Status.SUCCEEDED)
        assert entra_writes(tenant)["revoked"] == before["revoked"] + 1
        assert "temporarily unavailable" in _waiting_steps(row)[0]["text"]
    else:
        html = assert_visible_final(row, status=Status.FAILED, graph_answered=False)
        # MSAL drops the login host's error body on a 5xx: the portal names the endpoint.
        assert row.error_code == "TokenEndpointUnavailable", row.error_code
        assert row.attempts == MAX_ATTEMPTS
        assert entra_writes(tenant) == before
        assert "Waiting for Graph" in html
