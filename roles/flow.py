"""Directory role changes as a flow of the durable-request engine (``outbox.engine``).

The engine owns the life of a change; this module supplies what is the roles app's own: the
model, the event kinds, the runner (``roles.runners``), who may decide or cancel
(``roles.permissions``), and what follows a success (caches forgotten, holders read again).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from outbox.engine import Run
from outbox.flow import EventKinds, Flow, Outcome
from outbox.states import Status
from roles.events import event_detail, event_fields
from roles.models import RoleChangeRequest
from roles.permissions import role_change_check_may_cancel, role_change_check_may_decide
from roles.runners import after_change, run_role_change


class RoleChangeFlow(Flow[RoleChangeRequest]):
    model = RoleChangeRequest
    events = EventKinds.named("role_change", final=(Status.SUCCEEDED, Status.FAILED))
    noun = "change"
    reader = "requester"
    policy_error_code = "GuardRefused"
    progress_fields = ("graph_object_id",)

    def run(self, run: Run[RoleChangeRequest]) -> Outcome:
        return run_role_change(run)

    def send(self, request_id: int) -> None:
        from roles.tasks import role_change_run

        role_change_run.apply_async(args=(request_id,), queue="interactive")

    def check_may_decide(self, approver: Any, row: RoleChangeRequest) -> None:
        role_change_check_may_decide(approver, row)

    def check_may_cancel(self, by: Any, row: RoleChangeRequest) -> None:
        role_change_check_may_cancel(by)

    def event_fields(self, row: RoleChangeRequest) -> dict[str, Any]:
        return event_fields(row)

    def event_detail(self, row: RoleChangeRequest, **more: Any) -> dict[str, Any]:
        return event_detail(row, **more)

    def final_detail(self, row: RoleChangeRequest) -> dict[str, Any]:
        return event_detail(row, graph_object_id=row.graph_object_id)

    def on_finished(self, row: RoleChangeRequest, status: str) -> None:
        if status == Status.SUCCEEDED:
            people = [row.principal_id]
            principal_type = row.principal_type
            transaction.on_commit(lambda: after_change(people, principal_type))


ROLE_CHANGES = RoleChangeFlow()
