"""Each person's part: at the budget's bulk priority (an agent's own reset goes first), and the
execution-time checks of a bulk part (the starter's role now, the person's tier now)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.test import override_settings

from bulk import services
from bulk.flow import BULK_OPERATIONS
from bulk.models import ItemState
from graph import Priority
from graph.budget import BULK_RESERVE, SEND_MARGIN_SECONDS
from mfa import flow as mfa_flow
from mfa import runners
from mfa.models import ActionKind, ActionRequest
from outbox import engine
from outbox.states import Status
from portal.graph_client import reset_graph_client
from tests.bulk.support import group_standard_ids, items, plan, rita, run
from tests.mfa.action_requests import action_request_make, target_profile
from tests.personas import PERSONAS

pytestmark = pytest.mark.django_db


def _record_priorities(monkeypatch: Any) -> dict[int, Priority]:
    seen: dict[int, Priority] = {}
    real = runners.run_action

    def recording(run_: Any) -> Any:
        seen[run_.row.pk] = run_.client.priority
        return real(run_)

    monkeypatch.setattr(mfa_flow, "run_action", recording)
    return seen


def test_parts_run_at_bulk_priority_and_a_single_action_at_action_priority(
    tenant: Any, monkeypatch: Any
) -> None:
    seen = _record_priorities(monkeypatch)
    op = services.confirm(plan(group_standard_ids(tenant, 2)), by=rita())
    run(op)
    parts = list(ActionRequest.objects.filter(bulk_operation_id=op.pk))
    assert len(parts) == 2 and all(seen[p.pk] == Priority.BULK for p in parts)
    single = action_request_make(ActionKind.REVOKE_SESSIONS, profile=target_profile())
    engine.execute(mfa_flow.ACTION_REQUESTS, single.pk)
    assert seen[single.pk] == Priority.ACTION


@pytest.mark.timeout(180)
def test_an_agents_single_reset_goes_ahead_of_a_running_bulk(
    real_graph_budget: Any, transactional_db: None
) -> None:
    """With Graph's real reports budget (5 per 10 s), a bulk re-registration of many people
    runs in one thread; an agent's re-registration of Sam, started while it runs, waits no
    more than about one budget slot per call beyond the four the bulk leaves in the bucket: the
    bulk's calls yield to it."""
    real_graph_budget.throttle.configure(enabled=False)  # the client's budget paces the calls
    people = group_standard_ids(real_graph_budget, 6)
    op = services.confirm(plan(people, actions=("reregister",)), by=rita())
    runner = threading.Thread(target=engine.execute, args=(BULK_OPERATIONS, op.pk))
    runner.start()
    try:
        # Let the bulk take the budget first.
        time.sleep(6)
        assert ActionRequest.objects.filter(bulk_operation_id=op.pk).exists()
        single = action_request_make(ActionKind.REREGISTER, profile=target_profile())
        started = time.monotonic()
        engine.execute(mfa_flow.ACTION_REQUESTS, single.pk)
        took = time.monotonic() - started
        print(f"the agent's re-registration took {took:.1f} s while the bulk ran")
        single.refresh_from_db()
        assert single.status == Status.SUCCEEDED, single.error_message
        op.refresh_from_db()
        still_running = op.status == Status.RUNNING
    finally:
        # The rest of the bulk is not this test's: pause it, so the runner stops after the
        # person it is on instead of spending the budget on all the others.
        op.refresh_from_db()
        if op.status == Status.RUNNING:
            services.pause(op, by=rita())
        runner.join(timeout=170)
    calls = 3 + len(single.result.get("removed") or [])
    # The bulk leaves BULK_RESERVE (4) tokens in the bucket, so the agent's first calls go at
    # once and each later one waits at most about one slot (2 s at 5 per 10 s), ahead of the
    # bulk's calls, the bucket's send margin once; 2 s for the portal's own work.
    assert took <= max(0, calls - BULK_RESERVE) * 2 + SEND_MARGIN_SECONDS + 2, (took, calls)
    assert still_running  # the bulk was still going when the agent's reset ended
    reset_graph_client()


def test_a_person_who_became_privileged_is_not_acted_on(tenant: Any) -> None:
    people = group_standard_ids(tenant, 2)
    op = services.confirm(plan(people), by=rita())
    # After the dry run, the first person is given a portal role (which makes them privileged).
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments[people[0]] = {"Helpdesk.Agent"}
    op = run(op)
    first, second = items(op)
    assert first.state == ItemState.FAILED and first.error_code == "PolicyRefused"
    assert "became privileged" in first.error_message
    assert second.state == ItemState.SUCCEEDED
    assert op.status == Status.PARTIALLY_SUCCEEDED


def test_a_starter_who_lost_the_responder_role_acts_on_nobody(tenant: Any) -> None:
    op = services.confirm(plan(group_standard_ids(tenant, 2)), by=rita())
    with tenant.tenant.lock:
        tenant.tenant.app_role_assignments.pop(PERSONAS.responder.oid)
    op = run(op)
    assert op.status == Status.FAILED and op.done == 0
    assert {i.error_code for i in items(op)} == {"PolicyRefused"}
    assert "no longer holds the portal role Responder" in items(op)[0].error_message


@override_settings(PORTAL_MIRROR_ENTRA_TIERING=False)
def test_an_approved_privileged_person_is_acted_on(tenant: Any) -> None:
    from tests.personas import portal_user

    op = services.confirm(plan([PERSONAS.privileged_target.upn]), by=rita())
    assert op.status == Status.AWAITING_APPROVAL
    op = services.approve(op, by=portal_user(PERSONAS.lead))
    op = run(op)
    assert op.status == Status.SUCCEEDED, items(op)[0].error_message
