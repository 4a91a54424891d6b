"""Helpdesk action requests as a flow of the durable-request engine (``outbox.engine``).

The engine owns the life of a request; this module supplies what is the helpdesk's own: the
model, the event kinds, the runners (``mfa.runners``), who may decide or cancel, the
execution-time policy check (:meth:`ActionRequestFlow.check_before_write`), and the notice sent
when a request that changed something ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.roles import BULK_APPROVER_ROLES, REQUESTER_ROLES, RESPONDER_ROLES, has_role
from graph.budget import Priority
from mfa import policy
from mfa.models import ActionRequest, Status
from mfa.runners import run_action
from outbox.engine import Run
from outbox.errors import NeedsApproval, NotAllowed, PolicyError
from outbox.flow import EventKinds, Flow, Outcome
from roles.catalog import PAA
from roles.holders import read_portal_roles
from roles.tiering import StaffNow, holds_paa_now, staff_now


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

    def budget_priority(self, row: ActionRequest) -> Priority:
        # One person's part of a bulk operation waits behind every agent's own work.
        return Priority.BULK if row.is_bulk_part else Priority.ACTION

    def check_may_decide(self, approver: Any, row: ActionRequest) -> None:
        policy.check_may_decide(approver, row)

    def check_may_approve(self, approver: Any, row: ActionRequest) -> None:
        # Who may approve whom (a peer never for a peer), and a privileged request whose
        # requester lost PAA (with tiering mirrored) cannot be approved; it may still be
        # rejected or cancelled.
        policy.check_may_approve(approver, row)

    def check_may_take(self, taker: Any, row: ActionRequest) -> None:
        from mfa import escalations

        escalations.check_may_take(taker, row)

    def take_fields(
        self, row: ActionRequest, taker: Any, comment: str, now: datetime
    ) -> dict[str, Any]:
        from mfa import escalations

        return escalations.take_columns(taker, comment, now)

    def on_taken(self, row: ActionRequest) -> None:
        from mfa import escalations

        escalations.on_taken(row)

    def check_before_write(self, run: Run[ActionRequest]) -> None:
        """Just before the first Graph write of every attempt, on Entra as it is now (no cache):

        * the requester still holds a portal role (the portal app's role assignments, not the
          session) and their account is enabled, else PolicyError (failed, refused by policy);
        * the target's tier: when it rose since the tier was decided (a standard person became
          privileged), the request goes back to awaiting approval (NeedsApproval), whatever
          approval it had: an approval for a standard person does not cover a privileged one;
        * with PORTAL_MIRROR_ENTRA_TIERING, on a privileged person the requester still holds
          PAA, else PolicyError;
        * when the request needs an approval now: it has one, and the approver still may give
          it (holds a portal role that may approve this target for this requester, account
          enabled), else back to awaiting approval.
        The tier read now is written with a return to approval, so the next approver decides on
        it.
        """
        row, client = run.row, run.client
        held = read_portal_roles(client)
        requester = staff_now(client, row.requester, portal_roles=held)
        who = row.requester_name
        if row.is_bulk_part:
            self._check_bulk_part(run, requester, held)
            return
        if not requester.holds(*REQUESTER_ROLES):
            raise PolicyError(
                f"{who} no longer holds a helpdesk role in the portal (read from Entra now), so "
                "the request was not run."
            )
        if not requester.enabled:
            raise PolicyError(f"{who}'s account is disabled in Entra, so the request was not run.")
        carriers = requester.roles
        if row.taken_by is not None:
            # An escalation: the PAA holder who took it on carries it (mfa.escalations).
            taker = staff_now(client, row.taken_by, portal_roles=held)
            carriers = carriers | taker.roles
            if not taker.holds(*REQUESTER_ROLES) or not taker.enabled:
                raise PolicyError(
                    f"{row.taken_by_name}, who took the escalation on, no longer holds a "
                    "helpdesk role or is disabled in Entra, so the request was not run."
                )
        profile = policy.target_profile(client, row.target_id, use_cache=False, portal_roles=held)
        reasons = policy.approval_reasons(profile, row.kind, row.params, row.verification)
        updates = policy.target_columns(profile)
        if profile.privileged and not row.is_privileged:
            raise NeedsApproval(
                f"{profile.user.display_name} became privileged after the request was made: "
                + " ".join(reasons),
                updates=updates,
            )
        if (
            settings.PORTAL_MIRROR_ENTRA_TIERING
            and profile.privileged
            and not holds_paa_now(client, row.acting_agent)
        ):
            raise PolicyError(
                f"{row.taken_by_name or who} no longer holds {PAA} in the tenant, so under "
                "Entra's tiering they may not act on this privileged person: the request was "
                "not run."
            )
        if not reasons:
            return
        if row.decided_by is None:
            raise NeedsApproval(" ".join(reasons), updates=updates)
        approver = staff_now(client, row.decided_by, portal_roles=held)
        refusal = policy.approver_refusal(
            approver_roles=approver.roles,
            requester_roles=carriers,
            target_roles=policy.profile_portal_roles(profile),
        )
        if refusal is None and not approver.enabled:
            refusal = f"{row.decided_by_name}'s account is disabled in Entra."
        if refusal:
            raise NeedsApproval(
                f"The approval by {row.decided_by_name} no longer fits: {refusal}",
                updates=updates,
            )

    def _check_bulk_part(
        self, run: Run[ActionRequest], requester: StaffNow, held: Mapping[str, tuple[str, ...]]
    ) -> None:
        """A bulk operation's part (no caller to verify: the operation's starter acts, with its
        approval): the starter still holds Responder or Admin and is enabled; the person's tier
        is read again, and a person who became privileged since the dry run is not acted on
        (PolicyError: retry the operation's failed people after a new dry run); on a privileged
        person, with mirrored tiering, the starter still holds PAA and the operation's approver
        still holds a role that approves bulk operations."""
        row, client = run.row, run.client
        who = row.requester_name
        if not requester.holds(*RESPONDER_ROLES):
            raise PolicyError(
                f"{who} no longer holds the portal role Responder or Admin (read from Entra now), "
                "so this person was not acted on."
            )
        if not requester.enabled:
            raise PolicyError(f"{who}'s account is disabled in Entra, so nothing was done.")
        profile = policy.target_profile(client, row.target_id, use_cache=False, portal_roles=held)
        if not profile.privileged:
            return
        name = profile.user.display_name
        if not row.is_privileged:
            why = "; ".join(profile.reasons)
            raise PolicyError(
                f"{name} became privileged after the dry run ({why}): not acted on without an "
                "approval that covers a privileged person."
            )
        if settings.PORTAL_MIRROR_ENTRA_TIERING and not holds_paa_now(client, row.requester):
            raise PolicyError(
                f"{who} no longer holds {PAA} in the tenant, so {name} (privileged) was not "
                "acted on."
            )
        if row.decided_by is None:
            raise PolicyError(f"{name} is privileged and the operation has no approval.")
        approver = staff_now(client, row.decided_by, portal_roles=held)
        if not approver.holds(*BULK_APPROVER_ROLES) or not approver.enabled:
            raise PolicyError(
                f"{row.decided_by_name}, who approved the operation, no longer holds a role that "
                f"approves it (or is disabled in Entra), so {name} (privileged) was not acted on."
            )

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
