"""The lease and beat's redispatch, for both flows (tests/outbox/flows.py), in one process.

A worker that stalls while it holds a row (a thread running the flow's task body, held just after
its first Graph write landed, before it could record the answer) keeps the row ``running`` while
its heartbeat ages:

- while the lease holds, another worker finds nothing to claim;
- once it has lapsed, the next worker claims the row, resumes from the write journal (the write
  in flight is looked up in Graph, not sent again) and finishes it; the stalled worker's next
  fenced save is refused, so the row stays as the second worker left it;
- beat's redispatch sends such a row again exactly once, records it, and leaves it alone on the
  next tick while its new enqueue is fresh; a ``pending`` row no worker picked up likewise.

No Celery worker consumes here: the tests call the task's service (``flow.execute``) themselves,
and count the messages beat put on the broker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from outbox.states import Status
from tests.faults.support import assert_visible_final
from tests.outbox.flows import FLOWS, Flow
from tests.plugin import quiet_emulator_throttle
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

# Each test first keeps the production lease, so that the stalled worker's lease surely holds
# however long Graph took, then shortens it to this (the heartbeat is only ever compared with the
# setting at claim and redispatch time), so that it lapses in seconds.
LEASE_SECONDS = 2


@dataclass
class StalledWorker:
    """A thread running ``flow.execute`` that stopped right after its first Graph write."""

    thread: threading.Thread
    release_event: threading.Event
    errors: list[BaseException] = field(default_factory=list)

    def release(self) -> list[BaseException]:
        """Let it go on, wait for it to end; returns what it raised (nothing, when it gave up
        the row quietly)."""
        self.release_event.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the stalled worker did not end"
        return self.errors


@contextmanager
def stalled_worker(
    flow: Flow, request_id: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StalledWorker]:
    """Start a worker on ``request_id`` and return once its first Graph write has landed; the
    worker then waits until ``release()`` (called on exit at the latest). Later writes, by any
    worker, go through untouched."""
    real_write = getattr(flow.write_module, flow.write_function)
    landed = threading.Event()
    release = threading.Event()
    stalled: list[int] = []

    def write_then_stall(*args: Any, **kwargs: Any) -> Any:
        answer = real_write(*args, **kwargs)
        if not stalled:
            stalled.append(threading.get_ident())
            landed.set()
            release.wait(timeout=60)
        return answer

    monkeypatch.setattr(flow.write_module, flow.write_function, write_then_stall)
    worker = StalledWorker(threading.Thread(target=lambda: None), release)

    def run() -> None:
        try:
            flow.execute(request_id)
        except BaseException as exc:  # reported to the test by release()
            worker.errors.append(exc)
        finally:
            connection.close()

    worker.thread = threading.Thread(target=run, name="stalled-worker", daemon=True)
    worker.thread.start()
    try:
        # Fail at once when the worker ended (or broke) before it made its first write.
        wait_for(
            lambda: landed.is_set() or not worker.thread.is_alive(),
            timeout=60,
            interval=0.05,
            what="the worker's first Graph write",
        )
        assert landed.is_set(), f"the worker ended before its first Graph write: {worker.errors}"
        yield worker
    finally:
        worker.release()


def _lease_lapsed(flow: Flow, request_id: int) -> bool:
    beat = flow.get(request_id).heartbeat_at
    return beat is not None and beat < timezone.now() - timedelta(seconds=LEASE_SECONDS)


def _queued(redis_client: redis.Redis, flow: Flow, request_id: int) -> int:
    """Messages for the flow's task and this request waiting on the ``interactive`` queue (the
    Redis transport keeps one list per priority step, named after the queue)."""
    count = 0
    for key in redis_client.scan_iter(match="interactive*"):
        if redis_client.type(key) != b"list":
            continue
        for raw in redis_client.lrange(key, 0, -1):
            headers = json.loads(raw).get("headers") or {}
            if str(headers.get("task", "")).endswith(flow.task_name) and headers.get(
                "argsrepr"
            ) == repr((request_id,)):
                count += 1
    return count


@pytest.mark.parametrize("flow", FLOWS)
@override_settings(PORTAL_ACTION_LEASE_SECONDS=300, PORTAL_REDISPATCH_AFTER_SECONDS=1)
def test_lapsed_lease_is_taken_over_and_the_stalled_workers_save_refused(
    flow: Flow, fresh_tenant: Any, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_emulator_throttle(fresh_tenant)
    planned = flow.planned_writes()
    before = flow.writes(fresh_tenant)
    row = flow.create()

    with stalled_worker(flow, row.pk, monkeypatch) as first:
        held = flow.get(row.pk)
        assert held.status == Status.RUNNING and held.attempts == 1
        assert held.pending_writes, held.steps  # its write is in the journal, still in flight

        flow.execute(row.pk)  # another worker, while the lease holds: nothing to claim
        assert flow.get(row.pk).attempts == 1

        with override_settings(PORTAL_ACTION_LEASE_SECONDS=LEASE_SECONDS):
            wait_for(lambda: _lease_lapsed(flow, row.pk), timeout=30, what="the lease to lapse")
            flow.execute(row.pk)  # the task delivered again: takes the row over, finishes it
        done = flow.get(row.pk)
        assert done.status == Status.SUCCEEDED, (done.error_code, done.error_message, done.steps)
        assert done.attempts == 2

        # The stalled worker goes on: its next fenced save is refused and it gives up quietly.
        assert first.release() == []

    after = flow.get(row.pk)
    assert (after.status, after.attempts, after.steps) == (done.status, 2, done.steps)
    assert after.updated_at == done.updated_at
    flow.check_done(after, fresh_tenant)
    assert flow.writes(fresh_tenant) == before + planned  # the write in flight was not repeated
    assert len(flow.events(after, flow.started_kind)) == 2
    assert_visible_final(after, status=Status.SUCCEEDED, flow=flow, resumed=True)


@pytest.mark.parametrize("flow", FLOWS)
@override_settings(PORTAL_ACTION_LEASE_SECONDS=300, PORTAL_REDISPATCH_AFTER_SECONDS=1)
def test_redispatch_sends_a_pending_row_once(
    flow: Flow, fresh_tenant: Any, transactional_db: None, redis_client: redis.Redis
) -> None:
    """The task was sent but no worker took it: beat sends it again once, records that, and
    leaves the row alone on the next tick (its new enqueue is fresh)."""
    quiet_emulator_throttle(fresh_tenant)
    planned = flow.planned_writes()
    before = flow.writes(fresh_tenant)
    row = flow.create()
    assert _queued(redis_client, flow, row.pk) == 1  # sent on commit
    flow.backdate(row.pk, enqueued_at=timezone.now() - timedelta(seconds=5))

    first, second = flow.redispatch(), flow.redispatch()
    recorded = len(flow.events(row, flow.redispatched_kind))
    assert (first, second, recorded) == (1, 0, 1), "(dispatched, next tick, redispatch events)"
    assert _queued(redis_client, flow, row.pk) == 2
    assert flow.get(row.pk).status == Status.PENDING

    flow.execute(row.pk)
    assert_visible_final(flow.get(row.pk), status=Status.SUCCEEDED, flow=flow)
    assert flow.writes(fresh_tenant) == before + planned
    assert flow.redispatch() == 0


@pytest.mark.parametrize("flow", FLOWS)
@override_settings(PORTAL_ACTION_LEASE_SECONDS=300, PORTAL_REDISPATCH_AFTER_SECONDS=1)
def test_redispatch_sends_a_lapsed_running_row_once(
    flow: Flow,
    fresh_tenant: Any,
    transactional_db: None,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row whose worker stalled mid-run: once the lease lapsed beat sends it again once,
    records that, and does not send it again on the next tick (the ``enqueued_at`` guard); the
    worker that gets it finishes it without repeating the write."""
    quiet_emulator_throttle(fresh_tenant)
    planned = flow.planned_writes()
    before = flow.writes(fresh_tenant)
    row = flow.create()

    with stalled_worker(flow, row.pk, monkeypatch) as stuck:
        assert flow.redispatch() == 0  # running, lease alive: not beat's business
        queued = _queued(redis_client, flow, row.pk)
        with override_settings(PORTAL_ACTION_LEASE_SECONDS=LEASE_SECONDS):
            wait_for(lambda: _lease_lapsed(flow, row.pk), timeout=30, what="the lease to lapse")
            first, second = flow.redispatch(), flow.redispatch()
            recorded = len(flow.events(row, flow.redispatched_kind))
            assert (first, second, recorded) == (1, 0, 1), (
                "(dispatched, next tick, redispatch events)"
            )
            assert _queued(redis_client, flow, row.pk) == queued + 1
            flow.execute(row.pk)  # the worker that receives beat's message
        assert stuck.release() == []

    assert flow.writes(fresh_tenant) == before + planned
    assert flow.redispatch() == 0
    assert_visible_final(flow.get(row.pk), status=Status.SUCCEEDED, flow=flow, resumed=True)
