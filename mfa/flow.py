"""Helpdesk action requests as a flow of the durable-request engine (``outbox.engine``).

The engine owns the life of a request; this module supplies what is the helpdesk's own: the
model, the event kinds, the runners (``mfa.runners``), who may decide or cancel, and the notice
sent when a request that changed something ends.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.roles import has_role
from mfa import policy
from mfa.models import ActionRequest, Status
from mfa.runners import run_action
from outbox.engine import Run
from outbox.errors import NotAllowed
from outbox.flow import EventKinds, Flow, Outcome
from roles.tiering import approval_refusal


class ActionRequestFlow(Flow[ActionRequest]):
    model = ActionRequest
    events = EventKinds.named(
        "action", final=(Status.SUCCEEDED, Status.PARTIALLY_SUCCEEDED, Status.FAILED)
    )
    noun = "request"
    reader = "agent"
    policy_error_code = "PolicyRefused"
    progress_fields = ("result",)

    def run(self, run: Run[ActionRequest]) -> Outcome:
        return run_action(run)

    def send(self, request_id: int) -> None:
        from mfa.tasks import action_request_run

        action_request_run.apply_async(args=(request_id,), queue="interactive")

    def check_may_decide(self, approver: Any, row: ActionRequest) -> None:
        policy.check_may_decide(approver, row)

    def check_may_approve(self, approver: Any, row: ActionRequest) -> None:
        # A privileged request whose requester lost PAA (with tiering mirrored) cannot be
        # approved; it may still be rejected or cancelled.
        refusal = approval_refusal(row.requester, privileged=row.is_privileged)
        if refusal:
            raise NotAllowed(refusal)

    def check_may_cancel(self, by: Any, row: ActionRequest) -> None:
        if by.pk != row.requester_id and not has_role(by, *policy.APPROVER_ROLES):
            raise NotAllowed("Only the requester, a Lead or an Admin can cancel this request.")

    def event_fields(self, row: ActionRequest) -> dict[str, Any]:
        return {
            "action_request_id": row.pk,
            "target_id": row.target_id,
            "target_name": row.target_name,
            "ticket": row.ticket,
        }

    def final_detail(self, row: ActionRequest) -> dict[str, Any]:
        return {"result": {k: v for k, v in row.result.items() if k != "plan"}}

    def fallback_error(self, row: ActionRequest) -> tuple[str, str, str] | None:
        first = next(iter(row.result.get("failed") or []), None)
        if not first:
            return None
        return (
            str(first.get("code", "")),
            str(first.get("message", "")),
            str(first.get("request_id", "")),
        )

    def on_finished(self, row: ActionRequest, status: str) -> None:
        if row.completed_writes:
            from mfa.notifications import action_request_notify

            request_pk = row.pk
            transaction.on_commit(lambda: action_request_notify(request_id=request_pk))


ACTION_REQUESTS = ActionRequestFlow()
