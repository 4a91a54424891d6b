"""What a flow supplies to the durable-request engine, and how its tasks are sent.

A flow (``mfa.flow``, ``roles.flow``, ...) is a :class:`Flow` subclass, instantiated once, that
supplies only its model, its event kinds, its runner (the Graph steps), its permission checks,
its execution-time policy check and its hooks. ``outbox.engine`` runs it; ``outbox.decisions``
approves, rejects, cancels and expires its requests. Creating a request stays in each app (its
checks are the domain): the app's create service calls :func:`enqueue_on_commit`, and
:func:`needs_queue` turns a Redis failure while recording into a clear refusal.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import redis
from django.db import transaction

from audit.models import PortalEvent
from graph.budget import Priority
from graph.errors import GraphError
from outbox.errors import NotAllowed, QueueUnavailable
from outbox.models import DurableRequest
from outbox.states import Status

if TYPE_CHECKING:
    from outbox.engine import Run

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=DurableRequest)
Event = tuple[str, dict[str, Any]]


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
    # Sent back to awaiting approval by the execution-time check (``NeedsApproval``).
    returned_to_approval: str
    # The final event of each ending status the runner can produce.
    final: Mapping[str, str]
    # The escalation's transitions (``outbox.decisions.take``); "" for a flow without
    # escalations (``<prefix>_escalated``, ``_escalation_taken``, ``_escalation_refused`` when
    # ``PortalEvent.Kind`` has them).
    escalated: str = ""
    taken: str = ""
    refused: str = ""

    @classmethod
    def named(cls, prefix: str, *, final: Iterable[str]) -> EventKinds:
        """The kinds ``<prefix>_started``, ``<prefix>_retry_scheduled``, ...,
        ``<prefix>_returned_to_approval`` and
        ``<prefix>_<status>`` for each final status; each must be a ``PortalEvent.Kind``."""

        def kind(suffix: str) -> str:
            return PortalEvent.Kind(f"{prefix}_{suffix}").value

        def optional(suffix: str) -> str:
            value = f"{prefix}_{suffix}"
            return value if value in PortalEvent.Kind.values else ""

        return cls(
            started=kind("started"),
            retry_scheduled=kind("retry_scheduled"),
            redispatched=kind("redispatched"),
            expired=kind("expired"),
            approved=kind("approved"),
            rejected=kind("rejected"),
            cancelled=kind("cancelled"),
            returned_to_approval=kind("returned_to_approval"),
            final={status: kind(status) for status in final},
            escalated=optional("escalated"),
            taken=optional("escalation_taken"),
            refused=optional("escalation_refused"),
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

    def check_may_take(self, taker: Any, row: R) -> None:
        """Raise NotAllowed unless ``taker`` may take (or refuse) the escalated ``row``
        (default: the flow has no escalations, nobody may)."""
        raise NotAllowed(f"Nobody takes an escalated {self.noun} of this kind.")

    def status_after_take(self, row: R) -> str:
        """Where a taken escalation goes: ``awaiting_approval`` (default) or ``pending``."""
        return Status.AWAITING_APPROVAL

    def take_fields(self, row: R, taker: Any, comment: str, now: datetime) -> dict[str, Any]:
        """The flow's own columns a take or a refusal at ``now`` writes (who took it, when)."""
        return {}

    def on_taken(self, row: R) -> None:
        """Called inside the transaction of a take, with ``row`` as it now is (use
        ``on_commit`` for work outside the database: notices)."""

    def budget_priority(self, row: R) -> Priority:
        """The shared Graph budget's priority of the row's run (``graph.budget``): ``action``
        (default: an agent's submitted change, ahead of page reads); a flow's background work
        (a bulk operation's parts) answers ``bulk``, behind every agent."""
        return Priority.ACTION

    def check_before_write(self, run: Run[R]) -> None:
        """The execution-time policy check: called just before the first Graph write of every
        attempt. Read the policy afresh (no caches) and raise PolicyError to refuse (the request
        ends ``failed`` with :attr:`policy_error_code`), or NeedsApproval when it may go ahead
        only after a new approval (it goes back to ``awaiting_approval``). Default: nothing more
        to check."""

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
