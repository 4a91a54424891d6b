"""The database connection dropped inside a task, right after a Graph write landed.

For each flow (tests/outbox/flows.py) the worker runs a request; just after its first Graph write
landed (a re-registration's first delete, a role change's one assignment), before the worker could
journal it, its database connection is cut: on PostgreSQL the backend is terminated with
``pg_terminate_backend`` (what a server restart or a failover does), on SQLite the connection is
closed behind Django's back (Django still holds it, as it holds a connection the server dropped).

The request must still end in a visible state with every write made exactly once: the worker
gives up its claim on a fresh connection ("Waiting for the database") and the task is retried.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from outbox.states import Status
from tests.faults.support import assert_visible_final
from tests.outbox.flows import FLOWS, Flow
from tests.plugin import quiet_emulator_throttle

pytestmark = pytest.mark.timeout(180)


def _cut_this_threads_connection() -> None:
    """Break the current thread's database connection without telling Django."""
    raw = connection.connection
    assert raw is not None
    if connection.vendor == "postgresql":
        import psycopg

        pid = raw.info.backend_pid
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        params.pop("server_side_binding", None)
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    else:
        raw.close()


@pytest.mark.parametrize("flow", FLOWS)
def test_connection_dropped_after_a_graph_write(
    flow: Flow, fresh_tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_emulator_throttle(fresh_tenant)
    planned = flow.planned_writes()
    before = flow.writes(fresh_tenant)
    real_write = getattr(flow.write_module, flow.write_function)
    cuts: list[int] = []

    def write_then_lose_the_database(*args: Any, **kwargs: Any) -> Any:
        answer = real_write(*args, **kwargs)
        if not cuts:
            cuts.append(1)
            _cut_this_threads_connection()
        return answer

    monkeypatch.setattr(flow.write_module, flow.write_function, write_then_lose_the_database)
    with override_settings(PORTAL_ACTION_LEASE_SECONDS=3, PORTAL_REDISPATCH_AFTER_SECONDS=1):
        row = flow.create()
        # The worker recovers by itself (a retry on a fresh connection) within seconds; a flow
        # that cannot leaves the row running for beat, which this test does not run.
        row = flow.wait_final(row.pk, timeout=45)

    assert cuts, "the connection was never cut"
    assert_visible_final(row, status=Status.SUCCEEDED, flow=flow)
    assert row.attempts == 2
    flow.check_done(row, fresh_tenant)
    # Entra's own record: each write once, the one before the cut included.
    assert flow.writes(fresh_tenant) == before + planned
    assert len(flow.events(row, flow.started_kind)) == 2
    assert any(s["text"].startswith("Waiting for the database") for s in row.steps), row.steps
