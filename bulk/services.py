"""Every change to a bulk operation: one function per state change, each writing its PortalEvent
in the same transaction (as ``mfa.services``).

``plan`` runs and stores the dry run (a ``draft``: never enqueued); ``confirm`` sends it to
approval or to the queue; ``approve`` / ``reject`` are the engine's decisions; ``pause``,
``resume``, ``cancel`` and ``retry_failed`` steer it; ``export_rows`` gives its results. The
runner (``bulk.runner``) works through the people on the ``bulk`` queue.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import BULK_APPROVER_ROLES, RESPONDER_ROLES, Role, display_name_of, has_role
from audit.models import PortalEvent
from audit.services import portal_event_record
from bulk import dry_run
from bulk.errors import BulkError, BulkNotAllowed, PlanRefused
from bulk.flow import BULK_OPERATIONS, operation_detail
from bulk.models import (
    DRAFT,
    BulkAction,
    BulkItem,
    BulkOperation,
    ItemState,
    Refusal,
    Source,
    counters,
)
from bulk.results import EXPORT_HEADER, eta_seconds, export_rows
from graph import Priority
from graph.budget import BudgetRate
from graph.errors import GraphThrottled, GraphTransient
from mfa import policy
from mfa.models import Tier
from outbox import decisions
from outbox.errors import InvalidRequest, NotAllowed, PolicyError
from outbox.flow import enqueue_on_commit, needs_queue
from outbox.states import CANCELLABLE_STATUSES, STATUS_PHRASES, Status
from roles.tiering import agent_holds_paa, oid_of

__all__ = [
    "EXPORT_HEADER",
    "BulkError",
    "BulkNotAllowed",
    "PlanRefused",
    "approve",
    "cancel",
    "confirm",
    "confirm_person",
    "eta_seconds",
    "export_rows",
    "may_approve",
    "may_start",
    "may_steer",
    "pause",
    "plan",
    "reject",
    "resume",
    "retry_failed",
]

# A paused operation is ``pending`` with its next dispatch this far ahead: beat leaves it alone
# until ``resume`` dispatches it (the engine has no paused state).
PAUSED_DISPATCH_DELAY = timedelta(days=3650)


F_ = TypeVar("F_", bound=Callable[..., Any])


def _sentences(service: F_) -> F_:
    """A service's refusals become BulkError (NotAllowed: BulkNotAllowed) with the sentence the
    person reads; Graph busy while reading becomes one too."""

    @functools.wraps(service)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return service(*args, **kwargs)
        except NotAllowed as exc:
            raise BulkNotAllowed(exc.message) from None
        except PolicyError as exc:
            raise BulkError(exc.message) from None
        except (GraphThrottled, GraphTransient):
            raise BulkError(
                "Microsoft Graph is busy or unavailable right now, so nothing was stored. Try "
                "again in a minute."
            ) from None

    return wrapper  # type: ignore[return-value]


def _event(
    kind: str, op: BulkOperation, *, actor: Any, request: HttpRequest | None, **more: Any
) -> None:
    portal_event_record(
        kind=PortalEvent.Kind(kind).value,
        actor=actor,
        request=request,
        detail=operation_detail(op, **more),
        **BULK_OPERATIONS.event_fields(op),
    )


# --- who -----------------------------------------------------------------------------------------


def may_start(user: Any) -> bool:
    """Whether ``user`` may start bulk operations (a Responder or an Admin)."""
    return has_role(user, *RESPONDER_ROLES)


def may_approve(user: Any, op: BulkOperation) -> bool:
    """Whether ``user`` may approve or reject ``op`` now (a Lead, Responder or Admin; never
    the starter)."""
    return (
        op.status == Status.AWAITING_APPROVAL
        and user.pk != op.requester_id
        and has_role(user, *BULK_APPROVER_ROLES)
    )


def may_steer(user: Any, op: BulkOperation) -> bool:
    """Whether ``user`` may pause, resume, cancel or retry ``op``: its starter, or a Lead,
    Responder or Admin."""
    return user.pk == op.requester_id or has_role(user, *BULK_APPROVER_ROLES)


def _check_steer(user: Any, op: BulkOperation) -> None:
    if not may_steer(user, op):
        raise NotAllowed("Only the starter, a Lead, a Responder or an Admin can do this.")


# --- the dry run ---------------------------------------------------------------------------------


def _clean_actions(actions: Sequence[str]) -> list[str]:
    chosen = {str(a) for a in actions}
    unknown = chosen - set(BulkAction.values)
    if unknown:
        raise InvalidRequest(f"Unknown action: {', '.join(sorted(unknown))}.")
    ordered = [a for a in BulkAction.values if a in chosen]  # revoke first, then reregister
    if not ordered:
        raise InvalidRequest("Choose at least one action.")
    return ordered


def _graph_client(starter: Any) -> Any:
    from portal.graph_client import get_graph_client

    return get_graph_client().with_priority(Priority.INTERACTIVE).for_agent(oid_of(starter))


@_sentences
@needs_queue
def plan(
    *,
    starter: Any,
    people: Sequence[str] | None,
    group_id: str | None,
    actions: Sequence[str],
    reason: str,
    ticket: str,
    notify: bool,
    source_label: str,
    source: str = "",
    http_request: HttpRequest | None = None,
) -> BulkOperation:
    """Run the dry run and store it as a ``draft`` operation (nothing is enqueued until
    :func:`confirm`). ``people``: UPNs or object ids (pasted, or read from a CSV with
    ``dry_run.parse_csv``; ``source`` "paste" or "csv"), or ``group_id``: a group whose
    transitive members are the people. Raises NotAllowed (not a Responder or Admin),
    InvalidRequest (reason, ticket, actions, nobody named) or PlanRefused (more than
    PORTAL_BULK_MAX_PEOPLE, no such group): nothing is stored then."""
    if not may_start(starter):
        raise NotAllowed("Only a Responder or an Admin can start a bulk operation.")
    clean_actions = _clean_actions(actions)
    clean_reason = policy.clean_reason(reason)
    clean_ticket = policy.clean_ticket(ticket)
    client = _graph_client(starter)
    if group_id:
        asked = dry_run.group_members(client, group_id.strip())
        kind = Source.GROUP
    else:
        asked = [p.strip() for p in people or () if p and p.strip()]
        kind = Source.CSV if source == Source.CSV else Source.PASTE
    if not asked:
        raise InvalidRequest("Name at least one person (UPN or object id).")
    limit = int(settings.PORTAL_BULK_MAX_PEOPLE)
    if len(asked) > limit:
        raise PlanRefused(
            f"{len(asked):,} people named: one bulk operation may name at most {limit:,} "
            "(PORTAL_BULK_MAX_PEOPLE). Split the list; nothing was stored."
        )
    result = dry_run.run(
        client,
        starter_oid=oid_of(starter),
        starter_holds_paa=agent_holds_paa(starter),
        asked=asked,
    )
    summary = _summary(result.people, clean_actions)
    summary["methods_note"] = result.summary["methods_note"]
    summary["dry_run_calls"] = {"reports": result.summary["reports"]}
    now = timezone.now()
    label = (source_label or "").strip()[:256] or (
        f"{len(asked)} pasted" if kind == Source.PASTE else kind.label
    )
    with transaction.atomic():
        op = BulkOperation.objects.create(
            status=DRAFT,
            requester=starter,
            requester_name=display_name_of(starter),
            requester_oid=oid_of(starter),
            idempotency_key=f"bulk-{uuid.uuid4().hex}",
            actions=clean_actions,
            reason=clean_reason,
            ticket=clean_ticket,
            notify=bool(notify),
            source=kind,
            source_label=label,
            source_group_id=(group_id or "").strip()[:64],
            dry_run=summary,
            created_at=now,
        )
        BulkItem.objects.bulk_create(
            BulkItem(
                operation=op,
                position=i,
                asked=p.asked[:320],
                target_id=p.target_id,
                upn=p.upn[:320],
                display_name=p.display_name[:256],
                tier=p.tier,
                tier_reasons=p.tier_reasons,
                included=p.included,
                refusal=p.refusal,
                refusal_text=p.refusal_text,
                methods_count=p.methods_count,
            )
            for i, p in enumerate(result.people, start=1)
        )
        _event(
            "bulk_operation_planned",
            op,
            actor=starter,
            request=http_request,
            counts=summary["counts"],
            estimate=summary["estimate_text"],
        )
    return op


def _rates() -> dict[str, BudgetRate]:
    return {
        "reports": BudgetRate.parse(settings.GRAPH_BUDGET_REPORTS),
        "identity": BudgetRate.parse(settings.GRAPH_BUDGET_IDENTITY),
    }


def _summary(people: Sequence[dry_run.Person], actions: Sequence[str]) -> dict[str, Any]:
    included = [p for p in people if p.included]
    privileged = [p for p in included if p.tier == Tier.PRIVILEGED]
    summary: dict[str, Any] = {
        "counts": dry_run.counts(people),
        "asked": len(people),
        "included": len(included),
        "refused": len(people) - len(included),
        "privileged": len(privileged),
        "methods_known": any(p.methods_count is not None for p in included) or not included,
        "methods_total": sum(p.methods_count or 0 for p in included),
        "planned_at": timezone.now().isoformat(),
        **dry_run.estimate(people, actions, rates=_rates()),
    }
    summary["approval_reasons"] = _approval_reasons(len(included), len(privileged))
    return summary


def _approval_reasons(included: int, privileged: int) -> list[str]:
    reasons = []
    threshold = int(settings.PORTAL_BULK_APPROVAL_THRESHOLD)
    if included > threshold:
        reasons.append(
            f"{included} people is more than {threshold} (PORTAL_BULK_APPROVAL_THRESHOLD): a "
            "second person approves it."
        )
    if privileged:
        reasons.append(f"{privileged} privileged people included: a second person approves it.")
    return reasons


def _refresh_summary(op: BulkOperation) -> None:
    """After an Admin's per-person confirmation: the counts, the estimate, the approval."""
    items = list(BulkItem.objects.filter(operation=op).order_by("position"))
    people = [
        dry_run.Person(
            asked=i.asked,
            target_id=i.target_id,
            tier=i.tier,
            included=i.included,
            refusal=i.refusal,
            methods_count=i.methods_count,
        )
        for i in items
    ]
    keep = {k: op.dry_run.get(k) for k in ("methods_note", "dry_run_calls", "planned_at")}
    op.dry_run = {**_summary(people, op.actions), **keep}


@_sentences
def confirm_person(
    op: BulkOperation, item: BulkItem, *, by: Any, http_request: HttpRequest | None = None
) -> BulkItem:
    """An Admin's explicit confirmation that a staff or break-glass person is included in the
    draft ``op``. Raises NotAllowed (not an Admin) or InvalidRequest (not a draft, not such a
    person, or privileged while the starter has no PAA under mirrored tiering)."""
    if not has_role(by, Role.ADMIN):
        raise NotAllowed("Only an Admin can include the portal's staff or a break-glass account.")
    if item.operation_id != op.pk or item.refusal != Refusal.STAFF_OR_BREAK_GLASS:
        raise InvalidRequest("This person is not waiting for an Admin's confirmation.")
    if (
        item.tier == Tier.PRIVILEGED
        and settings.PORTAL_MIRROR_ENTRA_TIERING
        and not agent_holds_paa(op.requester)
    ):
        raise InvalidRequest(
            f"{item.label} is privileged and {op.requester_name} does not hold Privileged "
            "Authentication Administrator: they cannot be included."
        )
    now = timezone.now()
    with transaction.atomic():
        locked = BulkOperation.objects.select_for_update().get(pk=op.pk)
        if locked.status != DRAFT:
            raise InvalidRequest("The dry run is already confirmed: nobody can be added now.")
        BulkItem.objects.filter(pk=item.pk).update(
            included=True,
            refusal="",
            refusal_text="",
            admin_confirmed_by_name=display_name_of(by),
            admin_confirmed_at=now,
        )
        _refresh_summary(locked)
        locked.save(update_fields=["dry_run", "updated_at"])
        _event(
            "bulk_operation_person_confirmed",
            locked,
            actor=by,
            request=http_request,
            person=item.target_id,
            person_name=item.label,
        )
    item.refresh_from_db()
    op.refresh_from_db()
    return item


# --- confirm and decide --------------------------------------------------------------------------


@_sentences
@needs_queue
def confirm(
    op: BulkOperation, *, by: Any, http_request: HttpRequest | None = None
) -> BulkOperation:
    """The starter confirms the stored dry run: ``awaiting_approval`` (more than
    PORTAL_BULK_APPROVAL_THRESHOLD people, or a privileged person included) or ``pending``
    (enqueued on commit). Raises NotAllowed (not the starter) or InvalidRequest (already
    confirmed, nobody included)."""
    if by.pk != op.requester_id:
        raise NotAllowed("Only the person who ran the dry run can confirm it.")
    if not may_start(by):
        raise NotAllowed("Only a Responder or an Admin can start a bulk operation.")
    now = timezone.now()
    with transaction.atomic():
        locked = BulkOperation.objects.select_for_update().get(pk=op.pk)
        if locked.status != DRAFT:
            raise InvalidRequest(f"This operation {STATUS_PHRASES[locked.status]}: confirmed.")
        included = BulkItem.objects.filter(operation=locked, included=True).count()
        if not included:
            raise InvalidRequest("Nobody is included: there is nothing to run.")
        reasons = list(locked.dry_run.get("approval_reasons") or [])
        status = Status.AWAITING_APPROVAL if reasons else Status.PENDING
        BulkOperation.objects.filter(pk=locked.pk).update(
            status=status,
            needs_approval=bool(reasons),
            confirmed_at=now,
            open_slot=f"bulk:{locked.public_id}",
            left=included,
            enqueued_at=None if reasons else now,
            updated_at=now,
        )
        locked.refresh_from_db()
        _event(
            "bulk_operation_requested",
            locked,
            actor=by,
            request=http_request,
            needs_approval=bool(reasons),
            approval_reasons=reasons,
            counts=locked.dry_run.get("counts", {}),
        )
        if not reasons:
            enqueue_on_commit(BULK_OPERATIONS, locked.pk)
    op.refresh_from_db()
    if reasons:
        _notify_waiting(op)
    return op


def _notify_waiting(op: BulkOperation) -> None:
    from bulk.notifications import notify_approvers

    op_pk = op.pk
    transaction.on_commit(lambda: notify_approvers(operation_id=op_pk))


@_sentences
@needs_queue
def approve(
    op: BulkOperation, *, by: Any, comment: str = "", http_request: HttpRequest | None = None
) -> BulkOperation:
    """Approve ``op`` (``pending``, enqueued on commit). NotAllowed / InvalidRequest as
    ``outbox.decisions.decide``."""
    return decisions.decide(
        BULK_OPERATIONS,
        row=op,
        approver=by,
        comment=comment,
        approve=True,
        http_request=http_request,
    )


@_sentences
def reject(
    op: BulkOperation, *, by: Any, comment: str, http_request: HttpRequest | None = None
) -> BulkOperation:
    """Reject ``op`` (final; a comment is required). The included people are cancelled."""
    row = decisions.decide(
        BULK_OPERATIONS,
        row=op,
        approver=by,
        comment=comment,
        approve=False,
        http_request=http_request,
    )
    _cancel_queued(row)
    return row


# --- steer ---------------------------------------------------------------------------------------


@_sentences
def pause(op: BulkOperation, *, by: Any, http_request: HttpRequest | None = None) -> BulkOperation:
    """Pause a queued or running operation: the runner stops after the person it is on (whose
    actions finish) and the operation waits, queued, until :func:`resume`."""
    _check_steer(by, op)
    now = timezone.now()
    with transaction.atomic():
        done = BulkOperation.objects.filter(
            pk=op.pk,
            status__in=(Status.PENDING, Status.RUNNING),
            paused_at__isnull=True,
            cancel_requested_at__isnull=True,
        ).update(paused_at=now, paused_by_name=display_name_of(by), updated_at=now)
        if not done:
            op.refresh_from_db()
            raise InvalidRequest(_cannot(op, "paused"))
        # A queued operation is not dispatched again while paused (a running one releases
        # itself the same way: bulk.runner).
        BulkOperation.objects.filter(pk=op.pk, status=Status.PENDING).update(
            enqueued_at=now + PAUSED_DISPATCH_DELAY
        )
        op.refresh_from_db()
        _event("bulk_operation_paused", op, actor=by, request=http_request)
    return op


@_sentences
@needs_queue
def resume(op: BulkOperation, *, by: Any, http_request: HttpRequest | None = None) -> BulkOperation:
    """Resume a paused operation: queued again, enqueued on commit; the runner goes on with
    the first person not finished."""
    _check_steer(by, op)
    now = timezone.now()
    with transaction.atomic():
        done = BulkOperation.objects.filter(
            pk=op.pk, status__in=(Status.PENDING, Status.RUNNING), paused_at__isnull=False
        ).update(paused_at=None, paused_by_name="", updated_at=now)
        if not done:
            op.refresh_from_db()
            raise InvalidRequest("This operation is not paused.")
        queued = BulkOperation.objects.filter(pk=op.pk, status=Status.PENDING).update(
            enqueued_at=now
        )
        op.refresh_from_db()
        _event("bulk_operation_resumed", op, actor=by, request=http_request)
        if queued:
            enqueue_on_commit(BULK_OPERATIONS, op.pk)
    return op


@_sentences
def cancel(op: BulkOperation, *, by: Any, http_request: HttpRequest | None = None) -> BulkOperation:
    """Cancel: a dry run or an operation that has not started is cancelled at once; a running
    one stops after the person it is on, and the people left are cancelled. What was done
    stays done."""
    _check_steer(by, op)
    now = timezone.now()
    if op.status == DRAFT:
        with transaction.atomic():
            done = BulkOperation.objects.filter(pk=op.pk, status=DRAFT).update(
                status=Status.CANCELLED, finished_at=now, updated_at=now
            )
            if done:
                op.refresh_from_db()
                _event("bulk_operation_cancelled", op, actor=by, request=http_request)
        if done:
            _cancel_queued(op)
            return op
    op.refresh_from_db()
    if op.status in CANCELLABLE_STATUSES:
        try:
            row = decisions.cancel(BULK_OPERATIONS, row=op, by=by, http_request=http_request)
        except InvalidRequest:
            op.refresh_from_db()
            if op.status != Status.RUNNING:
                raise
        else:
            _cancel_queued(row)
            return row
    if op.status != Status.RUNNING:
        raise InvalidRequest(_cannot(op, "cancelled"))
    with transaction.atomic():
        done = BulkOperation.objects.filter(
            pk=op.pk, status=Status.RUNNING, cancel_requested_at__isnull=True
        ).update(
            cancel_requested_at=now,
            cancel_requested_by_name=display_name_of(by),
            updated_at=now,
        )
        if not done:
            op.refresh_from_db()
            raise InvalidRequest(_cannot(op, "cancelled"))
    op.refresh_from_db()
    return op


def _cancel_queued(op: BulkOperation) -> None:
    """The included people not yet acted on become ``cancelled``; the counters follow."""
    now = timezone.now()
    BulkItem.objects.filter(operation=op, included=True, state=ItemState.QUEUED).update(
        state=ItemState.CANCELLED, finished_at=now
    )
    BulkOperation.objects.filter(pk=op.pk).update(**counters(op))
    op.refresh_from_db()


@_sentences
@needs_queue
def retry_failed(
    op: BulkOperation, *, by: Any, http_request: HttpRequest | None = None
) -> BulkOperation:
    """Retry the failed people of a finished operation: each gets new parts (new action
    requests: a part never runs twice), the operation is queued again (enqueued on commit) and
    the runner does only them."""
    _check_steer(by, op)
    now = timezone.now()
    with transaction.atomic():
        locked = BulkOperation.objects.select_for_update().get(pk=op.pk)
        if locked.status not in (Status.FAILED, Status.PARTIALLY_SUCCEEDED):
            raise InvalidRequest(_cannot(locked, "retried"))
        failed = BulkItem.objects.filter(operation=locked, included=True, state=ItemState.FAILED)
        people = failed.count()
        if not people:
            raise InvalidRequest("Nobody failed: there is nothing to retry.")
        failed.update(
            state=ItemState.QUEUED,
            round=F("round") + 1,
            error_code="",
            error_message="",
            graph_request_id="",
            finished_at=None,
        )
        BulkOperation.objects.filter(pk=locked.pk).update(
            status=Status.PENDING,
            finished_at=None,
            open_slot=f"bulk:{locked.public_id}",
            error_code="",
            error_message="",
            error_request_id="",
            enqueued_at=now,
            updated_at=now,
            **counters(locked),
        )
        locked.refresh_from_db()
        _event("bulk_operation_retried", locked, actor=by, request=http_request, people=people)
        enqueue_on_commit(BULK_OPERATIONS, locked.pk)
    op.refresh_from_db()
    return op


def _cannot(op: BulkOperation, what: str) -> str:
    phrase = "is a dry run" if op.status == DRAFT else STATUS_PHRASES.get(op.status, op.status)
    return f"This operation {phrase}: it cannot be {what} now."
