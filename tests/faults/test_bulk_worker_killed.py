"""A real worker process SIGKILLed in the middle of a bulk operation: the operation resumes
after the lease runs out and beat dispatches it again, and every person is acted on exactly
once (the emulator's Entra audit log is the witness: one revoke per person, one "deleted
security info" per planned delete).

The worker is caught in the middle of a person: after earlier people are done, with the current
person's re-registration between two deletes. The second worker resumes at that person: the
revoke already done is not sent again, the re-registration part (an action request of its own)
is claimed again by the engine and goes on from its write journal; then the people left.
"""

from __future__ import annotations

import signal
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from bulk import services
from bulk.models import BulkItem, BulkOperation, BulkPart, ItemState
from bulk.tasks import operations_redispatch
from mfa.models import ActionRequest
from outbox.states import Status
from tests.bulk.support import group_standard_ids, plan, rita
from tests.mfa.action_requests import emulator_audit
from tests.outbox.test_durability import LEASE_SECONDS, _database_url, _stop
from tests.plugin import quiet_emulator_throttle
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 4


def _start_worker(log: Path) -> subprocess.Popen[bytes]:
    import os
    import sys

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": _database_url(),
        "PORTAL_ACTION_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "portal.celery:app",
        "worker",
        "-Q",
        "bulk",
        "-P",
        "solo",
        "-c",
        "1",
        "-l",
        "INFO",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"bulk-{log.stem}@%h",
    ]
    handle = log.open("ab")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _mid_person(op_pk: int) -> bool:
    """A person's re-registration is between two deletes, and someone before them is done."""
    op = BulkOperation.objects.get(pk=op_pk)
    if op.done < 1:
        return False
    for part in BulkPart.objects.filter(
        item__operation_id=op_pk, kind="reregister", action_request__status=Status.RUNNING
    ).select_related("action_request"):
        request = part.action_request
        deleted = [k for k in request.completed_writes if k.startswith("delete:")]
        planned = len(request.result.get("plan") or [])
        if 1 <= len(deleted) < planned:
            return True
    return False


def _entra(server: Any, target_id: str) -> tuple[int, int]:
    revoked = emulator_audit(server, target_id=target_id, activity_contains="StsRefreshToken")
    deleted = emulator_audit(server, target_id=target_id, activity_contains="deleted security info")
    return len(revoked), len(deleted)


@pytest.mark.timeout(300)
@override_settings(PORTAL_ACTION_LEASE_SECONDS=LEASE_SECONDS, PORTAL_REDISPATCH_AFTER_SECONDS=1)
def test_bulk_worker_killed_mid_person_resumes_acting_on_everyone_once(
    fresh_tenant: Any, transactional_db: None, tmp_path: Path
) -> None:
    quiet_emulator_throttle(fresh_tenant)
    # People with at least two methods, so a worker can be caught between two deletes.
    survey = plan(group_standard_ids(fresh_tenant, 30), actions=("reregister",))
    people = [i.target_id for i in survey.items.order_by("position") if (i.methods_count or 0) >= 2]
    people = people[:PEOPLE]
    assert len(people) == PEOPLE
    # The seed's history has events of its own: count what this test adds.
    before = {p: _entra(fresh_tenant, p) for p in people}
    op = plan(people, actions=("revoke_sessions", "reregister"))
    planned_methods = {i.target_id: i.methods_count for i in op.items.all()}
    assert all(n and n >= 2 for n in planned_methods.values()), planned_methods

    first = _start_worker(tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        fresh_tenant.faults.configure(latency_ms=400)
        op = services.confirm(op, by=rita())  # enqueued on commit, to the bulk queue
        wait_for(lambda: _mid_person(op.pk), timeout=180, interval=0.05, what="mid-person")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        stuck = BulkOperation.objects.get(pk=op.pk)
        assert stuck.status == Status.RUNNING  # the dead worker left it mid-run
        assert 1 <= stuck.done < PEOPLE
        fresh_tenant.faults.configure(latency_ms=0)

        second = _start_worker(tmp_path / "second.log")
        BulkOperation.objects.filter(pk=op.pk).update(
            enqueued_at=timezone.now() - timedelta(seconds=5)
        )

        def lease_ran_out() -> bool:
            beat = BulkOperation.objects.get(pk=op.pk).heartbeat_at
            return beat is not None and beat < timezone.now() - timedelta(seconds=LEASE_SECONDS)

        wait_for(lease_ran_out, timeout=30, what="the dead worker's lease to run out")
        assert operations_redispatch() == 1

        def final() -> BulkOperation | None:
            row = BulkOperation.objects.get(pk=op.pk)
            return row if row.is_final else None

        done = wait_for(final, timeout=180, what="the operation to finish")
    finally:
        fresh_tenant.faults.configure(latency_ms=0)
        _stop(first)
        if second is not None:
            _stop(second)

    assert done.status == Status.SUCCEEDED, (done.error_code, done.error_message, done.steps)
    assert (done.done, done.failed, done.left) == (PEOPLE, 0, 0)
    assert done.attempts == 2  # claimed by the first worker, then by the second
    assert any(s["text"].startswith("The previous worker stopped") for s in done.steps)
    assert set(BulkItem.objects.filter(operation=done).values_list("state", flat=True)) == {
        ItemState.SUCCEEDED
    }
    # Every person acted on exactly once: one revoke, each planned delete once.
    requests = ActionRequest.objects.filter(bulk_operation_id=done.pk)
    assert requests.count() == 2 * PEOPLE  # one part per action per person, none twice
    taken_over = [r for r in requests if r.attempts == 2]
    assert len(taken_over) == 1 and taken_over[0].kind == "reregister"
    for person in people:
        reregister = requests.get(target_id=person, kind="reregister")
        planned = len(reregister.result["plan"])
        revoked, deleted = _entra(fresh_tenant, person)
        was_revoked, was_deleted = before[person]
        assert (revoked - was_revoked, deleted - was_deleted) == (1, planned), person
        assert reregister.status == Status.SUCCEEDED and reregister.pending_writes == {}
    assert "bulk.tasks.bulk_operation_run" in (tmp_path / "second.log").read_text(errors="replace")
