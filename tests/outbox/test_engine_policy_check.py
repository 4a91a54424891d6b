"""The engine's execution-time policy check (``Flow.check_before_write``): called just before the
first Graph write of every attempt, so before the first write and again before every retry; a
refusal ends the request ``failed`` with the flow's code and sends no write.

Run inline through the real emulator and Graph client, for both flows.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from mfa import services
from mfa.flow import ACTION_REQUESTS
from mfa.models import ActionKind, ActionRequest
from outbox import engine
from outbox.errors import Deferred, PolicyError
from outbox.states import Status
from roles import services as role_services
from roles.catalog import AUTH_ADMIN
from roles.flow import ROLE_CHANGES
from roles.forms import new_idempotency_key
from roles.models import HoldKind, RoleChange, RoleChangeRequest
from tests.mfa.action_requests import action_request_make, emulator_audit
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target


def _revoke() -> ActionRequest:
    return action_request_make(ActionKind.REVOKE_SESSIONS)


def _revokes(tenant: Any) -> int:
    return len(emulator_audit(tenant, target_id=SAM.oid, activity_contains="StsRefreshToken"))


def _add_role() -> RoleChangeRequest:
    return role_services.role_change_create(
        requester=portal_user(PERSONAS.admin),
        change=RoleChange.ADD,
        role_name=AUTH_ADMIN,
        principal_id=SAM.oid,
        principal_type="user",
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Needs to help with the MFA roll-out this week",
        ticket="INC0012345",
        idempotency_key=new_idempotency_key(),
    )


def test_a_refusal_before_the_first_write_fails_the_request_and_sends_nothing(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def refuse(run: engine.Run[ActionRequest]) -> None:
        seen.append(run.row.attempts)
        raise PolicyError("The requester no longer holds a portal role.")

    monkeypatch.setattr(ACTION_REQUESTS, "check_before_write", refuse)
    before = _revokes(tenant)
    row = _revoke()
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert seen == [1]
    assert row.status == Status.FAILED and row.error_code == "PolicyRefused"
    assert row.error_message == "The requester no longer holds a portal role."
    assert row.pending_writes == {} and row.completed_writes == []
    assert _revokes(tenant) == before, "a refused request must send no Graph write"


def test_the_check_runs_again_before_the_write_of_every_retry(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Graph throttles the first attempt's write past the client's own retries.
    tenant.faults.add_fail_next(
        "POST", r"/revokeSignInSessions$", 429, "TooManyRequests", "Too many requests.", count=5
    )
    seen: list[int] = []
    monkeypatch.setattr(
        ACTION_REQUESTS, "check_before_write", lambda run: seen.append(run.row.attempts)
    )
    row = _revoke()
    with pytest.raises(Deferred):
        services.action_request_execute(request_id=row.pk)
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    assert seen == [1, 2]


def test_a_role_change_refused_at_execution_ends_failed_with_the_guard_code(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(run: engine.Run[RoleChangeRequest]) -> None:
        raise PolicyError("Sam is no longer eligible for administrator roles.")

    monkeypatch.setattr(ROLE_CHANGES, "check_before_write", refuse)
    row = _add_role()
    role_services.role_change_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.FAILED and row.error_code == "GuardRefused"
    assert row.pending_writes == {} and row.completed_writes == []
    assert row.graph_object_id == ""


@override_settings(PORTAL_RETRY_BACKOFF_SECONDS=5)
def test_backoff_doubles_from_five_seconds_to_a_minute_unless_graph_says_otherwise() -> None:
    assert [engine.backoff_seconds(n, None) for n in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 60, 60]
    assert engine.backoff_seconds(3, 7) == 7
    assert engine.backoff_seconds(1, 0.2) == 1


@override_settings(PORTAL_RETRY_BACKOFF_SECONDS=0.5)
def test_the_backoff_base_comes_from_the_setting() -> None:
    assert [engine.backoff_seconds(n, None) for n in (1, 2, 3, 4)] == [1, 1, 2, 4]
