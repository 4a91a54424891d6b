"""The one durable-request engine: claim, steps, write journal, defer or fail, finish,
redispatch, expiry, and the decisions (approve, reject, cancel).

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
  the policy afresh; a :class:`~outbox.errors.PolicyError` there ends the request ``failed``.
* Throttled and transient Graph errors, and a lost database connection, put the row back to
  ``pending`` with a visible waiting step and raise :class:`~outbox.errors.Deferred`; backoff is
  Graph's ``Retry-After``, else ``min(60, 5 * 2 ** (attempts - 1))`` seconds. After
  ``PORTAL_ACTION_MAX_ATTEMPTS`` claims the request fails with the last error. Permanent errors
  and unexpected exceptions end it ``failed`` at once: it is never left ``running``.
* Beat's :func:`redispatch` enqueues again ``pending`` rows no worker took and ``running`` rows
  whose lease ran out, each once per ``PORTAL_REDISPATCH_AFTER_SECONDS`` (guarded on
  ``enqueued_at``), and records each dispatch.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

import redis
from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import display_name_of
from audit.models import PortalEvent
from audit.services import portal_event_record
from graph import GraphClient
from graph.errors import GraphError, GraphThrottled, GraphTokenUnavailable, GraphTransient
from outbox.errors import Deferred, InvalidRequest, PolicyError, QueueUnavailable
from outbox.inputs import DECISION_COMMENT_MAX_LENGTH
from outbox.models import DurableRequest
from outbox.states import CANCELLABLE_STATUSES, Status

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=DurableRequest)
Event = tuple[str, dict[str, Any]]


class LeaseLost(Exception):
    """This worker no longer owns the row (its lease ran out and another worker claimed it)."""


@dataclass(frozen=True)
class EventKinds:
    """The ``PortalEvent.Kind`` values a flow records at each transition."""

    started: str
    retry_scheduled: str
    redispatched: str
    expired: str
    approved: str
    rejected: str
    cancelled: str
    # The final event of each ending status the runner can produce.
    final: Mapping[str, str]

    @classmethod
    def named(cls, prefix: str, *, final: Iterable[str]) -> EventKinds:
        """The kinds ``<prefix>_started``, ``<prefix>_retry_scheduled``, ... and
        ``<prefix>_<status>`` for each final status; each must be a ``PortalEvent.Kind``."""

        def kind(suffix: str) -> str:
            return PortalEvent.Kind(f"{prefix}_{suffix}").value

        return cls(
            started=kind("started"),
            retry_scheduled=kind("retry_scheduled"),
            redispatched=kind("redispatched"),
            expired=kind("expired"),
            approved=kind("approved"),
            rejected=kind("rejected"),
            cancelled=kind("cancelled"),
            final={status: kind(status) for status in final},
        )


@dataclass(frozen=True)
class Outcome:
    """How a run ended: a final status and, for a failure, Graph's error or a code and message."""

    status: str
    error: GraphError | None = None
    error_code: str = ""
    error_message: str = ""


class Flow(Generic[R]):
    """What one kind of durable request supplies to the engine. Subclass and instantiate once."""

    model: type[R]
    events: EventKinds
    # The word people read for one request of this flow: "request", "change".
    noun: ClassVar[str] = "request"
    # Who reads a rejection's comment: "agent", "requester".
    reader: ClassVar[str] = "requester"
    # The error code of a request refused by the execution-time policy or a guard.
    policy_error_code: ClassVar[str] = "PolicyRefused"
    # The flow's own columns a runner changes, saved with its progress (besides the journal).
    progress_fields: ClassVar[tuple[str, ...]] = ()

    # --- what every flow must supply -------------------------------------------------------------

    def run(self, run: Run[R]) -> Outcome:
        """The Graph steps of one attempt (read fresh, write through the journal, read back)."""
        raise NotImplementedError

    def send(self, request_id: int) -> None:
        """Send the flow's Celery task for ``request_id`` (may raise on a broker failure)."""
        raise NotImplementedError

    def check_may_decide(self, approver: Any, row: R) -> None:
        """Raise NotAllowed unless ``approver`` may approve or reject ``row``."""
        raise NotImplementedError

    def check_may_cancel(self, by: Any, row: R) -> None:
        """Raise NotAllowed unless ``by`` may cancel ``row``."""
        raise NotImplementedError

    # --- what a flow may refine ------------------------------------------------------------------

    def check_may_approve(self, approver: Any, row: R) -> None:
        """Checks an approval needs beyond :meth:`check_may_decide` (default: none)."""

    def check_before_write(self, run: Run[R]) -> None:
        """The execution-time policy check: called just before the first Graph write of every
        attempt. Read the policy afresh (no caches) and raise PolicyError to refuse. Default:
        nothing more to check."""

    def event_fields(self, row: R) -> dict[str, Any]:
        """The ``portal_event_record`` columns naming the request (target, ticket, ...)."""
        return {}

    def event_detail(self, row: R, **more: Any) -> dict[str, Any]:
        """The ``detail`` of the flow's events: ``more``, plus what the flow always records."""
        return dict(more)

    def final_detail(self, row: R) -> dict[str, Any]:
        """What the final event records besides Graph's error (default: the flow's detail)."""
        return self.event_detail(row)

    def fallback_error(self, row: R) -> tuple[str, str, str] | None:
        """(code, message, request-id) to show when an unsuccessful outcome names no error."""
        return None

    def on_finished(self, row: R, status: str) -> None:
        """Called inside the transaction that made the row final (use ``on_commit`` for work
        outside the database: notices, cache refreshes)."""


# --- create and enqueue --------------------------------------------------------------------------

CreateFn = TypeVar("CreateFn", bound=Callable[..., Any])


def needs_queue(create: CreateFn) -> CreateFn:
    """For a flow's create service: a Redis failure while recording (its cache, locks or the
    shared Graph budget) becomes QueueUnavailable, a refusal the person reads, with nothing
    recorded (the transaction has not committed), instead of a server error."""

    @functools.wraps(create)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return create(*args, **kwargs)
        except redis.RedisError:
            logger.warning("%s: Redis unavailable, nothing recorded", create.__qualname__)
            raise QueueUnavailable() from None

    return wrapper  # type: ignore[return-value]


# --- enqueue -------------------------------------------------------------------------------------


def enqueue(flow: Flow[Any], request_id: int) -> None:
    """Send the task now. A broker failure is logged, not raised: the row is the outbox and beat
    dispatches it again."""
    try:
        flow.send(request_id)
    except Exception:  # any broker failure: beat re-dispatches
        logger.warning("could not enqueue %s %s; beat will retry", flow.model.__name__, request_id)


def enqueue_on_commit(flow: Flow[Any], request_id: int) -> None:
    """Send the task once the current transaction commits (nothing is sent if it rolls back)."""
    transaction.on_commit(lambda: enqueue(flow, request_id))


# --- execution -----------------------------------------------------------------------------------


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

    run = Run(flow=flow, row=row, client=get_graph_client(), token=row.attempts)
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
    one, else ``min(60, 5 * 2 ** (attempts - 1))``; never under a second."""
    if retry_after:
        return max(1.0, float(retry_after))
    return max(1.0, float(min(60, 5 * 2 ** max(0, attempts - 1))))


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


def expire_if_due(flow: Flow[R], row: R, now: datetime) -> bool:
    """Expire an awaiting request whose approval window has passed (own transaction)."""
    if row.status != Status.AWAITING_APPROVAL or now <= row.approval_expires_at():
        return False
    with transaction.atomic():
        done = flow.model._default_manager.filter(
            pk=row.pk, status=Status.AWAITING_APPROVAL
        ).update(status=Status.EXPIRED, finished_at=now, open_slot=None, updated_at=now)
        if done:
            portal_event_record(
                kind=flow.events.expired,
                old_value={"status": Status.AWAITING_APPROVAL},
                new_value={"status": Status.EXPIRED},
                detail=flow.event_detail(
                    row, approval_ttl_minutes=settings.PORTAL_APPROVAL_TTL_MINUTES
                ),
                **flow.event_fields(row),
            )
    row.refresh_from_db()
    return bool(done)


def expire_stale(flow: Flow[Any]) -> int:
    """Expire the requests that waited for approval longer than ``PORTAL_APPROVAL_TTL_MINUTES``.
    Returns how many (each with the flow's ``expired`` event)."""
    now = timezone.now()
    cutoff = now - timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)
    awaiting = flow.model._default_manager.filter(
        status=Status.AWAITING_APPROVAL, created_at__lt=cutoff
    )
    return sum(1 for row in awaiting if expire_if_due(flow, row, now))


# --- decisions -----------------------------------------------------------------------------------


def decide(
    flow: Flow[R],
    *,
    row: R,
    approver: Any,
    comment: str,
    approve: bool,
    http_request: HttpRequest | None,
) -> R:
    """Approve (``pending``, task enqueued on commit) or reject (final) a request
    ``awaiting_approval``. Raises NotAllowed from the flow's checks; InvalidRequest for a
    comment too long, a rejection without one, a request no longer awaiting approval, or one
    whose approval window has passed (it is then marked ``expired``)."""
    flow.check_may_decide(approver, row)
    if approve:
        flow.check_may_approve(approver, row)
    noun = flow.noun
    text = (comment or "").strip()
    if len(text) > DECISION_COMMENT_MAX_LENGTH:
        raise InvalidRequest(
            f"The comment is longer than {DECISION_COMMENT_MAX_LENGTH} characters."
        )
    if not approve and not text:
        raise InvalidRequest(f"Say why you reject the {noun}: the {flow.reader} will read it.")
    now = timezone.now()
    row = flow.model._default_manager.get(pk=row.pk)
    if expire_if_due(flow, row, now):
        raise InvalidRequest(
            f"This {noun} waited longer than {settings.PORTAL_APPROVAL_TTL_MINUTES} minutes for "
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
        done = flow.model._default_manager.filter(
            pk=row.pk, status=Status.AWAITING_APPROVAL
        ).update(**changes)
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(
                f"This {noun} is already {row.get_status_display().lower()}: nothing to decide."
            )
        portal_event_record(
            kind=flow.events.approved if approve else flow.events.rejected,
            actor=approver,
            request=http_request,
            old_value={"status": Status.AWAITING_APPROVAL},
            new_value={"status": new_status},
            detail=flow.event_detail(row, comment=text, requester=row.requester_name),
            **flow.event_fields(row),
        )
        if approve:
            enqueue_on_commit(flow, row.pk)
    row.refresh_from_db()
    return row


def cancel(flow: Flow[R], *, row: R, by: Any, http_request: HttpRequest | None) -> R:
    """Cancel a request that has not started (``awaiting_approval`` or ``pending``). Raises
    NotAllowed from the flow's check, or InvalidRequest when it is already running or final."""
    flow.check_may_cancel(by, row)
    now = timezone.now()
    with transaction.atomic():
        old = flow.model._default_manager.get(pk=row.pk).status
        done = flow.model._default_manager.filter(
            pk=row.pk, status__in=CANCELLABLE_STATUSES
        ).update(status=Status.CANCELLED, finished_at=now, open_slot=None, updated_at=now)
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(
                f"This {flow.noun} is {row.get_status_display().lower()}: it can no longer be "
                "cancelled."
            )
        portal_event_record(
            kind=flow.events.cancelled,
            actor=by,
            request=http_request,
            old_value={"status": old},
            new_value={"status": Status.CANCELLED},
            detail=flow.event_detail(row),
            **flow.event_fields(row),
        )
    row.refresh_from_db()
    return row
