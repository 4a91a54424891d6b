"""Every change of who holds a directory role, and every read of the holders: one function per
state change, each writing its PortalEvent in the same transaction (the habits of mfa.services).

Life of a role change (the same states as a helpdesk action): ``role_change_create`` checks the
rules and records the request (``awaiting_approval`` when granting a role of
``ROLES_REQUIRING_APPROVAL``, else ``pending``) and enqueues ``accounts.role_tasks.role_change_run``
on commit; ``role_change_approve`` / ``_reject`` / ``_cancel`` decide it; the task calls
``role_change_execute``, which claims the row with a conditional UPDATE (``pending``, or
``running`` with a heartbeat older than ``PORTAL_ACTION_LEASE_SECONDS``), re-reads Graph, checks
the guards again, writes once, reads back, and ends ``succeeded`` or ``failed`` with Graph's code,
message and request-id. A write in flight when a worker died is never repeated blindly: the
re-run reads Graph first and finds the assignment already there (or gone).

Throttled and transient Graph errors put the row back to ``pending`` with a visible waiting step;
the task retries after ``Retry-After`` and beat re-dispatches rows no worker picked up.
``role_changes_correlate`` later links each change to Entra's "Add member to role" / "Remove
member from role" (or PIM) event in the audit cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from accounts import role_admin
from accounts.models import (
    HoldKind,
    PrincipalType,
    RoleChange,
    RoleChangeRequest,
    RoleHolderSnapshot,
)
from accounts.role_admin import Holding
from accounts.roles import Role, display_name_of, has_role
from audit.models import PortalEvent
from audit.services import portal_event_record
from graph import GraphClient, Priority
from graph import groups as graph_groups
from graph import roles as graph_roles
from graph import users as graph_users
from graph.errors import GraphBadRequest, GraphError, GraphNotFound, GraphThrottled, GraphTransient
from mfa.models import Status
from mfa.policy import InvalidRequest, NotAllowed, PolicyError, clean_reason, clean_ticket

logger = logging.getLogger(__name__)

ADD_KINDS = (HoldKind.ACTIVE_PERMANENT, HoldKind.ACTIVE_UNTIL, HoldKind.ELIGIBLE_UNTIL)
REMOVE_KINDS = (HoldKind.ACTIVE, HoldKind.ELIGIBLE)
MAX_END_DAYS = 366
COMMENT_MAX_LENGTH = 2000
_FINAL_EVENT: dict[str, str] = {
    Status.SUCCEEDED: PortalEvent.Kind.ROLE_CHANGE_SUCCEEDED,
    Status.FAILED: PortalEvent.Kind.ROLE_CHANGE_FAILED,
}


class RoleChangeDeferred(Exception):
    """Graph asked us to wait: the task retries after ``countdown`` seconds."""

    def __init__(self, countdown: float) -> None:
        self.countdown = countdown
        super().__init__(f"retry in {countdown:.0f} s")


class GuardRefused(NotAllowed):
    """A removal the guards refuse (last Global Administrator, last active PAA holder)."""


def _client(client: GraphClient | None) -> GraphClient:
    if client is not None:
        return client
    from portal.graph_client import get_graph_client

    return get_graph_client()


def _event_fields(row: RoleChangeRequest) -> dict[str, Any]:
    return {
        "target_id": row.principal_id,
        "target_name": row.principal_name,
        "ticket": row.ticket,
    }


def _event_detail(row: RoleChangeRequest, **more: Any) -> dict[str, Any]:
    return {
        "role_change": str(row.public_id),
        "role_change_id": row.pk,
        "change": row.change,
        "role": row.role_name,
        "role_template_id": row.role_template_id,
        "principal_type": row.principal_type,
        "hold_kind": row.hold_kind,
        "ends_at": row.ends_at.isoformat() if row.ends_at else None,
        **more,
    }


def _enqueue(request_id: int) -> None:
    """Send the task (on commit). A broker failure is logged: beat dispatches the row again."""
    from accounts.role_tasks import role_change_run

    try:
        role_change_run.apply_async(args=(request_id,), queue="interactive")
    except Exception:  # any broker failure: the row is the outbox
        logger.warning("could not enqueue role change %s; beat will retry", request_id)


def _enqueue_on_commit(request_id: int) -> None:
    transaction.on_commit(lambda: _enqueue(request_id))


# --- create --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    id: str
    type: str
    name: str
    upn: str


def principal_lookup(client: GraphClient, *, principal_id: str, principal_type: str) -> Principal:
    """The person or role-assignable group ``principal_id`` as Graph names it now.

    Raises InvalidRequest for an unknown person, a guest, or a group that is not role-assignable;
    GraphError for other failures.
    """
    if principal_type == PrincipalType.USER:
        try:
            user = graph_users.get_user(client, principal_id)
        except GraphNotFound:
            raise InvalidRequest("No such person in the directory.") from None
        if user.is_guest:
            raise InvalidRequest("Guests cannot be given administrator roles through the portal.")
        return Principal(user.id, PrincipalType.USER, user.display_name, user.user_principal_name)
    if principal_type == PrincipalType.GROUP:
        for group in graph_groups.list_role_assignable_groups(client):
            if group.id.lower() == principal_id.lower():
                return Principal(group.id, PrincipalType.GROUP, group.display_name or group.id, "")
        raise InvalidRequest("Only a role-assignable group can hold a directory role.")
    raise InvalidRequest("Choose a person or a role-assignable group.")


def _clean_end(hold_kind: str, ends_at: datetime | None, now: datetime) -> datetime | None:
    if hold_kind == HoldKind.ACTIVE_PERMANENT:
        return None
    if ends_at is None:
        raise InvalidRequest("Choose the date the role ends.")
    if timezone.is_naive(ends_at):
        ends_at = timezone.make_aware(ends_at)
    if ends_at <= now + timedelta(minutes=5):
        raise InvalidRequest("The end date must be in the future.")
    if ends_at > now + timedelta(days=MAX_END_DAYS):
        raise InvalidRequest(f"The end date must be within {MAX_END_DAYS} days.")
    return ends_at


def open_removals(role_name: str, holdings: tuple[Holding, ...]) -> list[Holding]:
    """The holdings of ``role_name`` that open removal requests (awaiting approval, pending or
    running) will take away: the guards count them as gone already."""
    open_rows = RoleChangeRequest.objects.open().filter(
        change=RoleChange.REMOVE, role_name=role_name
    )
    wanted = {(r.principal_id.lower(), r.hold_kind) for r in open_rows}
    return [h for h in holdings if (h.principal_id.lower(), h.how) in wanted]


def _find_holding(holdings: tuple[Holding, ...], *, principal_id: str, how: str) -> Holding | None:
    return next(
        (h for h in holdings if h.principal_id.lower() == principal_id.lower() and h.how == how),
        None,
    )


def role_change_create(
    *,
    requester: Any,
    change: str,
    role_name: str,
    principal_id: str,
    principal_type: str,
    hold_kind: str,
    justification: str,
    ticket: str,
    idempotency_key: str,
    ends_at: datetime | None = None,
    http_request: HttpRequest | None = None,
    client: GraphClient | None = None,
) -> RoleChangeRequest:
    """Record a change of who holds ``role_name`` (with its ``role_change_requested`` event) and,
    unless it waits for approval, enqueue its task on commit.

    The same ``idempotency_key`` again returns the request already made. Raises NotAllowed
    (requester not an Admin, a read-only role such as Global Administrator, a change of one's
    own roles), GuardRefused (the removal would leave no active Global Administrator or no active
    PAA holder, counting removals already under way), InvalidRequest (input, unknown person,
    a group that is not role-assignable, already held / not held, another open change of the same
    role and principal) and GraphError from the reads.

    How each kind reaches Entra: active and permanent through ``roleAssignments``; active until a
    date through PIM's ``roleAssignmentScheduleRequests`` (``adminAssign`` with an
    ``afterDateTime`` expiration); eligible until a date through
    ``roleEligibilityScheduleRequests``.
    Removing a time-bound active assignment sends ``adminRemove`` to
    ``roleAssignmentScheduleRequests``; a permanent one is deleted from ``roleAssignments``.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 64:
        raise InvalidRequest("The form is missing its submission token. Reload the page.")
    existing = RoleChangeRequest.objects.filter(idempotency_key=key).first()
    if existing is not None:
        if existing.requester_id != requester.pk:
            raise InvalidRequest("This form was already used. Reload the page and submit again.")
        return existing
    if not has_role(requester, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can change who holds directory roles.")
    if role_name not in role_admin.ROLES_SHOWN:
        raise InvalidRequest("Choose one of the roles listed on the page.")
    if change not in RoleChange.values:
        raise InvalidRequest("Choose to add or to remove a holder.")
    kinds = ADD_KINDS if change == RoleChange.ADD else REMOVE_KINDS
    if hold_kind not in kinds:
        raise InvalidRequest("Choose how the role is held.")
    text = clean_reason(justification)
    clean = clean_ticket(ticket) if change == RoleChange.ADD or ticket.strip() else ""
    requester_oid = role_admin._oid_of(requester).lower()
    if principal_id.lower() == requester_oid:
        raise NotAllowed("You cannot change your own directory roles: ask another Admin.")

    client = _client(client)
    now = timezone.now()
    holdings = role_admin.read_role(client, role_name)
    assignment_id = ""
    if change == RoleChange.REMOVE:
        holding = _find_holding(holdings, principal_id=principal_id, how=hold_kind)
        if holding is None:
            raise InvalidRequest(
                f"This principal holds no {HoldKind(hold_kind).label.lower()} of {role_name} now."
            )
        refusal = role_admin.removal_guard_message(
            holdings, removing=holding, also_removing=open_removals(role_name, holdings)
        )
        if refusal:
            raise GuardRefused(refusal)
        if role_admin.role_is_read_only(role_name):
            raise NotAllowed(f"{role_name} is shown read-only: change it in Entra itself.")
        principal = Principal(
            holding.principal_id,
            PrincipalType.GROUP if holding.is_group else PrincipalType.USER,
            holding.display_name,
            holding.upn,
        )
        assignment_id = holding.assignment_id
        end = None
    else:
        if role_admin.role_is_read_only(role_name):
            raise NotAllowed(f"{role_name} is shown read-only: change it in Entra itself.")
        end = _clean_end(hold_kind, ends_at, now)
        principal = principal_lookup(
            client, principal_id=principal_id, principal_type=principal_type
        )
        how = "eligible" if hold_kind == HoldKind.ELIGIBLE_UNTIL else "active"
        if _find_holding(holdings, principal_id=principal.id, how=how):
            raise InvalidRequest(f"{principal.name} already holds {role_name} that way.")

    needs_approval = change == RoleChange.ADD and role_admin.role_needs_approval(role_name)
    try:
        with transaction.atomic():
            row = RoleChangeRequest.objects.create(
                change=change,
                status=Status.AWAITING_APPROVAL if needs_approval else Status.PENDING,
                role_template_id=role_admin.role_template(role_name),
                role_name=role_name,
                principal_id=principal.id,
                principal_type=principal.type,
                principal_name=principal.name,
                principal_upn=principal.upn,
                hold_kind=hold_kind,
                ends_at=end,
                assignment_id=assignment_id,
                justification=text,
                ticket=clean,
                requester=requester,
                requester_name=display_name_of(requester),
                needs_approval=needs_approval,
                idempotency_key=key,
                open_slot=f"{role_admin.role_template(role_name)}:{principal.id.lower()}",
                created_at=now,
                enqueued_at=None if needs_approval else now,
            )
            portal_event_record(
                kind=PortalEvent.Kind.ROLE_CHANGE_REQUESTED,
                actor=requester,
                request=http_request,
                new_value={"status": row.status},
                detail=_event_detail(
                    row,
                    justification=text,
                    needs_approval=needs_approval,
                    assignment_id=assignment_id,
                ),
                **_event_fields(row),
            )
            if not needs_approval:
                _enqueue_on_commit(row.pk)
    except IntegrityError:
        again = RoleChangeRequest.objects.filter(idempotency_key=key).first()
        if again is not None and again.requester_id == requester.pk:
            return again
        busy = RoleChangeRequest.objects.filter(
            open_slot=f"{role_admin.role_template(role_name)}:{principal.id.lower()}"
        ).first()
        who = busy.requester_name if busy else "Someone"
        raise InvalidRequest(
            f"{who} already has an open change of {role_name} for {principal.name}: wait for it "
            "to finish."
        ) from None
    return row


# --- decisions -----------------------------------------------------------------------------------


def role_change_check_may_decide(approver: Any, row: RoleChangeRequest) -> None:
    """Raises NotAllowed unless ``approver`` is an Admin who neither asked for the change nor is
    the person it gives the role to."""
    if not has_role(approver, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can approve or reject role changes.")
    if approver.pk == row.requester_id:
        raise NotAllowed(
            "You cannot approve or reject your own change: another Admin must decide it."
        )
    if role_admin._oid_of(approver).lower() == row.principal_id.lower():
        raise NotAllowed("You cannot decide a change of your own directory roles.")


def _expire_if_due(row: RoleChangeRequest, now: datetime) -> bool:
    if row.status != Status.AWAITING_APPROVAL or now <= row.approval_expires_at():
        return False
    with transaction.atomic():
        done = RoleChangeRequest.objects.filter(pk=row.pk, status=Status.AWAITING_APPROVAL).update(
            status=Status.EXPIRED, finished_at=now, open_slot=None, updated_at=now
        )
        if done:
            portal_event_record(
                kind=PortalEvent.Kind.ROLE_CHANGE_EXPIRED,
                old_value={"status": Status.AWAITING_APPROVAL},
                new_value={"status": Status.EXPIRED},
                detail=_event_detail(row),
                **_event_fields(row),
            )
    row.refresh_from_db()
    return bool(done)


def _decide(
    *,
    row: RoleChangeRequest,
    approver: Any,
    comment: str,
    approve: bool,
    http_request: HttpRequest | None,
) -> RoleChangeRequest:
    role_change_check_may_decide(approver, row)
    text = (comment or "").strip()
    if len(text) > COMMENT_MAX_LENGTH:
        raise InvalidRequest(f"The comment is longer than {COMMENT_MAX_LENGTH} characters.")
    if not approve and not text:
        raise InvalidRequest("Say why you reject the change: the requester will read it.")
    now = timezone.now()
    row = RoleChangeRequest.objects.get(pk=row.pk)
    if _expire_if_due(row, now):
        raise InvalidRequest(
            f"This change waited longer than {settings.PORTAL_APPROVAL_TTL_MINUTES} minutes for "
            "approval and has expired."
        )
    new_status = Status.PENDING if approve else Status.REJECTED
    changes: dict[str, Any] = {
        "status": new_status,
        "decided_by": approver,
        "decided_by_name": display_name_of(approver),
        "decision_comment": text,
        "decided_at": now,
        "updated_at": now,
    }
    if approve:
        changes["enqueued_at"] = now
    else:
        changes.update(finished_at=now, open_slot=None)
    with transaction.atomic():
        done = RoleChangeRequest.objects.filter(pk=row.pk, status=Status.AWAITING_APPROVAL).update(
            **changes
        )
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(
                f"This change is already {row.get_status_display().lower()}: nothing to decide."
            )
        portal_event_record(
            kind=PortalEvent.Kind.ROLE_CHANGE_APPROVED
            if approve
            else PortalEvent.Kind.ROLE_CHANGE_REJECTED,
            actor=approver,
            request=http_request,
            old_value={"status": Status.AWAITING_APPROVAL},
            new_value={"status": new_status},
            detail=_event_detail(row, comment=text, requester=row.requester_name),
            **_event_fields(row),
        )
        if approve:
            _enqueue_on_commit(row.pk)
    row.refresh_from_db()
    return row


def role_change_approve(
    *,
    role_change: RoleChangeRequest,
    approver: Any,
    comment: str = "",
    http_request: HttpRequest | None = None,
) -> RoleChangeRequest:
    """Approve a change ``awaiting_approval``: it becomes ``pending`` and its task is enqueued on
    commit. Raises NotAllowed (not an Admin; the requester; the person the role is for) or
    InvalidRequest (not awaiting approval, expired)."""
    return _decide(
        row=role_change,
        approver=approver,
        comment=comment,
        approve=True,
        http_request=http_request,
    )


def role_change_reject(
    *,
    role_change: RoleChangeRequest,
    approver: Any,
    comment: str,
    http_request: HttpRequest | None = None,
) -> RoleChangeRequest:
    """Reject a change ``awaiting_approval`` (a comment is required). Same rules as approve."""
    return _decide(
        row=role_change,
        approver=approver,
        comment=comment,
        approve=False,
        http_request=http_request,
    )


def role_change_cancel(
    *, role_change: RoleChangeRequest, by: Any, http_request: HttpRequest | None = None
) -> RoleChangeRequest:
    """Cancel a change that has not started (``awaiting_approval`` or ``pending``). Any Admin
    may. Raises NotAllowed or InvalidRequest (already running or finished)."""
    if not has_role(by, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can cancel role changes.")
    now = timezone.now()
    with transaction.atomic():
        old = RoleChangeRequest.objects.get(pk=role_change.pk).status
        done = RoleChangeRequest.objects.filter(
            pk=role_change.pk, status__in=(Status.AWAITING_APPROVAL, Status.PENDING)
        ).update(status=Status.CANCELLED, finished_at=now, open_slot=None, updated_at=now)
        if not done:
            role_change.refresh_from_db()
            raise InvalidRequest(
                f"This change is {role_change.get_status_display().lower()}: it can no longer be "
                "cancelled."
            )
        portal_event_record(
            kind=PortalEvent.Kind.ROLE_CHANGE_CANCELLED,
            actor=by,
            request=http_request,
            old_value={"status": old},
            new_value={"status": Status.CANCELLED},
            detail=_event_detail(role_change),
            **_event_fields(role_change),
        )
    role_change.refresh_from_db()
    return role_change


# --- execution -----------------------------------------------------------------------------------


class _LeaseLost(Exception):
    """Another worker claimed the row after this one's lease ran out."""


@dataclass
class _Run:
    row: RoleChangeRequest
    client: GraphClient
    token: int  # ``attempts`` after our claim: writes are fenced on it

    def _fenced(self) -> Any:
        return RoleChangeRequest.objects.filter(
            pk=self.row.pk, status=Status.RUNNING, attempts=self.token
        )

    def save(self) -> None:
        now = timezone.now()
        done = self._fenced().update(
            steps=self.row.steps,
            pending_writes=self.row.pending_writes,
            graph_object_id=self.row.graph_object_id,
            heartbeat_at=now,
            updated_at=now,
        )
        if not done:
            raise _LeaseLost()

    def step(self, text: str, *, state: str = "running", detail: str = "") -> int:
        self.row.steps = [
            *self.row.steps,
            {"at": timezone.now().isoformat(), "text": text, "state": state, "detail": detail},
        ]
        self.save()
        return len(self.row.steps) - 1

    def step_end(self, index: int, *, state: str, suffix: str, detail: str = "") -> None:
        steps = [dict(s) for s in self.row.steps]
        steps[index]["text"] = f"{steps[index]['text']} {suffix}".strip()
        steps[index]["state"] = state
        if detail:
            steps[index]["detail"] = detail
        self.row.steps = steps
        self.save()

    def write_begin(self, key: str) -> None:
        self.row.pending_writes = {**self.row.pending_writes, key: timezone.now().isoformat()}
        self.save()

    def write_end(self, key: str) -> None:
        pending = dict(self.row.pending_writes)
        pending.pop(key, None)
        self.row.pending_writes = pending

    def in_flight(self, key: str) -> bool:
        return key in self.row.pending_writes


@dataclass(frozen=True)
class _Outcome:
    status: str
    error: GraphError | None = None
    error_code: str = ""
    error_message: str = ""


def _claim(request_id: int) -> RoleChangeRequest | None:
    now = timezone.now()
    lease_cutoff = now - timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS)
    claimable = Q(status=Status.PENDING) | Q(status=Status.RUNNING, heartbeat_at__lt=lease_cutoff)
    with transaction.atomic():
        before = (
            RoleChangeRequest.objects.filter(pk=request_id).values_list("status", flat=True).first()
        )
        if before is None:
            return None
        done = RoleChangeRequest.objects.filter(claimable, pk=request_id).update(
            status=Status.RUNNING,
            started_at=Coalesce(F("started_at"), now),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if not done:
            return None
        row = RoleChangeRequest.objects.get(pk=request_id)
        portal_event_record(
            kind=PortalEvent.Kind.ROLE_CHANGE_STARTED,
            old_value={"status": before},
            new_value={"status": Status.RUNNING},
            detail=_event_detail(row, attempt=row.attempts),
            **_event_fields(row),
        )
    return row


def role_change_execute(*, request_id: int) -> None:
    """Run role change ``request_id`` if it can be claimed (see the module docstring).

    Returns quietly when there is nothing to claim or the lease was lost. Raises
    RoleChangeDeferred when Graph throttled or failed transiently and attempts remain. Never
    leaves the row ``running`` on an exception it can catch.
    """
    row = _claim(request_id)
    if row is None:
        logger.info("role change %s: nothing to claim", request_id)
        return
    from portal.graph_client import get_graph_client

    run = _Run(row=row, client=get_graph_client(), token=row.attempts)
    try:
        outcome = _run_add(run) if row.change == RoleChange.ADD else _run_remove(run)
    except _LeaseLost:
        logger.warning("role change %s: lease lost", request_id)
        return
    except (GraphThrottled, GraphTransient) as exc:
        _defer_or_fail(run, exc)
        return
    except GraphError as exc:
        outcome = _Outcome(Status.FAILED, error=exc)
    except PolicyError as exc:
        outcome = _Outcome(Status.FAILED, error_code="GuardRefused", error_message=exc.message)
    except Exception as exc:
        logger.exception("role change %s failed unexpectedly", request_id)
        outcome = _Outcome(
            Status.FAILED,
            error_code="UnexpectedError",
            error_message=f"The portal hit an unexpected error ({type(exc).__name__}); an "
            "administrator can find the details in the worker log.",
        )
    try:
        _finish(run, outcome)
    except _LeaseLost:
        logger.warning("role change %s: lease lost before finishing", request_id)


def _graph_detail(exc: GraphError) -> str:
    return f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})"


def _run_add(run: _Run) -> _Outcome:
    row = run.row
    client = run.client
    definition = role_admin.role_definition_id(client, row.role_name)
    eligible = row.hold_kind == HoldKind.ELIGIBLE_UNTIL
    key = "eligibility" if eligible else "assignment"
    index = run.step(f"Reading who holds {row.role_name}…")
    holdings = role_admin.read_role(client, row.role_name)
    how = "eligible" if eligible else "active"
    present = _find_holding(holdings, principal_id=row.principal_id, how=how)
    run.step_end(index, state="done", suffix="done")
    if present is not None:
        if run.in_flight(key):
            # Our own write landed before the worker stopped: do not send it again.
            run.write_end(key)
            row.graph_object_id = present.assignment_id or present.schedule_id
            run.step("The change had already reached Entra", state="done")
            return _Outcome(Status.SUCCEEDED)
        run.step(f"{row.principal_name} already holds {row.role_name} that way", state="failed")
        return _Outcome(
            Status.FAILED,
            error_code="AlreadyHeld",
            error_message=f"{row.principal_name} already holds {row.role_name} that way.",
        )
    if eligible:
        assert row.ends_at is not None
        index = run.step(
            f"Making {row.principal_name} eligible for {row.role_name} until "
            f"{timezone.localtime(row.ends_at):%d %b %Y %H:%M} (PIM)…"
        )
    elif row.hold_kind == HoldKind.ACTIVE_UNTIL:
        assert row.ends_at is not None
        index = run.step(
            f"Assigning {row.role_name} to {row.principal_name} (active until "
            f"{timezone.localtime(row.ends_at):%d %b %Y %H:%M}, PIM)…"
        )
    else:
        index = run.step(f"Assigning {row.role_name} to {row.principal_name} (active, permanent)…")
    run.write_begin(key)
    try:
        if eligible:
            result = graph_roles.create_role_eligibility_schedule_request(
                client,
                action="adminAssign",
                role_definition_id=definition,
                principal_id=row.principal_id,
                justification=_graph_justification(row),
                start=timezone.now(),
                end=row.ends_at,
            )
            row.graph_object_id = result.id
        elif row.hold_kind == HoldKind.ACTIVE_UNTIL:
            request = graph_roles.create_role_assignment_schedule_request(
                client,
                action="adminAssign",
                role_definition_id=definition,
                principal_id=row.principal_id,
                justification=_graph_justification(row),
                start=timezone.now(),
                end=row.ends_at,
            )
            row.graph_object_id = request.id
        else:
            assignment = graph_roles.create_role_assignment(
                client, role_definition_id=definition, principal_id=row.principal_id
            )
            row.graph_object_id = assignment.id
    except GraphTransient as exc:
        if exc.code != "OutcomeUnknown":
            run.write_end(key)
        run.save()
        raise  # OutcomeUnknown stays in flight: the re-run reads Graph first
    except GraphError as exc:
        run.write_end(key)
        run.step_end(index, state="failed", suffix="failed", detail=_graph_detail(exc))
        return _Outcome(Status.FAILED, error=exc)
    run.write_end(key)
    run.step_end(index, state="done", suffix="done")
    return _verify(run, expect_present=True)


def _run_remove(run: _Run) -> _Outcome:
    row = run.row
    client = run.client
    key = "removal"
    index = run.step(f"Reading who holds {row.role_name}…")
    holdings = role_admin.read_role(client, row.role_name)
    holding = _find_holding(holdings, principal_id=row.principal_id, how=row.hold_kind)
    run.step_end(index, state="done", suffix="done")
    if holding is None:
        if run.in_flight(key):
            run.write_end(key)
            run.step("The removal had already reached Entra", state="done")
            return _Outcome(Status.SUCCEEDED)
        run.step(f"{row.principal_name} no longer holds it: nothing to remove", state="done")
        return _Outcome(Status.SUCCEEDED)
    # The guards again, on what Graph says now: other changes may have run since the request.
    others = [
        h
        for h in open_removals(row.role_name, holdings)
        if h.principal_id.lower() != row.principal_id.lower()
    ]
    refusal = role_admin.removal_guard_message(holdings, removing=holding, also_removing=others)
    if refusal:
        run.step("Refused by the portal's guard", state="failed", detail=refusal)
        return _Outcome(Status.FAILED, error_code="GuardRefused", error_message=refusal)
    index = run.step(f"Removing {row.principal_name} from {row.role_name}…")
    run.write_begin(key)
    try:
        if holding.is_time_bound_active:
            # Made through PIM: taken away through PIM too, so PIM's schedule ends with it and
            # Entra's audit says "Remove member from role in PIM completed (timebound)".
            request = graph_roles.create_role_assignment_schedule_request(
                client,
                action="adminRemove",
                role_definition_id=role_admin.role_definition_id(client, row.role_name),
                principal_id=row.principal_id,
                justification=_graph_justification(row),
            )
            row.graph_object_id = request.id
        elif row.hold_kind == HoldKind.ACTIVE:
            graph_roles.delete_role_assignment(client, holding.assignment_id)
            row.graph_object_id = holding.assignment_id
        else:
            result = graph_roles.create_role_eligibility_schedule_request(
                client,
                action="adminRemove",
                role_definition_id=role_admin.role_definition_id(client, row.role_name),
                principal_id=row.principal_id,
                justification=_graph_justification(row),
                start=timezone.now(),
            )
            row.graph_object_id = result.id
    except GraphNotFound:
        pass  # gone already: an earlier attempt's answer was lost
    except GraphBadRequest as exc:
        if exc.code != "RoleAssignmentDoesNotExist":
            run.write_end(key)
            run.step_end(index, state="failed", suffix="failed", detail=_graph_detail(exc))
            return _Outcome(Status.FAILED, error=exc)
    except GraphTransient as exc:
        if exc.code != "OutcomeUnknown":
            run.write_end(key)
        run.save()
        raise
    except GraphError as exc:
        run.write_end(key)
        run.step_end(index, state="failed", suffix="failed", detail=_graph_detail(exc))
        return _Outcome(Status.FAILED, error=exc)
    run.write_end(key)
    run.step_end(index, state="done", suffix="done")
    return _verify(run, expect_present=False)


def _verify(run: _Run, *, expect_present: bool) -> _Outcome:
    row = run.row
    how = "eligible" if row.hold_kind in (HoldKind.ELIGIBLE_UNTIL, HoldKind.ELIGIBLE) else "active"
    index = run.step("Checking the change in Entra…")
    holdings = role_admin.read_role(run.client, row.role_name)
    present = _find_holding(holdings, principal_id=row.principal_id, how=how)
    if (present is not None) == expect_present:
        detail = ""
        if present is not None and present.end is not None:
            until = "Active" if present.how == "active" else "Eligible"
            detail = f"{until} until {timezone.localtime(present.end):%d %b %Y %H:%M}."
        if present is not None and present.is_group:
            names = ", ".join(m.display_name for m in present.members) or "no members yet"
            detail = (detail + " " if detail else "") + f"Members who now hold it: {names}."
        run.step_end(index, state="done", suffix="done", detail=detail)
        return _Outcome(Status.SUCCEEDED)
    run.step_end(index, state="failed", suffix="not as expected")
    return _Outcome(
        Status.FAILED,
        error_code="NotApplied",
        error_message="Graph accepted the change but does not show it yet.",
    )


def _graph_justification(row: RoleChangeRequest) -> str:
    ticket = f"{row.ticket}: " if row.ticket else ""
    return f"{ticket}{row.justification} (via MFA helpdesk portal, {row.requester_name})"[:500]


def _defer_or_fail(run: _Run, exc: GraphError) -> None:
    row = run.row
    if row.attempts >= settings.PORTAL_ACTION_MAX_ATTEMPTS:
        try:
            _finish(run, _Outcome(Status.FAILED, error=exc))
        except _LeaseLost:
            pass
        return
    retry_after = getattr(exc, "retry_after", None)
    countdown = max(1.0, float(retry_after) if retry_after else float(min(60, 5 * row.attempts)))
    now = timezone.now()
    steps = [{**s, "state": "waiting"} if s.get("state") == "running" else s for s in row.steps]
    steps.append(
        {
            "at": now.isoformat(),
            "text": f"Waiting for Graph, retrying in {countdown:.0f} s",
            "state": "waiting",
            "detail": _graph_detail(exc),
        }
    )
    with transaction.atomic():
        done = run._fenced().update(
            status=Status.PENDING,
            steps=steps,
            pending_writes=row.pending_writes,
            enqueued_at=now + timedelta(seconds=countdown),
            heartbeat_at=now,
            updated_at=now,
        )
        if not done:
            return
        portal_event_record(
            kind=PortalEvent.Kind.ROLE_CHANGE_RETRY_SCHEDULED,
            detail=_event_detail(
                row,
                attempt=row.attempts,
                countdown_seconds=countdown,
                graph_code=exc.code,
                graph_request_id=exc.request_id or "",
            ),
            **_event_fields(row),
        )
    raise RoleChangeDeferred(countdown)


def _finish(run: _Run, outcome: _Outcome) -> None:
    row = run.row
    now = timezone.now()
    code, message, request_id = outcome.error_code, outcome.error_message, ""
    if outcome.error is not None:
        code, message = outcome.error.code, outcome.error.message
        request_id = outcome.error.request_id or ""
    with transaction.atomic():
        done = run._fenced().update(
            status=outcome.status,
            steps=row.steps,
            pending_writes=row.pending_writes,
            graph_object_id=row.graph_object_id,
            error_code=code[:128],
            error_message=message,
            error_request_id=request_id[:64],
            finished_at=now,
            heartbeat_at=now,
            open_slot=None,
            updated_at=now,
        )
        if not done:
            raise _LeaseLost()
        portal_event_record(
            kind=_FINAL_EVENT[outcome.status],
            old_value={"status": Status.RUNNING},
            new_value={"status": outcome.status},
            detail=_event_detail(
                row,
                graph_object_id=row.graph_object_id,
                graph_code=code,
                graph_message=message,
                graph_request_id=request_id,
            ),
            **_event_fields(row),
        )
        if outcome.status == Status.SUCCEEDED:
            people = [row.principal_id]
            principal_type = row.principal_type
            transaction.on_commit(lambda: _after_change(people, principal_type))


def _after_change(principal_ids: list[str], principal_type: str) -> None:
    """After a role changed: forget cached answers about the people concerned and read the
    holders again, so the page, tiering and the person pages see the new state."""
    from mfa.policy import target_profile_forget

    people = list(principal_ids)
    if principal_type == PrincipalType.GROUP:
        try:
            people += [
                m.id
                for m in graph_groups.list_transitive_members(_client(None), principal_ids[0])
                if m.is_user
            ]
        except GraphError:
            logger.warning("could not list the members of group %s", principal_ids[0])
    role_admin.paa_cache_forget(people)
    for person in people:
        target_profile_forget(person)
    role_holders_refresh_request(trigger="change")


# --- beat ----------------------------------------------------------------------------------------


def role_changes_redispatch() -> int:
    """Enqueue again the changes no worker picked up (``pending`` for longer than
    ``PORTAL_REDISPATCH_AFTER_SECONDS``, or ``running`` with a lapsed lease); expire approvals
    older than ``PORTAL_APPROVAL_TTL_MINUTES``. Returns how many were dispatched."""
    now = timezone.now()
    for row in RoleChangeRequest.objects.filter(status=Status.AWAITING_APPROVAL):
        _expire_if_due(row, now)
    cutoff = now - timedelta(seconds=settings.PORTAL_REDISPATCH_AFTER_SECONDS)
    lease_cutoff = now - timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS)
    stale = RoleChangeRequest.objects.filter(
        Q(status=Status.PENDING, enqueued_at__lt=cutoff)
        | Q(status=Status.PENDING, enqueued_at__isnull=True)
        | Q(status=Status.RUNNING, heartbeat_at__lt=lease_cutoff)
    ).values_list("pk", "status", "enqueued_at")
    count = 0
    for pk, status, enqueued_at in stale:
        with transaction.atomic():
            done = RoleChangeRequest.objects.filter(
                pk=pk, status=status, enqueued_at=enqueued_at
            ).update(enqueued_at=now, updated_at=now)
            if done:
                _enqueue_on_commit(pk)
                count += 1
    return count


# --- reading the holders -------------------------------------------------------------------------


def role_holders_refresh_request(
    *, trigger: str, by: Any = None, http_request: HttpRequest | None = None
) -> RoleHolderSnapshot:
    """Queue a read of every holder (a ``RoleHolderSnapshot`` row, enqueued on commit): on the
    ``interactive`` queue and priority when a person asked (``trigger`` "button" or "change"),
    on ``sync`` for the schedule. A read already queued or running is returned instead."""
    running = role_admin.refresh_in_progress()
    if running is not None:
        return running
    with transaction.atomic():
        snapshot = RoleHolderSnapshot.objects.create(
            trigger=trigger, requested_by=by if getattr(by, "pk", None) else None
        )
        priority = Priority.SYNC if trigger == "schedule" else Priority.INTERACTIVE
        pk = snapshot.pk

        def send() -> None:
            from accounts.role_tasks import role_holders_refresh

            queue = "sync" if priority == Priority.SYNC else "interactive"
            try:
                role_holders_refresh.apply_async(args=(pk, str(priority)), queue=queue)
            except Exception:  # a broker failure: the next schedule reads again
                logger.warning("could not enqueue role holder refresh %s", pk)

        transaction.on_commit(send)
    return snapshot


def role_holders_refresh(*, snapshot_id: int, priority: str = Priority.SYNC) -> RoleHolderSnapshot:
    """Read every holder through Graph at ``priority`` (the shared budget serves ``interactive``
    first), store them in snapshot ``snapshot_id`` and record ``role_holders_refreshed``; then
    link finished role changes to Entra's audit events. A snapshot another worker already took
    is returned untouched. A Graph failure is stored on the snapshot (``failed``)."""
    with transaction.atomic():
        taken = RoleHolderSnapshot.objects.filter(
            pk=snapshot_id, state=RoleHolderSnapshot.State.PENDING
        ).update(state=RoleHolderSnapshot.State.RUNNING)
    snapshot = RoleHolderSnapshot.objects.get(pk=snapshot_id)
    if not taken:
        return snapshot
    client = _client(None).with_priority(priority)
    try:
        holders = role_admin.read_role_holders(client)
    except GraphError as exc:
        RoleHolderSnapshot.objects.filter(pk=snapshot_id).update(
            state=RoleHolderSnapshot.State.FAILED,
            finished_at=timezone.now(),
            error_code=exc.code[:128],
            error_message=exc.message,
            error_request_id=(exc.request_id or "")[:64],
        )
        snapshot.refresh_from_db()
        return snapshot
    counts = {name: len(role_admin.all_people(holders.of(name))) for name in holders.roles}
    with transaction.atomic():
        RoleHolderSnapshot.objects.filter(pk=snapshot_id).update(
            state=RoleHolderSnapshot.State.DONE,
            finished_at=timezone.now(),
            holders=holders.as_json(),
        )
        portal_event_record(
            kind=PortalEvent.Kind.ROLE_HOLDERS_REFRESHED,
            actor=snapshot.requested_by,
            detail={"trigger": snapshot.trigger, "priority": str(priority), "people": counts},
        )
    # Keep a day of reads: the page needs only the newest, the history lives in PortalEvents.
    RoleHolderSnapshot.objects.filter(created_at__lt=timezone.now() - timedelta(days=1)).delete()
    role_changes_correlate()
    snapshot.refresh_from_db()
    return snapshot


# --- correlation with Entra's audit --------------------------------------------------------------

_CORRELATION_WINDOW = timedelta(minutes=10)


def role_changes_correlate(*, since_days: int = 30) -> int:
    """Link finished role changes to Entra's events for them in the audit cache
    (``audit.models.DirectoryAuditRecord``): "Add member to role" / "Remove member from role" or
    the PIM activities, naming the same principal and role, initiated by the portal's app, from
    the change's start to ten minutes after it finished. A linked Entra event is not "outside the
    portal" (its ``outside_portal`` is cleared). Returns how many changes were linked, each with a
    ``role_change_linked`` event."""
    from audit.models import DirectoryAuditRecord

    since = timezone.now() - timedelta(days=since_days)
    rows = RoleChangeRequest.objects.filter(
        status=Status.SUCCEEDED, entra_event_ids=[], finished_at__gte=since
    ).exclude(started_at=None)
    linked_ids = {
        i
        for ids in RoleChangeRequest.objects.exclude(entra_event_ids=[]).values_list(
            "entra_event_ids", flat=True
        )
        for i in ids or ()
    }
    count = 0
    for row in rows:
        activities = (
            role_admin.ADD_ACTIVITIES
            if row.change == RoleChange.ADD
            else role_admin.REMOVE_ACTIVITIES
        )
        assert row.started_at is not None and row.finished_at is not None
        candidates = DirectoryAuditRecord.objects.filter(
            activity__in=activities,
            activity_at__gte=row.started_at - timedelta(seconds=5),
            activity_at__lte=row.finished_at + _CORRELATION_WINDOW,
            initiated_by_app_id__iexact=settings.ENTRA_CLIENT_ID,
        ).order_by("activity_at")
        wanted = {row.principal_id.lower(), row.role_template_id.lower()}
        match = next(
            (
                c
                for c in candidates
                if c.entra_id not in linked_ids
                and wanted <= {str(i).lower() for i in c.target_ids or ()}
            ),
            None,
        )
        if match is None:
            continue
        with transaction.atomic():
            done = RoleChangeRequest.objects.filter(pk=row.pk, entra_event_ids=[]).update(
                entra_event_ids=[match.entra_id]
            )
            if not done:
                continue
            DirectoryAuditRecord.objects.filter(pk=match.pk).update(outside_portal=False)
            portal_event_record(
                kind=PortalEvent.Kind.ROLE_CHANGE_LINKED,
                detail=_event_detail(
                    row,
                    entra_id=match.entra_id,
                    entra_activity=match.activity,
                    entra_activity_at=match.activity_at.isoformat(),
                ),
                **_event_fields(row),
            )
        linked_ids.add(match.entra_id)
        count += 1
    return count
