"""A worker killed in the middle of a re-registration: the request still ends in a visible state
and no Graph write is repeated.

A real ``celery worker`` process runs the request against the emulator with injected latency; it is
SIGKILLed between two deletes. After the lease runs out, beat's re-dispatch (called here) sends the
request again and a second worker process finishes it, resuming from the row's write journal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from graph import methods as graph_methods
from mfa import policy, services
from mfa.models import ActionKind, ActionRequest, Status
from portal.graph_client import get_graph_client
from tests.mfa.support_ma import (
    REASON,
    TICKET,
    emulator_audit,
    manual_verification,
    new_key,
    portal_user,
    quiet_emulator_throttle,
    wait_for,
)
from tests.personas import PERSONAS

ROOT = Path(__file__).resolve().parents[2]
SAM = PERSONAS.standard_target
LEASE_SECONDS = 4


def _database_url() -> str:
    """DATABASE_URL naming the test database this process uses (SQLite file or test_<name>)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = db.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def _start_worker(log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": _database_url(),
        "PORTAL_ACTION_LEASE_SECONDS": str(LEASE_SECONDS),
        "LOG_LEVEL": "DEBUG",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "portal.celery:app",
        "worker",
        "-Q",
        "interactive",
        "-P",
        "solo",
        "-c",
        "1",
        "-l",
        "DEBUG",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"durability-{log.stem}@%h",
    ]
    handle = log.open("ab")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.timeout(240)
@override_settings(PORTAL_ACTION_LEASE_SECONDS=LEASE_SECONDS, PORTAL_REDISPATCH_AFTER_SECONDS=1)
def test_worker_killed_between_deletes(
    fresh_tenant: Any, transactional_db: None, tmp_path: Path
) -> None:
    quiet_emulator_throttle(fresh_tenant)
    agent = portal_user(PERSONAS.agent)
    profile = policy.target_profile(get_graph_client(), SAM.oid, use_cache=False)
    deletable = [
        m for m in graph_methods.list_methods(get_graph_client(), SAM.oid) if m.kind.deletable
    ]
    assert len(deletable) >= 2
    deleted_before = len(
        emulator_audit(fresh_tenant, target_id=SAM.oid, activity_contains="deleted security info")
    )

    first = _start_worker(tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        # Slow Graph down so the worker is caught between two deletes.
        fresh_tenant.faults.configure(latency_ms=1500)
        row = services.action_request_create(
            agent=agent,
            profile=profile,
            kind=ActionKind.REREGISTER,
            reason=REASON,
            ticket=TICKET,
            params={},
            verification=manual_verification(agent, profile),
            idempotency_key=new_key(),
        )

        def first_delete_done() -> bool:
            current = ActionRequest.objects.get(pk=row.pk)
            return any(k.startswith("delete:") for k in current.completed_writes)

        wait_for(first_delete_done, timeout=120, interval=0.05, what="the first delete")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        stuck = ActionRequest.objects.get(pk=row.pk)
        assert stuck.status == Status.RUNNING  # the dead worker left it mid-run
        started_deletes = [k for k in stuck.completed_writes if k.startswith("delete:")]
        assert 1 <= len(started_deletes) < len(deletable)  # killed between two deletes

        fresh_tenant.faults.configure(latency_ms=0)
        second = _start_worker(tmp_path / "second.log")
        # The lease must run out before the row may be taken over; then beat re-dispatches it.
        ActionRequest.objects.filter(pk=row.pk).update(
            enqueued_at=timezone.now() - timedelta(seconds=5)
        )

        def lease_ran_out() -> bool:
            beat = ActionRequest.objects.get(pk=row.pk).heartbeat_at
            return beat is not None and beat < timezone.now() - timedelta(seconds=LEASE_SECONDS)

        wait_for(
            lease_ran_out,
            timeout=30,
            what="the dead worker's lease to run out",
        )
        assert services.requests_redispatch() == 1

        def finished() -> ActionRequest | None:
            current = ActionRequest.objects.get(pk=row.pk)
            return current if current.is_final else None

        done: ActionRequest = wait_for(finished, timeout=120, what="the request to finish")
    finally:
        fresh_tenant.faults.configure(latency_ms=0)
        _stop(first)
        if second is not None:
            _stop(second)

    assert done.status == Status.SUCCEEDED, (done.error_code, done.error_message, done.steps)
    assert done.attempts == 2
    assert any(s["text"].startswith("The previous worker stopped") for s in done.steps)
    assert {e["id"] for e in done.result["removed"]} == {m.id for m in deletable}
    assert done.pending_writes == {}
    # Entra's own record: every method deleted exactly once, none twice.
    deletes = emulator_audit(
        fresh_tenant, target_id=SAM.oid, activity_contains="deleted security info"
    )
    new_deletes = deletes[deleted_before:]
    reasons = Counter(str(event.get("resultReason")) for event in new_deletes)
    assert len(new_deletes) == len(deletable), reasons
    assert all(count == 1 for count in reasons.values()), reasons
    remaining = graph_methods.list_methods(get_graph_client(), SAM.oid)
    assert [m for m in remaining if m.kind.deletable] == []
    # The worker's own logs (DEBUG) carry no reason to show a secret either; they did run.
    assert "action_request_run" in (tmp_path / "second.log").read_text(errors="replace")
    assert settings.PORTAL_ACTION_LEASE_SECONDS == LEASE_SECONDS
