"""A bulk operation on the engine: confirm, approve, run (each person's parts normal action
requests, run inline), pause, resume, cancel, retry the failed ones; the events and the emulator
as the witness that every person is acted on once."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from audit.models import PortalEvent
from bulk import services
from bulk.errors import BulkError, BulkNotAllowed
from bulk.models import BulkItem, BulkOperation, BulkPart, ItemState
from mfa.models import ActionRequest
from outbox.states import Status
from tests.bulk.support import TICKET, group_standard_ids, items, plan, rita, run
from tests.mfa.action_requests import emulator_audit
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db

REVOKED = "StsRefreshToken"


_SEEDED: dict[str, int] = {}


def _seeded(server: Any, people: list[str]) -> list[str]:
    """Note the revokes the emulator's seeded history already holds for ``people`` (it spans
    the weeks before today, so what it holds depends on the day), which ``_revokes`` leaves
    out."""
    _SEEDED.clear()
    for target_id in people:
        _SEEDED[target_id] = len(
            emulator_audit(server, target_id=target_id, activity_contains=REVOKED)
        )
    return people


def _revokes(server: Any, target_id: str) -> int:
    """The revokes of ``target_id`` made since ``_seeded`` (the test's own)."""
    found = len(emulator_audit(server, target_id=target_id, activity_contains=REVOKED))
    return found - _SEEDED[target_id]


def _kinds(op: BulkOperation) -> list[str]:
    return list(
        PortalEvent.objects.filter(detail__bulk_operation=str(op.public_id))
        .order_by("seq")
        .values_list("kind", flat=True)
    )


def test_a_small_operation_runs_every_person_once_as_normal_action_requests(
    tenant: Any,
) -> None:
    people = _seeded(tenant, group_standard_ids(tenant, 3))
    op = plan(people, actions=("revoke_sessions", "reregister"))
    op = services.confirm(op, by=rita())
    assert op.status == Status.PENDING and op.left == 3 and not op.needs_approval
    op = run(op)
    assert op.status == Status.SUCCEEDED, (op.error_code, op.error_message)
    assert (op.done, op.failed, op.left) == (3, 0, 0)
    for item in items(op):
        assert item.state == ItemState.SUCCEEDED
        parts = list(item.parts.order_by("id"))
        assert [p.kind for p in parts] == ["revoke_sessions", "reregister"]  # in that order
        for part in parts:
            request = part.action_request
            assert request.status == Status.SUCCEEDED
            assert request.requester.username == PERSONAS.responder.oid
            assert request.bulk_operation_id == op.pk and request.ticket == TICKET
        assert _revokes(tenant, item.target_id) == 1
    # A second run (a redelivered task) acts on nobody again.
    run(op)
    assert all(_revokes(tenant, p) == 1 for p in people)
    assert ActionRequest.objects.count() == 6
    kinds = _kinds(op)
    assert kinds[0] == "bulk_operation_planned" and kinds[1] == "bulk_operation_requested"
    assert "bulk_operation_started" in kinds and kinds[-1] == "bulk_operation_succeeded"
    # Each part is an action request in History, naming the operation.
    assert kinds.count("action_requested") == 6


def test_a_large_operation_waits_for_someone_else_to_approve(tenant: Any) -> None:
    people = _seeded(tenant, group_standard_ids(tenant, 3))
    with override_settings(PORTAL_BULK_APPROVAL_THRESHOLD=2):
        op = plan(people)
    op = services.confirm(op, by=rita())
    assert op.status == Status.AWAITING_APPROVAL
    run(op)  # nothing to claim: it waits
    assert not ActionRequest.objects.exists()
    with pytest.raises(BulkNotAllowed, match="someone else"):
        services.approve(op, by=rita())
    with pytest.raises(BulkNotAllowed):
        services.approve(op, by=portal_user(PERSONAS.agent))
    with pytest.raises(BulkError, match="confirmed"):
        services.confirm(op, by=rita())
    op = services.approve(op, by=portal_user(PERSONAS.lead), comment="Matches the incident")
    assert op.status == Status.PENDING and op.decided_by_name == "Leo Lead"
    op = run(op)
    assert op.status == Status.SUCCEEDED
    assert {r.decided_by_name for r in ActionRequest.objects.all()} == {"Leo Lead"}


def test_reject_cancels_everyone(tenant: Any) -> None:
    with override_settings(PORTAL_BULK_APPROVAL_THRESHOLD=0):
        op = services.confirm(plan(group_standard_ids(tenant, 2)), by=rita())
    with pytest.raises(BulkError, match="Say why"):
        services.reject(op, by=portal_user(PERSONAS.lead), comment="")
    op = services.reject(op, by=portal_user(PERSONAS.lead), comment="Wrong group")
    assert op.status == Status.REJECTED
    assert {i.state for i in items(op)} == {ItemState.CANCELLED}


def test_pause_stops_between_people_and_resume_goes_on(tenant: Any, monkeypatch: Any) -> None:
    people = _seeded(tenant, group_standard_ids(tenant, 3))
    op = services.confirm(plan(people), by=rita())
    from bulk import runner

    real = runner._run_item
    seen: list[int] = []

    def pause_after_first(run_: Any, item: BulkItem) -> None:
        real(run_, item)
        seen.append(item.pk)
        if len(seen) == 1:
            services.pause(BulkOperation.objects.get(pk=op.pk), by=portal_user(PERSONAS.lead))

    monkeypatch.setattr(runner, "_run_item", pause_after_first)
    op = run(op)
    assert op.status == Status.PENDING and op.paused_by_name == "Leo Lead"
    assert (op.done, op.left) == (1, 2)
    assert op.steps[-1]["text"] == "Paused by Leo Lead"
    # Beat leaves a paused operation alone.
    from bulk.tasks import operations_redispatch

    with override_settings(PORTAL_REDISPATCH_AFTER_SECONDS=0):
        assert operations_redispatch() == 0
    run(op)  # a stray delivery: claims, sees the pause, gives it back
    op.refresh_from_db()
    assert op.done == 1
    with pytest.raises(BulkError, match="not paused"):
        services.resume(services.resume(op, by=rita()), by=rita())
    op = run(op)
    assert op.status == Status.SUCCEEDED and op.done == 3
    assert all(_revokes(tenant, p) == 1 for p in people)
    kinds = _kinds(op)
    assert kinds.count("bulk_operation_paused") == 1 and kinds.count("bulk_operation_resumed") == 1


def test_cancel_while_running_stops_and_cancels_the_rest(tenant: Any, monkeypatch: Any) -> None:
    people = _seeded(tenant, group_standard_ids(tenant, 3))
    op = services.confirm(plan(people), by=rita())
    from bulk import runner

    real = runner._run_item

    def cancel_after_first(run_: Any, item: BulkItem) -> None:
        real(run_, item)
        services.cancel(BulkOperation.objects.get(pk=op.pk), by=rita())

    monkeypatch.setattr(runner, "_run_item", cancel_after_first)
    op = run(op)
    assert op.status == Status.CANCELLED
    assert [i.state for i in items(op)] == [
        ItemState.SUCCEEDED,
        ItemState.CANCELLED,
        ItemState.CANCELLED,
    ]
    assert [_revokes(tenant, p) for p in people] == [1, 0, 0]
    assert _kinds(op)[-1] == "bulk_operation_cancelled"
    with pytest.raises(BulkError):
        services.cancel(op, by=rita())


def test_cancel_before_it_runs(tenant: Any) -> None:
    op = services.confirm(plan(group_standard_ids(tenant, 2)), by=rita())
    op = services.cancel(op, by=rita())
    assert op.status == Status.CANCELLED and op.left == 0
    run(op)
    assert not ActionRequest.objects.exists()
    draft = plan(group_standard_ids(tenant, 1))
    assert services.cancel(draft, by=rita()).status == Status.CANCELLED
    with pytest.raises(BulkNotAllowed):
        services.cancel(plan(group_standard_ids(tenant, 1)), by=portal_user(PERSONAS.agent))


def test_failures_keep_graphs_code_and_retry_the_failed_ones(tenant: Any) -> None:
    people = _seeded(tenant, group_standard_ids(tenant, 3))
    op = services.confirm(plan(people), by=rita())
    # The second person's revoke is refused by Graph (a permanent error).
    tenant.faults.add_fail_next(
        "POST",
        f"/v1.0/users/{people[1]}/revokeSignInSessions",
        status=403,
        code="Authorization_RequestDenied",
    )
    op = run(op)
    assert op.status == Status.PARTIALLY_SUCCEEDED
    assert (op.done, op.failed, op.left) == (2, 1, 0)
    failed = items(op)[1]
    assert failed.state == ItemState.FAILED
    assert failed.error_code == "Authorization_RequestDenied"
    assert failed.graph_request_id
    with pytest.raises(BulkError, match=r"Nobody failed|cannot be retried"):
        services.retry_failed(services.confirm(plan(people[:1]), by=rita()), by=rita())
    op = services.retry_failed(op, by=rita())
    assert op.status == Status.PENDING and (op.done, op.failed, op.left) == (2, 0, 1)
    op = run(op)
    assert op.status == Status.SUCCEEDED
    assert [_revokes(tenant, p) for p in people] == [1, 1, 1]
    failed.refresh_from_db()
    assert failed.round == 2
    assert BulkPart.objects.filter(item=failed).count() == 2  # a new part, a new request
    assert "bulk_operation_retried" in _kinds(op)


def test_export_rows(tenant: Any) -> None:
    op = plan([PERSONAS.standard_target.upn, "=HYPERLINK(1)@x.example"])
    rows = list(services.export_rows(op))
    assert rows[0][:3] == ["position", "asked", "upn"]
    assert rows[1][2] == PERSONAS.standard_target.upn
    assert rows[2][1].startswith("'=")  # never a formula in a spreadsheet


def test_beat_never_dispatches_a_draft_and_expires_an_unapproved_operation(tenant: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from bulk.tasks import operations_expire_stale, operations_redispatch

    draft = plan(group_standard_ids(tenant, 1))
    with override_settings(PORTAL_REDISPATCH_AFTER_SECONDS=0):
        assert operations_redispatch() == 0
    run(draft)
    assert not ActionRequest.objects.exists()
    with override_settings(PORTAL_BULK_APPROVAL_THRESHOLD=0):
        op = services.confirm(plan(group_standard_ids(tenant, 1)), by=rita())
    assert operations_expire_stale() == 0
    long_ago = timezone.now() - timedelta(days=2)
    BulkOperation.objects.filter(pk=op.pk).update(created_at=long_ago, confirmed_at=long_ago)
    assert operations_expire_stale() == 1
    op.refresh_from_db()
    assert op.status == Status.EXPIRED and op.open_slot is None
    assert op.left == 0 and {i.state for i in items(op)} == {ItemState.CANCELLED}
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_throttled_part_waits_and_runs_again_without_acting_twice(tenant: Any) -> None:
    people = _seeded(tenant, group_standard_ids(tenant, 2))
    op = services.confirm(plan(people), by=rita())
    tenant.faults.add_fail_next(
        "POST",
        f"/v1.0/users/{people[0]}/revokeSignInSessions",
        status=503,
        code="ServiceUnavailable",
        # More than the client's own retries (GRAPH_MAX_RETRIES): the part is deferred.
        count=1 + int(settings.GRAPH_MAX_RETRIES),
    )
    op = run(op)
    assert op.status == Status.SUCCEEDED, items(op)[0].error_message
    first = ActionRequest.objects.get(bulk_operation_id=op.pk, target_id=people[0])
    assert first.attempts == 2  # deferred once by Graph, then run again by the runner
    assert [_revokes(tenant, p) for p in people] == [1, 1]
    assert PortalEvent.objects.filter(kind="action_retry_scheduled", request=first.pk).exists()
