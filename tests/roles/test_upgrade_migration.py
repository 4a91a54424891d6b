"""An upgrade from the schema before the roles app (accounts' 0002, the role models still in
accounts) keeps every role change and every read of the holders: the move is state only, and the
rows are found through ``roles.models`` afterwards."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from outbox.states import Status
from roles.holders import RoleHolders
from roles.models import RoleChangeRequest, RoleHolderSnapshot

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("accounts", "0002_role_administration"), ("roles", None)]


def _migrate(targets: list[tuple[str, str | None]] | None = None) -> Any:
    """Migrate to ``targets`` (None: the newest of every app); return the apps of that state."""
    executor = MigrationExecutor(connection)
    wanted = targets if targets is not None else executor.loader.graph.leaf_nodes()
    executor.migrate(wanted)
    executor.loader.build_graph()
    # ``(app, None)`` (no migration of that app) has no node in the graph: leave it out.
    nodes = [(app, name) for app, name in wanted if name is not None]
    return executor.loader.project_state(nodes).apps


def _columns(row: Any, names: Any = None) -> dict[str, Any]:
    """The values of ``row``'s columns (only ``names`` when given: a later migration may add
    columns, which the old rows then hold at their defaults)."""
    fields = [f.attname for f in row._meta.concrete_fields]
    return {name: getattr(row, name) for name in fields if names is None or name in names}


def test_upgrade_keeps_every_role_change_and_holder_read() -> None:
    old = _migrate(BEFORE)
    assert not any(m._meta.app_label == "roles" for m in old.get_models())
    User = old.get_model("auth", "User")
    OldChange = old.get_model("accounts", "RoleChangeRequest")
    OldSnapshot = old.get_model("accounts", "RoleHolderSnapshot")
    ana = User.objects.create(username="ana-oid")
    abel = User.objects.create(username="abel-oid")
    now = timezone.now()
    done = OldChange.objects.create(
        public_id=uuid.uuid4(),
        change="add",
        status=Status.SUCCEEDED,
        role_template_id="c4e39bd9-1100-46d3-8c65-fb160da0071f",
        role_name="Authentication Administrator",
        principal_id="0b1c2d3e-0000-4000-8000-000000000001",
        principal_type="user",
        principal_name="Sam Standard",
        principal_upn="sam@contoso.example",
        hold_kind="eligible_until",
        ends_at=now + timedelta(days=10),
        justification="Joins the identity operations rota.",
        ticket="INC0012345",
        requester=ana,
        requester_name="Ana Admin",
        needs_approval=True,
        decided_by=abel,
        decided_by_name="Abel Admin",
        decision_comment="Agreed.",
        decided_at=now - timedelta(minutes=3),
        idempotency_key="key-done-0123456789",
        open_slot=None,
        created_at=now - timedelta(minutes=5),
        enqueued_at=now - timedelta(minutes=3),
        started_at=now - timedelta(minutes=2),
        finished_at=now - timedelta(minutes=1),
        heartbeat_at=now - timedelta(minutes=1),
        attempts=2,
        steps=[{"at": now.isoformat(), "text": "Reading… done", "state": "done", "detail": ""}],
        pending_writes={},
        graph_object_id="pim-request-1",
        error_code="",
        error_message="",
        error_request_id="",
        entra_event_ids=["entra-event-1"],
    )
    waiting = OldChange.objects.create(
        change="remove",
        status=Status.PENDING,
        role_template_id="7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
        role_name="Privileged Authentication Administrator",
        principal_id="0b1c2d3e-0000-4000-8000-000000000002",
        principal_type="group",
        principal_name="PAA holders",
        hold_kind="active",
        assignment_id="assignment-7",
        justification="Left the team; access no longer needed.",
        requester=abel,
        requester_name="Abel Admin",
        idempotency_key="key-open-0123456789",
        open_slot="7be44c8a-adaf-4e2a-84d6-ab2649e08a13:0b1c2d3e-0000-4000-8000-000000000002",
        pending_writes={"removal": now.isoformat()},
    )
    holders = RoleHolders(taken_at=now, portal_roles={"ana-oid": ("Admin",)}).as_json()
    snapshot = OldSnapshot.objects.create(
        state="done", trigger="button", requested_by=ana, finished_at=now, holders=holders
    )
    failed = OldSnapshot.objects.create(
        state="failed", trigger="schedule", error_code="Throttled", error_request_id="req-1"
    )
    expected = {
        "changes": {r.pk: _columns(OldChange.objects.get(pk=r.pk)) for r in (done, waiting)},
        "snapshots": {s.pk: _columns(OldSnapshot.objects.get(pk=s.pk)) for s in (snapshot, failed)},
    }

    _migrate()

    assert RoleChangeRequest.objects.count() == 2
    for pk, columns in expected["changes"].items():
        assert _columns(RoleChangeRequest.objects.get(pk=pk), columns) == columns
    assert RoleHolderSnapshot.objects.count() == 2
    for pk, columns in expected["snapshots"].items():
        assert _columns(RoleHolderSnapshot.objects.get(pk=pk), columns) == columns
    # The models' behaviour works on the old rows: the open change is open, the other final.
    assert list(RoleChangeRequest.objects.open().values_list("pk", flat=True)) == [waiting.pk]
    assert RoleChangeRequest.objects.get(pk=done.pk).is_final
    assert RoleChangeRequest.objects.get(pk=done.pk).requester.username == "ana-oid"
    newest = RoleHolderSnapshot.objects.filter(state=RoleHolderSnapshot.State.DONE).get()
    assert RoleHolders.from_json(newest.holders).portal_roles == {"ana-oid": ("Admin",)}
    # New rows go on from the old ones (the same table, the same id sequence).
    later = RoleHolderSnapshot.objects.create(trigger="change")
    assert later.pk > max(expected["snapshots"])
