"""mfa.tasks and the outbox: claims, redelivery, re-dispatch by beat, no row left running."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from audit.models import PortalEvent
from mfa import runners, services, tasks
from mfa.models import ActionKind, ActionRequest, Status
from portal.celery import app
from tests.mfa.action_requests import action_request_make, emulator_audit, wait_final
from tests.personas import PERSONAS, portal_user
from tests.waiting import wait_for

SAM = PERSONAS.standard_target


def _revoke(agent: Any) -> ActionRequest:
    return action_request_make(ActionKind.REVOKE_SESSIONS, agent=agent)


def _revokes(tenant: Any) -> int:
    return len(emulator_audit(tenant, target_id=SAM.oid, activity_contains="StsRefreshToken"))


def test_tasks_are_routed_and_scheduled() -> None:
    router = app.amqp.router
    assert router.route({}, "mfa.tasks.action_request_run")["queue"].name == "interactive"
    assert router.route({}, "mfa.tasks.requests_redispatch")["queue"].name == "sync"
    assert tasks.action_request_run.acks_late and tasks.action_request_run.reject_on_worker_lost
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["mfa-requests-redispatch"]["task"] == "mfa.tasks.requests_redispatch"
    assert schedule["mfa-requests-redispatch"]["schedule"] == 30.0
    assert schedule["mfa-requests-expire-stale"]["schedule"] == 60.0
    for entry in schedule.values():
        assert entry["task"] in app.tasks


def test_redelivered_task_does_nothing(tenant: Any, celery_worker: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    before = _revokes(tenant)
    row = wait_final(_revoke(agent).pk)
    assert row.status == Status.SUCCEEDED
    # The notice to the person is recorded just after the request is final: wait for it, so
    # that the count below is the finished request's.
    wait_for(
        lambda: PortalEvent.objects.filter(
            request=row.pk, kind=PortalEvent.Kind.ACTION_NOTIFIED
        ).exists(),
        timeout=30,
        what="the notice to the person",
    )
    events = PortalEvent.objects.filter(request=row.pk).count()

    # The same message again (acks_late redelivery), run here and through the worker.
    tasks.action_request_run.apply(args=(row.pk,))
    tasks.action_request_run.delay(row.pk)
    tasks.action_request_run.delay(row.pk)
    services.requests_redispatch()

    row_after = ActionRequest.objects.get(pk=row.pk)
    assert (row_after.status, row_after.attempts) == (Status.SUCCEEDED, 1)
    assert PortalEvent.objects.filter(request=row.pk).count() == events
    assert _revokes(tenant) == before + 1


def test_a_running_row_is_claimed_again_only_after_its_lease(
    tenant: Any, transactional_db: None
) -> None:
    agent = portal_user(PERSONAS.agent)
    before = _revokes(tenant)
    with pytest.MonkeyPatch.context() as patch:
        # No broker at enqueue time: the row stays pending, as if the message were lost.
        patch.setattr(tasks.action_request_run, "apply_async", _broker_down)
        row = _revoke(agent)
    now = timezone.now()
    ActionRequest.objects.filter(pk=row.pk).update(
        status=Status.RUNNING, started_at=now, heartbeat_at=now, attempts=1
    )
    services.action_request_execute(request_id=row.pk)  # a live worker holds it: nothing
    assert ActionRequest.objects.get(pk=row.pk).attempts == 1 and _revokes(tenant) == before

    lease = timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS + 1)
    ActionRequest.objects.filter(pk=row.pk).update(heartbeat_at=now - lease)
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED and row.attempts == 2
    assert row.steps[0]["text"].startswith("The previous worker stopped")
    started = PortalEvent.objects.get(kind=PortalEvent.Kind.ACTION_STARTED, request=row.pk)
    assert started.detail["taken_over_from_lost_worker"] is True
    assert _revokes(tenant) == before + 1


def _broker_down(*args: Any, **kwargs: Any) -> None:
    raise OperationalError("Error 111 connecting to 127.0.0.1. Connection refused.")


def test_beat_redispatches_what_no_worker_picked_up(tenant: Any, celery_worker: Any) -> None:
    agent = portal_user(PERSONAS.agent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tasks.action_request_run, "apply_async", _broker_down)
        row = _revoke(agent)
    row.refresh_from_db()
    assert row.status == Status.PENDING and row.enqueued_at is not None
    # Too recent: left alone.
    assert services.requests_redispatch() == 0
    ActionRequest.objects.filter(pk=row.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.PORTAL_REDISPATCH_AFTER_SECONDS + 1)
    )
    assert tasks.requests_redispatch.apply().get() == 1
    row = wait_final(row.pk)
    assert row.status == Status.SUCCEEDED
    assert PortalEvent.objects.filter(
        kind=PortalEvent.Kind.ACTION_REDISPATCHED, request=row.pk
    ).exists()
    assert services.requests_redispatch() == 0


def test_an_unexpected_error_ends_the_request_failed(
    tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(run: Any) -> Any:
        raise KeyError("lifetime_minutes")

    monkeypatch.setitem(runners.RUNNERS, ActionKind.REVOKE_SESSIONS, broken)
    row = wait_final(_revoke(portal_user(PERSONAS.agent)).pk)
    assert row.status == Status.FAILED and row.error_code == "UnexpectedError"
    assert "KeyError" in row.error_message and row.open_slot is None
