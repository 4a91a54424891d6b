"""The one durable-request engine: claim, steps, write journal, defer or fail, finish and
redispatch (``outbox.decisions`` holds approve, reject, cancel and expiry; ``outbox.flow`` what
a flow supplies).

A flow (``mfa.flow``, ``roles.flow``, ...) is a :class:`Flow` subclass that supplies only its
model, its event kinds, its runner (the Graph steps), its permission checks, its execution-time
policy check and its hooks. Creating a request stays in each app (its checks are the domain);
the app then calls :func:`enqueue_on_commit`.

Durability rules (the same for every flow):

* The claim is ``UPDATE ... WHERE status='pending' OR (status='running' AND heartbeat is older
  than the lease)``: a duplicate delivery claims nothing; a row left ``running`` by a dead worker
  is claimed again once its lease has run out. Every later write of the worker is fenced on its
  claim (``attempts`` is the fencing token): a worker that lost its lease stops
  (:class:`LeaseLost`).
* Before a Graph write its key goes into ``pending_writes`` (:meth:`Run.write_begin`); after it,
  into ``completed_writes`` (:meth:`Run.write_done`). A re-run never repeats a completed write,
  and for one that was in flight it reads Graph instead of writing blindly.
* Just before the first Graph write of every attempt (so before the first write, and again
  before every retry) the engine calls the flow's :meth:`Flow.check_before_write`, which reads
  the policy afresh; a :class:`~outbox.errors.PolicyError` there ends the request ``failed``,
  and a :class:`~outbox.errors.NeedsApproval` puts it back to ``awaiting_approval``
  (:func:`return_to_approval`): nothing is sent to Graph either way.
* Throttled and transient Graph errors, and a lost database connection, put the row back to
  ``pending`` with a visible waiting step and raise :class:`~outbox.errors.Deferred`; backoff is
  Graph's ``Retry-After``, else ``min(60, PORTAL_RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1))``
  seconds. After
  ``PORTAL_ACTION_MAX_ATTEMPTS`` claims the request fails with the last error. Permanent errors
  and unexpected exceptions end it ``failed`` at once: it is never left ``running``.
* Beat's :func:`redispatch` enqueues again ``pending`` rows no worker took and ``running`` rows
  whose lease ran out, each once per ``PORTAL_REDISPATCH_AFTER_SECONDS`` (guarded on
  ``enqueued_at``), and records each dispatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import portal_event_record
from graph import GraphClient
from graph.errors import GraphError, GraphThrottled, GraphTokenUnavailable, GraphTransient
from outbox.errors import Deferred, NeedsApproval, PolicyError
from outbox.flow import Event, Flow, Outcome, enqueue_on_commit
from outbox.models import DurableRequest
from outbox.states import Status

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=DurableRequest)


class LeaseLost(Exception):
    """This worker no longer owns the row (its lease ran out and another worker claimed it)."""


@dataclass
class Run(Generic[R]):
    """One worker's hold on one request: the row as claimed, the Graph client, and fenced
    persistence of its progress."""

    flow: Flow[R]
    row: R
    client: GraphClient
    token: int  # the row's ``attempts`` after our claim: the fencing token
    policy_checked: bool = field(default=False)

    def fenced(self) -> QuerySet[R]:
        """The row, only while this worker still owns it."""
        return self.flow.model._default_manager.filter(
            pk=self.row.pk, status=Status.RUNNING, attempts=self.token
        )

    def progress(self) -> dict[str, Any]:
        """The columns a save writes: journal, steps and the flow's progress fields."""
        row = self.row
        values = {
            "steps": row.steps,
            "completed_writes": row.completed_writes,
            "pending_writes": row.pending_writes,
        }
        for name in self.flow.progress_fields:
            values[name] = getattr(row, name)
        return values

    def save(self, *, event: Event | None = None) -> None:
        """Write the progress with a fresh heartbeat; raise LeaseLost when the row is no longer
        ours. ``event`` (kind, detail) is recorded in the same transaction."""
        now = timezone.now()
        with transaction.atomic():
            done = self.fenced().update(**self.progress(), heartbeat_at=now, updated_at=now)
            if not done:
                raise LeaseLost()
            if event is not None:
                kind, detail = event
                portal_event_record(kind=kind, detail=detail, **self.flow.event_fields(self.row))
        self.row.heartbeat_at = now

    def step(self, text: str, *, state: str = "running", detail: str = "") -> int:
        """Append a step a person can read and save it; returns its index."""
        self.row.steps = [
            *self.row.steps,
            {"at": timezone.now().isoformat(), "text": text, "state": state, "detail": detail},
        ]
        self.save()
        return len(self.row.steps) - 1

    def step_end(
        self,
        index: int,
        *,
        state: str,
        suffix: str,
        detail: str = "",
        event: Event | None = None,
    ) -> None:
        """Close step ``index`` ("Removing X…" becomes "Removing X… done") and save."""
        steps = [dict(s) for s in self.row.steps]
        steps[index]["text"] = f"{steps[index]['text']} {suffix}".strip()
        steps[index]["state"] = state
        if detail:
            steps[index]["detail"] = detail
        self.row.steps = steps
        self.save(event=event)

    def write_begin(self, key: str) -> None:
        """Journal the Graph write ``key`` as in flight, after the execution-time policy check
        (run once per attempt, just before its first write)."""
        if not self.policy_checked:
            self.flow.check_before_write(self)
            self.policy_checked = True
        self.row.pending_writes = {**self.row.pending_writes, key: timezone.now().isoformat()}
        self.save()

    def write_done(self, key: str) -> None:
        """Mark ``key`` done in memory; the caller's next save (usually step_end) persists it."""
        pending = dict(self.row.pending_writes)
        pending.pop(key, None)
        self.row.pending_writes = pending
        if key not in self.row.completed_writes:
            self.row.completed_writes = [*self.row.completed_writes, key]

    def write_abandon(self, key: str) -> None:
        """Take ``key`` off the journal: the write surely did not happen."""
        pending = dict(self.row.pending_writes)
        pending.pop(key, None)
        self.row.pending_writes = pending

    def abandon_if_unprocessed(self, key: str, exc: GraphError) -> None:
        """Take ``key`` off the journal when Graph surely did not process the write: it answered
        429 or 503 (refused before processing), or no token could be had (nothing was sent). A
        failed request must not claim that such a write's outcome is unknown."""
        if exc.status in (429, 503) or isinstance(exc, GraphTokenUnavailable):
            self.write_abandon(key)

    def was_in_flight(self, key: str) -> datetime | None:
        """When write ``key`` was begun by an earlier attempt that never learned its outcome."""
        raw = self.row.pending_writes.get(key)
        if not raw:
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return None


def claim(flow: Flow[R], request_id: int) -> tuple[R, bool] | None:
    """Claim the row for this worker: pending, or running with a lease run out. Returns the row
    and whether it was taken over from a dead worker; None when there is nothing to claim."""
    model = flow.model
    now = timezone.now()
    lease_cutoff = now - timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS)
    claimable = Q(status=Status.PENDING) | Q(status=Status.RUNNING, heartbeat_at__lt=lease_cutoff)
    with transaction.atomic():
        before = (
            model._default_manager.filter(pk=request_id).values_list("status", flat=True).first()
        )
        if before is None:
            return None
        done = model._default_manager.filter(claimable, pk=request_id).update(
            status=Status.RUNNING,
            started_at=Coalesce(F("started_at"), now),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if not done:
            return None
        row = model._default_manager.get(pk=request_id)
        taken_over = before == Status.RUNNING
        portal_event_record(
            kind=flow.events.started,
            old_value={"status": before},
            new_value={"status": Status.RUNNING},
            detail=flow.event_detail(
                row, attempt=row.attempts, taken_over_from_lost_worker=taken_over
            ),
            **flow.event_fields(row),
        )
    return row, taken_over


def execute(flow: Flow[R], request_id: int) -> None:
    """Run request ``request_id`` of ``flow`` if it can be claimed; see the module docstring.

    Returns quietly when there is nothing to claim (a redelivered or duplicate task) or when the
    lease was lost mid-run. Raises Deferred when Graph throttled or failed transiently, or the
    database connection was lost, and attempts remain: the task retries after ``countdown``
    seconds. Never leaves the row ``running`` on an exception it can catch.
    """
    name = flow.model.__name__
    claimed = claim(flow, request_id)
    if claimed is None:
        logger.info("%s %s: nothing to claim", name, request_id)
        return
    row, taken_over = claimed
    from portal.graph_client import get_graph_client

    # A submitted change runs at the budget's action priority, ahead of page reads (graph.budget),
    # a flow's background work (a bulk operation's parts) at bulk priority (Flow.budget_priority),
    # each request its own fair key: running requests share the budget round-robin.
    priority = flow.budget_priority(row)
    client = get_graph_client().with_priority(priority).for_agent(f"run:{row.public_id}")
    run = Run(flow=flow, row=row, client=client, token=row.attempts)
    try:
        if taken_over:
            # The step the dead worker was on never ended: say so instead of showing it running.
            row.steps = [
                {**s, "state": "failed", "text": f"{s['text']} interrupted"}
                if s.get("state") == "running"
                else s
                for s in row.steps
            ]
            run.step(
                "The previous worker stopped; resuming without repeating finished Graph writes.",
                state="done",
            )
        outcome = flow.run(run)
    except LeaseLost:
        logger.warning("%s %s: lease lost, another worker owns it", name, request_id)
        return
    except (GraphThrottled, GraphTransient) as exc:
        defer_or_fail(run, exc)
        return
    except GraphError as exc:
        outcome = Outcome(Status.FAILED, error=exc)
    except NeedsApproval as exc:
        try:
            return_to_approval(run, exc)
        except LeaseLost:
            logger.warning("%s %s: lease lost before returning to approval", name, request_id)
        return
    except PolicyError as exc:
        outcome = Outcome(
            Status.FAILED, error_code=flow.policy_error_code, error_message=exc.message
        )
    except DatabaseError as exc:
        if isinstance(exc, IntegrityError | DataError):
            raise  # a bug, not a lost connection: the task fails loudly, beat re-dispatches
        _database_lost(run, exc)
        return
    except Exception as exc:
        # Never leave the row running: record a failure a person can see, log the trace.
        logger.exception("%s %s failed unexpectedly", name, request_id)
        outcome = Outcome(
            Status.FAILED,
            error_code="UnexpectedError",
            error_message=f"The portal hit an unexpected error ({type(exc).__name__}); "
            "an administrator can find the details in the worker log.",
        )
    try:
        finish(run, outcome)
    except LeaseLost:
        logger.warning("%s %s: lease lost before finishing", name, request_id)


def _database_lost(run: Run[Any], exc: DatabaseError) -> None:
    """The database connection broke mid-run (server restart, failover, idle kill). Open a fresh
    one and put the row back to ``pending`` from this worker's in-memory journal (which is what
    really happened at Graph), then retry like a transient Graph error. If the database is still
    away this raises; the row stays ``running`` and beat re-dispatches it when the lease ends."""
    logger.warning("%s %s: database connection lost (%s)", type(run.row).__name__, run.row.pk, exc)
    try:
        connection.close()
    except DatabaseError:
        pass  # already broken: close() has dropped it all the same
    defer_or_fail(
        run,
        GraphTransient(0, "DatabaseUnavailable", "The portal lost its database connection."),
        waiting_for="the database",
    )


def backoff_seconds(attempts: int, retry_after: float | None) -> float:
    """How long to wait before attempt ``attempts + 1``: Graph's ``Retry-After`` when it gave
    one, else ``min(60, PORTAL_RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1))``; never under a
    second."""
    if retry_after:
        return max(1.0, float(retry_after))
    base = float(settings.PORTAL_RETRY_BACKOFF_SECONDS)
    return max(1.0, min(60.0, base * float(2 ** max(0, attempts - 1))))


def defer_or_fail(run: Run[Any], exc: GraphError, *, waiting_for: str = "Graph") -> None:
    """After a throttled or transient error: back to pending with a waiting step and raise
    Deferred, or fail once the attempts are used up."""
    flow, row = run.flow, run.row
    if row.attempts >= settings.PORTAL_ACTION_MAX_ATTEMPTS:
        # The step that was interrupted must not stay "running" on a failed request's page.
        row.steps = [
            {**s, "state": "failed"} if s.get("state") == "running" else s for s in row.steps
        ]
        try:
            finish(run, Outcome(Status.FAILED, error=exc))
        except LeaseLost:
            pass
        return
    countdown = backoff_seconds(row.attempts, getattr(exc, "retry_after", None))
    why = "throttled" if isinstance(exc, GraphThrottled) else "temporarily unavailable"
    now = timezone.now()
    row.steps = [{**s, "state": "waiting"} if s.get("state") == "running" else s for s in row.steps]
    row.steps.append(
        {
            "at": now.isoformat(),
            "text": f"Waiting for {waiting_for} ({why}), retrying in {countdown:.0f} s",
            "state": "waiting",
            "detail": f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        }
    )
    with transaction.atomic():
        done = run.fenced().update(
            **run.progress(),
            status=Status.PENDING,
            # Beat leaves it alone until the retry is due (plus its usual grace).
            enqueued_at=now + timedelta(seconds=countdown),
            heartbeat_at=now,
            updated_at=now,
        )
        if not done:
            return
        portal_event_record(
            kind=flow.events.retry_scheduled,
            detail=flow.event_detail(
                row,
                attempt=row.attempts,
                countdown_seconds=countdown,
                graph_code=exc.code,
                graph_request_id=exc.request_id or "",
            ),
            **flow.event_fields(row),
        )
    raise Deferred(countdown)


def return_to_approval(run: Run[Any], exc: NeedsApproval) -> None:
    """The execution-time check found that the request needs a (new) approval before any write:
    back to ``awaiting_approval``, fenced on the claim (raises LeaseLost when the row is no
    longer ours). The decision is cleared (the event keeps who had approved it), the journal
    and the attempts are kept, the flow's columns in ``exc.updates`` are written with it, the
    step that was about to write says it was not sent, and the flow's ``returned_to_approval``
    event records why. No task is sent: the next approval enqueues it."""
    flow, row = run.flow, run.row
    now = timezone.now()
    previous = {
        "by": row.decided_by_name,
        "at": row.decided_at.isoformat() if row.decided_at else None,
        "comment": row.decision_comment,
    }
    row.steps = [
        {**s, "state": "failed", "text": f"{s['text']} not sent"}
        if s.get("state") == "running"
        else s
        for s in row.steps
    ]
    row.steps.append(
        {
            "at": now.isoformat(),
            "text": "Waiting for approval again before anything is sent",
            "state": "waiting",
            "detail": exc.message,
        }
    )
    with transaction.atomic():
        done = run.fenced().update(
            **run.progress(),
            **exc.updates,
            status=Status.AWAITING_APPROVAL,
            decided_by=None,
            decided_by_name="",
            decision_comment="",
            decided_at=None,
            enqueued_at=None,
            heartbeat_at=now,
            updated_at=now,
        )
        if not done:
            raise LeaseLost()
        for name, value in exc.updates.items():
            setattr(row, name, value)
        row.status = Status.AWAITING_APPROVAL
        row.decided_by = None
        row.decided_by_name, row.decision_comment, row.decided_at = "", "", None
        portal_event_record(
            kind=flow.events.returned_to_approval,
            old_value={"status": Status.RUNNING},
            new_value={"status": Status.AWAITING_APPROVAL},
            detail=flow.event_detail(
                row,
                why=exc.message,
                attempt=row.attempts,
                previous_approval=previous if previous["by"] else None,
            ),
            **flow.event_fields(row),
        )


def finish(run: Run[Any], outcome: Outcome) -> None:
    """Make the row final with ``outcome`` and record the flow's final event, fenced on the
    claim (raises LeaseLost when the row is no longer ours)."""
    flow, row = run.flow, run.row
    now = timezone.now()
    code, message, request_id = outcome.error_code, outcome.error_message, ""
    if outcome.error is not None:
        code = outcome.error.code
        message = outcome.error.message
        request_id = outcome.error.request_id or ""
    if not code and outcome.status != Status.SUCCEEDED:
        fallback = flow.fallback_error(row)
        if fallback:
            code, message, request_id = fallback
    with transaction.atomic():
        done = run.fenced().update(
            **run.progress(),
            status=outcome.status,
            error_code=code[:128],
            error_message=message,
            error_request_id=request_id[:64],
            finished_at=now,
            heartbeat_at=now,
            open_slot=None,
            updated_at=now,
        )
        if not done:
            raise LeaseLost()
        row.status = outcome.status
        portal_event_record(
            kind=flow.events.final[outcome.status],
            old_value={"status": Status.RUNNING},
            new_value={"status": outcome.status},
            detail={
                **flow.final_detail(row),
                "graph_code": code,
                "graph_message": message,
                "graph_request_id": request_id,
                "writes": list(row.completed_writes),
            },
            **flow.event_fields(row),
        )
        flow.on_finished(row, outcome.status)


# --- beat ----------------------------------------------------------------------------------------


def redispatch(flow: Flow[Any]) -> int:
    """Enqueue again every request no worker has picked up: ``pending`` rows enqueued more than
    ``PORTAL_REDISPATCH_AFTER_SECONDS`` ago (or never), and ``running`` rows whose worker's lease
    ran out and that were not dispatched within that time either. Returns how many were
    dispatched (each with the flow's ``redispatched`` event)."""
    model = flow.model
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.PORTAL_REDISPATCH_AFTER_SECONDS)
    lease_cutoff = now - timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS)
    stale = model._default_manager.filter(
        Q(status=Status.PENDING, enqueued_at__lt=cutoff)
        | Q(status=Status.PENDING, enqueued_at__isnull=True)
        | Q(status=Status.RUNNING, heartbeat_at__lt=lease_cutoff, enqueued_at__lt=cutoff)
    ).values_list("pk", "status", "enqueued_at")
    count = 0
    for pk, status, enqueued_at in stale:
        with transaction.atomic():
            done = model._default_manager.filter(
                pk=pk, status=status, enqueued_at=enqueued_at
            ).update(enqueued_at=now, updated_at=now)
            if not done:
                continue
            row = model._default_manager.get(pk=pk)
            portal_event_record(
                kind=flow.events.redispatched,
                detail=flow.event_detail(
                    row,
                    status=status,
                    enqueued_at=enqueued_at.isoformat() if enqueued_at else None,
                ),
                **flow.event_fields(row),
            )
            enqueue_on_commit(flow, pk)
        count += 1
    return count
