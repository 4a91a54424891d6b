"""Directory role changes as a flow of the durable-request engine (``outbox.engine``).

The engine owns the life of a change; this module supplies what is the roles app's own: the
model, the event kinds, the runner (``roles.runners``), who may decide or cancel
(``roles.permissions``), the execution-time check (:meth:`RoleChangeFlow.check_before_write`)
and what follows a success (caches forgotten, holders read again).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.roles import Role
from outbox.engine import Run
from outbox.errors import NeedsApproval, PolicyError
from outbox.flow import EventKinds, Flow, Outcome
from outbox.states import Status
from roles.events import event_detail, event_fields
from roles.holders import read_portal_roles
from roles.models import RoleChangeRequest
from roles.permissions import (
    is_own_principal,
    role_change_check_may_cancel,
    role_change_check_may_decide,
)
from roles.runners import after_change, run_role_change
from roles.tiering import staff_now


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

    def check_before_write(self, run: Run[RoleChangeRequest]) -> None:
        """Just before the first Graph write of every attempt, on Entra as it is now (no cache):
        the requester still holds the portal role Admin (the portal app's role assignments, not
        the session), their account is enabled, and the role is still not their own (a group
        they have joined since counts); PolicyError otherwise (the change fails, refused). For a
        change that needed an approval, the approver must pass the same checks, else the change
        goes back to awaiting approval (NeedsApproval) for another Admin. The removal guards are
        checked by the runner on the holders it has just read (``roles.runners``)."""
        row, client = run.row, run.client
        held = read_portal_roles(client)
        requester = staff_now(client, row.requester, portal_roles=held)
        who = row.requester_name
        if not requester.holds(Role.ADMIN):
            raise PolicyError(
                f"{who} no longer holds the portal role Admin in Entra, so the change was not made."
            )
        if not requester.enabled:
            raise PolicyError(f"{who}'s account is disabled in Entra, so the change was not made.")
        if is_own_principal(row.requester, row.principal_id, row.principal_type, client=client):
            raise PolicyError(
                f"{who} is now a member of {row.principal_name}, so this would change their own "
                "directory roles: the change was not made."
            )
        if not row.needs_approval:
            return
        if row.decided_by is None:
            raise NeedsApproval("This change needs a second Admin's approval before it is made.")
        approver = staff_now(client, row.decided_by, portal_roles=held)
        name = row.decided_by_name
        why = ""
        if not approver.holds(Role.ADMIN):
            why = f"{name} no longer holds the portal role Admin in Entra"
        elif not approver.enabled:
            why = f"{name}'s account is disabled in Entra"
        elif is_own_principal(row.decided_by, row.principal_id, row.principal_type, client=client):
            why = f"{name} is now a member of {row.principal_name}"
        if why:
            raise NeedsApproval(
                f"The approval no longer counts ({why}): another Admin must approve the change."
            )

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
