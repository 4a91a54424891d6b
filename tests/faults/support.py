"""What every fault test checks at its end: nothing lost or done twice, one visible state.

The fault tests (tests/faults/) drive real requests of both durable-request flows (helpdesk
action requests and directory role changes, tests/outbox/flows.py) through the real services, the
real Celery worker (``celery_worker`` of tests/plugin.py) and the real HTTPS emulator, break one
thing, and end with ``assert_visible_final``: the row is in a final state, the page its requester
watches shows that state (and Graph's code and request-id for a failure), and the portal's own
audit log has exactly one outcome event for it. The Entra emulator's audit log is the witness of
"not done twice": each Graph write the portal makes is one Entra audit event there.

The SIGKILLed worker, the lease lapse and redispatch are tests/outbox/ (not repeated here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from mfa import policy
from mfa.models import ActionRequest, Status
from mfa.policy import TargetProfile
from portal.graph_client import get_graph_client, reset_graph_client
from tests.mfa.action_requests import action_request_make, emulator_audit
from tests.outbox.flows import ACTION_REQUEST, Flow, assert_resumed
from tests.personas import PERSONAS

SAM = PERSONAS.standard_target


@contextmanager
def graph_settings(**overrides: Any) -> Iterator[None]:
    """Override settings that the process's GraphClient was built from (timeouts, retries) and
    rebuild the client on entry and exit, so that the worker thread uses the same values."""
    with override_settings(**overrides):
        reset_graph_client()
        try:
            yield
        finally:
            reset_graph_client()
    reset_graph_client()


def target_profile(target_id: str = SAM.oid) -> TargetProfile:
    """The target's profile read afresh from Graph, as the action form reads it."""
    return policy.target_profile(get_graph_client(), target_id, use_cache=False)


def submit(
    kind: str, *, profile: TargetProfile | None = None, params: dict[str, Any] | None = None
) -> ActionRequest:
    """Ada Agent's request of ``kind`` on ``profile``'s person (default Sam Standard, read from
    Graph now), made through the real service with a manual caller verification when the kind
    needs one; its task is enqueued on commit."""
    return action_request_make(kind, profile=profile or target_profile(), params=params)


def entra_writes(server: Any, *, target_id: str = SAM.oid) -> dict[str, int]:
    """How many Entra audit events of each write kind the emulator holds about ``target_id``."""
    return {
        "deleted": len(
            emulator_audit(server, target_id=target_id, activity_contains="deleted security info")
        ),
        "revoked": len(
            emulator_audit(server, target_id=target_id, activity_contains="StsRefreshToken")
        ),
    }


def assert_visible_final(
    row: Any,
    *,
    status: str,
    graph_answered: bool = True,
    flow: Flow = ACTION_REQUEST,
    resumed: bool = False,
) -> str:
    """The request of ``flow`` ended in ``status``, its page says so (with Graph's code and
    message for a failure, and Graph's request-id when ``graph_answered``: a token that could not
    be had has none), no step is left "running", and the portal's audit log holds exactly one
    outcome event for it. Returns the status fragment's HTML for further checks.

    ``resumed``: a worker took the request over from a dead one, and the page says so
    (``tests.outbox.flows.assert_resumed``)."""
    row.refresh_from_db()
    assert row.status == status, (row.status, row.error_code, row.error_message, row.steps)
    assert row.is_final and row.open_slot is None
    # A write stays "in flight" only when its outcome is truly unknown (and the page says so).
    assert row.pending_writes == {} or row.error_code == "OutcomeUnknown", row.pending_writes
    assert not [s for s in row.steps if s.get("state") == "running"], row.steps
    if resumed:
        assert_resumed(row)
    html = flow.page(row)
    assert f'data-status="{status}"' in html, html[:2000]
    assert "hx-trigger" not in html  # final: the page stops polling
    if status == Status.FAILED:
        assert row.error_code and row.error_code in html
        assert row.error_message and row.error_message in html
        if graph_answered:
            assert row.error_request_id and row.error_request_id in html
    outcomes = len(flow.events(row, *flow.outcome_kinds))
    assert outcomes == 1, f"{outcomes} outcome events for one request"
    return html
