"""The database connection dropped inside a task, right after a Graph write landed.

The worker runs a re-registration; just after Graph deleted the first method (before the worker
could journal it), its database connection is cut: on PostgreSQL the backend is terminated with
``pg_terminate_backend`` (what a server restart or a failover does), on SQLite the connection is
closed behind Django's back (Django still holds it, as it holds a connection the server dropped).

The request must still end in a visible state with every method deleted exactly once: the worker
gives up its claim on a fresh connection and the task is retried, or, failing that, beat's
re-dispatch takes the row over once its lease runs out.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from audit.models import PortalEvent
from graph import methods as graph_methods
from mfa.models import ActionKind, ActionRequest, Status
from portal.graph_client import get_graph_client
from tests.faults.support import SAM, assert_visible_final, entra_writes, submit
from tests.mfa.support_ma import quiet_emulator_throttle, wait_final

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


def test_connection_dropped_after_a_graph_write(
    fresh_tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_emulator_throttle(fresh_tenant)
    deletable = {
        m.id for m in graph_methods.list_methods(get_graph_client(), SAM.oid) if m.kind.deletable
    }
    assert len(deletable) >= 2
    before = entra_writes(fresh_tenant)
    real_delete = graph_methods.delete_method
    cuts: list[str] = []

    def delete_then_lose_the_database(client: Any, user_id: str, method: Any) -> None:
        real_delete(client, user_id, method)
        if not cuts:
            cuts.append(method.id)
            _cut_this_threads_connection()

    monkeypatch.setattr(graph_methods, "delete_method", delete_then_lose_the_database)
    with override_settings(PORTAL_ACTION_LEASE_SECONDS=3, PORTAL_REDISPATCH_AFTER_SECONDS=1):
        row = submit(ActionKind.REREGISTER)
        row = wait_final(row.pk, timeout=120)

    assert cuts, "the connection was never cut"
    assert_visible_final(row, status=Status.SUCCEEDED)
    assert row.attempts == 2
    assert {e["id"] for e in row.result["removed"]} == deletable
    # Entra's own record: one delete per method, the one before the cut included.
    assert entra_writes(fresh_tenant)["deleted"] == before["deleted"] + len(deletable)
    started = PortalEvent.Kind.ACTION_STARTED
    assert PortalEvent.objects.filter(request=row.pk, kind=started).count() == 2
    assert any(s["text"].startswith("Waiting for the database") for s in row.steps)
    assert ActionRequest.objects.get(pk=row.pk).completed_writes
