"""A worker killed in the middle of a request, for both flows (tests/outbox/flows.py): the request
still ends in a visible state and no Graph write is repeated.

A real ``celery worker`` process runs the request against the emulator with injected latency; it is
SIGKILLed mid-run: a re-registration between two deletes, a role change while its one write is on
the wire (the write lands; the worker never hears). After the lease runs out, beat's re-dispatch
(called here) sends the request again and a second worker process finishes it, resuming from the
row's write journal: a write known done is not sent again, a write in flight is looked up in Graph
first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from entra_emulator import graph_core
from outbox.states import Status
from tests.faults.support import assert_visible_final
from tests.outbox.flows import FLOWS, Flow
from tests.plugin import quiet_emulator_throttle
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
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
@pytest.mark.parametrize("flow", FLOWS)
@override_settings(PORTAL_ACTION_LEASE_SECONDS=LEASE_SECONDS, PORTAL_REDISPATCH_AFTER_SECONDS=1)
def test_worker_killed_mid_run(
    flow: Flow,
    fresh_tenant: Any,
    transactional_db: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quiet_emulator_throttle(fresh_tenant)
    # Every Graph request the emulator receives, noted as it arrives (before its latency), so the
    # worker is killed only once its journalled write is really on the wire: the journal entry is
    # saved before the request is sent, and a worker slowed by a loaded machine can be caught in
    # between, with nothing sent at all.
    arrived: list[tuple[str, str]] = []
    process = graph_core._process

    def noting_arrival(runtime: Any, request: Any, *args: Any) -> Any:
        arrived.append((request.method.upper(), request.path))
        return process(runtime, request, *args)

    monkeypatch.setattr(graph_core, "_process", noting_arrival)
    planned = flow.planned_writes()
    before = flow.writes(fresh_tenant)

    first = _start_worker(tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        # Slow Graph down so the worker is caught mid-run: between two deletes, or while its one
        # write is on the wire.
        fresh_tenant.faults.configure(latency_ms=1500)
        row = flow.create()

        def caught() -> bool:
            current = flow.get(row.pk)
            return flow.mid_run(current, planned) and flow.on_the_wire(current, list(arrived))

        wait_for(caught, timeout=120, interval=0.05, what="the worker to be mid-run")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # The write on the wire still lands: Entra did it, the dead worker never heard.
        wait_for(
            lambda: flow.writes(fresh_tenant) > before, timeout=30, what="the first write to land"
        )
        stuck = flow.get(row.pk)
        assert stuck.status == Status.RUNNING  # the dead worker left it mid-run
        assert flow.mid_run(stuck, planned), (stuck.pending_writes, stuck.steps)

        fresh_tenant.faults.configure(latency_ms=0)
        second = _start_worker(tmp_path / "second.log")
        # The lease must run out before the row may be taken over; then beat re-dispatches it.
        flow.backdate(row.pk, enqueued_at=timezone.now() - timedelta(seconds=5))

        def lease_ran_out() -> bool:
            beat = flow.get(row.pk).heartbeat_at
            return beat is not None and beat < timezone.now() - timedelta(seconds=LEASE_SECONDS)

        wait_for(lease_ran_out, timeout=30, what="the dead worker's lease to run out")
        assert flow.redispatch() == 1
        done = flow.wait_final(row.pk, timeout=120)
    finally:
        fresh_tenant.faults.configure(latency_ms=0)
        _stop(first)
        if second is not None:
            _stop(second)

    assert done.status == Status.SUCCEEDED, (done.error_code, done.error_message, done.steps)
    assert done.attempts == 2
    assert done.pending_writes == {}
    flow.check_done(done, fresh_tenant)
    # Entra's own record: every write made exactly once, the one the dead worker sent included.
    assert flow.writes(fresh_tenant) == before + planned
    assert flow.task_name in (tmp_path / "second.log").read_text(errors="replace")
    assert settings.PORTAL_ACTION_LEASE_SECONDS == LEASE_SECONDS
    # The page tells the person that a worker died and the next one resumed.
    assert_visible_final(done, status=Status.SUCCEEDED, flow=flow, resumed=True)
