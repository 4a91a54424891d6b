"""What a flow's checks raise, and what the engine raises to its task.

Every refusal is a :class:`PolicyError` whose ``message`` is written for the person who asked,
and is shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PolicyError(Exception):
    """A request the policy refuses. ``message`` is shown to the person as it is."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidRequest(PolicyError):
    """The input is wrong (reason, ticket, parameters) or the request is in the wrong state."""


class NotAllowed(PolicyError):
    """This person may not do this (role, self-action, self-approval, guest target)."""


class NeedsApproval(PolicyError):
    """Raised by a flow's execution-time check (``Flow.check_before_write``) when the request may
    still go ahead, but only after a new approval: the target became privileged, or the approval
    it has no longer fits (the approver lost the right to approve this target). The engine puts
    the row back to ``awaiting_approval`` (decision cleared, journal kept), writes ``updates``
    (the flow's own columns: the tier as read now) with it, records the flow's
    ``returned_to_approval`` event with ``message`` as the reason, and ends the task quietly.
    Nothing is sent to Graph."""

    def __init__(self, message: str, *, updates: Mapping[str, Any] | None = None) -> None:
        self.updates: dict[str, Any] = dict(updates or {})
        super().__init__(message)


class QueueUnavailable(PolicyError):
    """The portal cannot reach Redis (its queue, cache and locks), so nothing was recorded."""

    def __init__(self) -> None:
        super().__init__(
            "The portal cannot reach its queue (Redis) right now, so nothing was recorded. "
            "Try again in a minute."
        )


class Deferred(Exception):
    """Raised by ``outbox.engine.execute`` when Graph (or the database) asked us to wait: the
    task must retry after ``countdown`` seconds. The row is ``pending`` again, with a visible
    waiting step."""

    def __init__(self, countdown: float) -> None:
        self.countdown = countdown
        super().__init__(f"retry in {countdown:.0f} s")
