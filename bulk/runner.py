"""The runner of a bulk operation: works through its people in order, each person's actions as
normal action requests run inline on the same engine.

For each included person not finished, in ``position`` order: for each action of the
operation (revoke first), the part's ``ActionRequest`` is created once (``get_or_create`` on
(item, kind, round): a re-run finds it), ``pending``, then run with
``outbox.engine.execute(ACTION_REQUESTS, pk)``: its own claim, lease and write journal, so a
re-run never acts on a person twice, and a part a dead worker left mid-run is claimed again by
the engine and never repeats a finished write. A part that Graph throttled waits here (the
operation's lease kept fresh) and runs again. The person's outcome and the counters are saved
after each person; between two people the runner reads whether someone paused the operation
(it then releases it: ``pending`` with a step "Paused by X", beat leaves it alone until it is
resumed) or asked to cancel it (the people left are cancelled and it ends ``cancelled``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import PortalEvent
from audit.services import portal_event_record
from bulk.models import BulkAction, BulkItem, BulkOperation, BulkPart, ItemState, counters
from mfa import policy
from mfa.flow import ACTION_REQUESTS
from mfa.models import ActionRequest, Tier
from mfa.services import notify_recipients
from outbox import engine
from outbox.engine import LeaseLost, Run
from outbox.errors import Deferred
from outbox.flow import Outcome
from outbox.states import FINAL_STATUSES, Status

logger = logging.getLogger(__name__)

# How long the runner sleeps at most between two looks at a part that waits (a throttled part's
# retry, a part another worker is running): the operation's heartbeat is written each time.
WAIT_SLICE_SECONDS = 2.0
_sleep: Callable[[float], None] = time.sleep


class Released(LeaseLost):
    """The runner gave the operation back (paused): the engine ends the task quietly, as for a
    lost lease; the row is already ``pending``."""


def run_operation(run: Run[BulkOperation]) -> Outcome:
    op = run.row
    while True:
        flags = (
            BulkOperation.objects.filter(pk=op.pk)
            .values("paused_at", "paused_by_name", "cancel_requested_at")
            .get()
        )
        if flags["cancel_requested_at"] is not None:
            return _cancel_rest(run)
        if flags["paused_at"] is not None:
            _release_paused(run, flags["paused_by_name"])
        item = (
            BulkItem.objects.filter(
                operation=op, included=True, state__in=(ItemState.QUEUED, ItemState.RUNNING)
            )
            .order_by("position")
            .first()
        )
        if item is None:
            break
        _run_item(run, item)
        _save_counters(run)
    _save_counters(run)
    if op.failed == 0:
        return Outcome(Status.SUCCEEDED)
    if op.done == 0:
        first = (
            BulkItem.objects.filter(operation=op, state=ItemState.FAILED)
            .order_by("position")
            .first()
        )
        return Outcome(
            Status.FAILED,
            error_code=first.error_code if first else "",
            error_message=f"No person succeeded; the first failure: {first.error_message}"
            if first
            else "",
        )
    return Outcome(Status.PARTIALLY_SUCCEEDED)


def _save_counters(run: Run[BulkOperation]) -> None:
    op = run.row
    for name, value in counters(op).items():
        setattr(op, name, value)
    run.save()


def _run_item(run: Run[BulkOperation], item: BulkItem) -> None:
    op = run.row
    if item.state != ItemState.RUNNING:
        BulkItem.objects.filter(pk=item.pk).update(state=ItemState.RUNNING)
    for kind in op.actions:
        part = _ensure_part(run, item, kind)
        if isinstance(part, str):
            _item_end(item, ItemState.FAILED, code="TargetBusy", message=part)
            return
        request = _run_part(run, part.action_request)
        if request.status != Status.SUCCEEDED:
            code, message, request_id = _failure_of(request)
            _item_end(item, ItemState.FAILED, code=code, message=message, request_id=request_id)
            return
    _item_end(item, ItemState.SUCCEEDED)


def _item_end(
    item: BulkItem, state: str, *, code: str = "", message: str = "", request_id: str = ""
) -> None:
    BulkItem.objects.filter(pk=item.pk).update(
        state=state,
        error_code=code[:128],
        error_message=message,
        graph_request_id=request_id[:64],
        finished_at=timezone.now(),
    )


def _failure_of(request: ActionRequest) -> tuple[str, str, str]:
    if request.status in (Status.AWAITING_APPROVAL, Status.ESCALATED):
        return ("NeedsApproval", "This person's part waits for an approval: not acted on.", "")
    if request.status == Status.CANCELLED:
        return ("Cancelled", "This person's part was cancelled.", "")
    code = request.error_code or request.status
    message = request.error_message or f"The action {request.get_status_display().lower()}."
    request_id = request.error_request_id
    if not request_id:
        # A runner that kept Graph's failure in its result (the revoke, a method's delete).
        result = request.result or {}
        failures = [result.get("revoke_failed") or {}, *(result.get("failed") or [])]
        request_id = next((str(f["request_id"]) for f in failures if f.get("request_id")), "")
    return code, message, request_id


def _ensure_part(run: Run[BulkOperation], item: BulkItem, kind: str) -> BulkPart | str:
    """The part of ``item`` for ``kind`` in its round, created once with its action request
    (``pending``, with its ``action_requested`` event naming the operation); a sentence when
    another open request on this person blocks it (one open request per person and family)."""
    op = run.row
    found = (
        BulkPart.objects.select_related("action_request")
        .filter(item=item, kind=kind, round=item.round)
        .first()
    )
    if found is not None:
        return found
    notify_to: list[dict[str, str]] = []
    if op.notify:
        notify_to = notify_recipients(policy.target_profile(run.client, item.target_id))
    family = policy.kind_family(kind)
    slot = f"{item.target_id.lower()}:{family}"
    params: dict[str, Any] = {"revoke_sessions": False} if kind == BulkAction.REREGISTER else {}
    now = timezone.now()
    try:
        with transaction.atomic():
            request = ActionRequest.objects.create(
                kind=kind,
                status=Status.PENDING,
                requester=op.requester,
                requester_name=op.requester_name,
                target_id=item.target_id,
                target_upn=item.upn,
                target_name=item.display_name,
                target_tier=item.tier or Tier.STANDARD,
                target_roles=[{"role_name": r, "how": "dry run"} for r in item.tier_reasons],
                reason=op.reason,
                ticket=op.ticket,
                params=params,
                idempotency_key=f"bulk:{op.pk}:{item.pk}:{kind}:{item.round}"[:64],
                decided_by=op.decided_by,
                decided_by_name=op.decided_by_name,
                decided_at=op.decided_at,
                created_at=now,
                # The runner runs it at once; beat leaves it alone meanwhile.
                enqueued_at=now,
                open_slot=slot,
                notify_to=notify_to,
                bulk_operation_id=op.pk,
            )
            part = BulkPart.objects.create(
                item=item, kind=kind, round=item.round, action_request=request
            )
            portal_event_record(
                kind=PortalEvent.Kind.ACTION_REQUESTED,
                actor=op.requester,
                new_value={"status": request.status},
                detail={
                    "kind": kind,
                    "params": params,
                    "tier": request.target_tier,
                    "reason": op.reason,
                    "bulk_operation": str(op.public_id),
                    "bulk_operation_id": op.pk,
                    "approved_by": op.decided_by_name,
                },
                action_request_id=request.pk,
                target_id=request.target_id,
                target_name=request.target_name,
                ticket=request.ticket,
            )
    except IntegrityError:
        again = BulkPart.objects.filter(item=item, kind=kind, round=item.round).first()
        if again is not None:
            return again
        busy = ActionRequest.objects.filter(open_slot=slot).first()
        who = f"{busy.requester_name}'s open request" if busy else "another open request"
        return f"{item.label} has {who} of the same kind: not acted on, retry when it ends."
    return part


def _run_part(run: Run[BulkOperation], request: ActionRequest) -> ActionRequest:
    """Run the part inline until it is final (or waits for a decision); a throttled part's
    retry is waited for here, the operation's heartbeat kept."""
    pk = request.pk
    while True:
        wait = 0.0
        try:
            engine.execute(ACTION_REQUESTS, pk)
        except Deferred as deferred:
            wait = float(deferred.countdown)
        row = ActionRequest.objects.get(pk=pk)
        if row.status in FINAL_STATUSES or row.status in (
            Status.AWAITING_APPROVAL,
            Status.ESCALATED,
        ):
            return row
        # Pending after a deferral, or running in another worker (a redelivered task): wait.
        _wait(run, max(wait, 0.5))


def _wait(run: Run[BulkOperation], seconds: float) -> None:
    end = time.monotonic() + seconds
    while True:
        run.save()  # heartbeat; raises LeaseLost when another worker took the operation over
        left = end - time.monotonic()
        if left <= 0:
            return
        _sleep(min(left, WAIT_SLICE_SECONDS))


def _release_paused(run: Run[BulkOperation], by: str) -> None:
    """Give the paused operation back: ``pending``, not dispatched until resumed; raises
    Released (the engine ends the task quietly). Returns when it was resumed meanwhile."""
    from bulk.services import PAUSED_DISPATCH_DELAY

    op = run.row
    now = timezone.now()
    op.steps = [
        *op.steps,
        {
            "at": now.isoformat(),
            "text": f"Paused by {by or 'someone'}",
            "state": "waiting",
            "detail": f"{op.done} done, {op.failed} failed, {op.left} left",
        },
    ]
    with transaction.atomic():
        done = (
            run.fenced()
            .filter(paused_at__isnull=False)
            .update(
                **run.progress(),
                status=Status.PENDING,
                enqueued_at=now + PAUSED_DISPATCH_DELAY,
                heartbeat_at=now,
                updated_at=now,
            )
        )
    if done:
        raise Released()
    op.steps = op.steps[:-1]
    if not run.fenced().exists():
        raise LeaseLost()
    # Resumed between the look and the release: go on.


def _cancel_rest(run: Run[BulkOperation]) -> Outcome:
    op = run.row
    now = timezone.now()
    BulkItem.objects.filter(operation=op, included=True, state=ItemState.QUEUED).update(
        state=ItemState.CANCELLED, finished_at=now
    )
    by = BulkOperation.objects.filter(pk=op.pk).values_list("cancel_requested_by_name", flat=True)[
        0
    ]
    op.steps = [
        *op.steps,
        {
            "at": now.isoformat(),
            "text": f"Cancelled by {by or 'someone'}: the people left were not acted on",
            "state": "done",
            "detail": "",
        },
    ]
    _save_counters(run)
    return Outcome(Status.CANCELLED)
