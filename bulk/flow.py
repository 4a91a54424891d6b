"""Bulk operations as the third flow of the durable-request engine (``outbox.engine``).

The engine owns the operation's life (claim, lease, redispatch, approval, expiry); this module
supplies what is the bulk operation's own: the model, the event kinds, the runner
(``bulk.runner``: each person's parts are normal action requests, run inline on the same
engine), who may decide or cancel, the budget priority, and the notice when it ends.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.roles import BULK_APPROVER_ROLES, has_role
from bulk.models import BulkOperation
from graph import Priority
from outbox.engine import Run
from outbox.errors import NotAllowed
from outbox.flow import EventKinds, Flow, Outcome
from outbox.states import Status
from roles.tiering import agent_holds_paa

FINAL = (Status.SUCCEEDED, Status.PARTIALLY_SUCCEEDED, Status.FAILED, Status.CANCELLED)


def operation_detail(op: BulkOperation, **more: Any) -> dict[str, Any]:
    """The ``detail`` every bulk event carries: which operation, what it does, how far."""
    return {
        "bulk_operation": str(op.public_id),
        "bulk_operation_id": op.pk,
        "actions": list(op.actions),
        "source": op.source,
        "source_label": op.source_label,
        "reason": op.reason,
        "done": op.done,
        "failed": op.failed,
        "left": op.left,
        **more,
    }


class BulkOperationFlow(Flow[BulkOperation]):
    model = BulkOperation
    events = EventKinds.named("bulk_operation", final=FINAL)
    noun = "operation"
    reader = "requester"
    policy_error_code = "PolicyRefused"
    progress_fields = ("done", "failed", "left")

    def run(self, run: Run[BulkOperation]) -> Outcome:
        from bulk.runner import run_operation

        return run_operation(run)

    def send(self, request_id: int) -> None:
        from bulk.tasks import bulk_operation_run

        bulk_operation_run.apply_async(args=(request_id,), queue="bulk")

    def budget_priority(self, row: BulkOperation) -> Priority:
        return Priority.BULK

    def check_may_decide(self, approver: Any, row: BulkOperation) -> None:
        if not has_role(approver, *BULK_APPROVER_ROLES):
            raise NotAllowed("Only a Lead, a Responder or an Admin can approve bulk operations.")
        if approver.pk == row.requester_id:
            raise NotAllowed("You started this operation: someone else must approve it.")

    def check_may_approve(self, approver: Any, row: BulkOperation) -> None:
        privileged = int(row.dry_run.get("privileged") or 0)
        if (
            privileged
            and settings.PORTAL_MIRROR_ENTRA_TIERING
            and not agent_holds_paa(row.requester)
        ):
            raise NotAllowed(
                f"{row.requester_name} no longer holds Privileged Authentication Administrator, "
                "so the privileged people of this operation cannot be acted on: reject it."
            )

    def check_may_cancel(self, by: Any, row: BulkOperation) -> None:
        if by.pk != row.requester_id and not has_role(by, *BULK_APPROVER_ROLES):
            raise NotAllowed("Only the starter, a Lead, a Responder or an Admin can cancel it.")

    def event_fields(self, row: BulkOperation) -> dict[str, Any]:
        return {"ticket": row.ticket, "target_name": row.source_label[:256]}

    def event_detail(self, row: BulkOperation, **more: Any) -> dict[str, Any]:
        return operation_detail(row, **more)

    def on_finished(self, row: BulkOperation, status: str) -> None:
        from bulk.notifications import notify_finished

        op_pk = row.pk
        transaction.on_commit(lambda: notify_finished(operation_id=op_pk))


BULK_OPERATIONS = BulkOperationFlow()
